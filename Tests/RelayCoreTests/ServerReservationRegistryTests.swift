import Testing
@testable import RelayCore
import STUN

/// EVEN-PORT reservations redeemed across the servers of one process (one `Server` per worker,
/// each with its own slice of the port range), through a shared `ReservationRegistry`.
///
/// RFC 8656 §7.2: "Note that the reservation is a server-wide reservation and is not specific to a
/// particular allocation since the Allocate request containing the RESERVATION-TOKEN uses a
/// different 5-tuple than the Allocate request that made the reservation."
@Suite struct ServerReservationRegistryTests {
    static let rangeA: ClosedRange<UInt16> = 50000...50999
    static let rangeB: ClosedRange<UInt16> = 51000...51999

    /// Two servers ("workers") sharing one registry, on disjoint port slices, clocks in step.
    final class Pair {
        let registry: UnsharedReservationRegistry
        let a: Harness
        let b: Harness

        init(capacity: Int = 16, rangeA: ClosedRange<UInt16> = rangeA, rangeB: ClosedRange<UInt16> = rangeB) {
            registry = UnsharedReservationRegistry(capacity: capacity)
            a = Harness(seed: 1, registry: registry) { $0.portRange = rangeA }
            b = Harness(seed: 2, registry: registry) { $0.portRange = rangeB }
        }

        /// Both servers' clocks move together; each runs its timers.
        func advance(seconds: UInt64) {
            a.advance(seconds: seconds)
            b.advance(seconds: seconds)
        }

        /// An EVEN-PORT (R=1) allocation by alice on A: port N and the token for N+1.
        func reserveOnA(client: TransportAddress = Addr.client, id: UInt8 = 1) throws -> (port: UInt16, token: UInt64) {
            let (relays, _, response) = try a.allocate(client, id: id) { $0.appendEvenPort(reserveNext: true) }
            let port = try #require(relays.first?.port)
            let token = try #require(try inspect(response) { try $0.reservationToken() })
            return (port, token)
        }
    }

    static let client3 = TransportAddress("93.184.216.36:40002")!

    func allocateRequest(_ h: Harness, token: UInt64, client: TransportAddress, as credentials: Credentials = .bob,
                         id: UInt8) throws -> [UInt8] {
        message(.allocate, id: transactionID(id), auth: RequestAuth(credentials: credentials, nonce: try h.nonce(for: client))) {
            $0.appendRequestedTransport(17)
            $0.appendUInt64(.reservationToken, token)
        }
    }

    func expect508(_ out: Outputs, id: UInt8, key: [UInt8] = Credentials.bob.key, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(out.requests.isEmpty, sourceLocation: sourceLocation)
        #expect(out.only?.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(id), key: key) {
            $0.appendErrorCode(.insufficientCapacity)
        }, sourceLocation: sourceLocation)
    }

    /// Refresh with LIFETIME 0 (RFC 8656 §8.2: "If the 'desired lifetime' is zero, then the request
    /// succeeds and the allocation is deleted").
    @discardableResult
    func deleteAllocation(on h: Harness, client: TransportAddress, id: UInt8) throws -> Outputs {
        let refresh = message(.refresh, id: transactionID(id), auth: try h.auth(.bob, client: client)) {
            $0.appendUInt32(.lifetime, 0)
        }
        return h.receive(refresh, from: client)
    }

    @Test func tokenIssuedOnOneServerIsRedeemedOnAnother() throws {
        let pair = Pair()
        let (port, token) = try pair.reserveOnA()
        #expect(port % 2 == 0 && Self.rangeA.contains(port))
        #expect(pair.a.server.ports.isUsed(port + 1, .ipv4), "A keeps N+1 out of its pool")
        #expect(pair.registry.table.outstandingCount == 1)

        // B has never seen the token: it claims it from the registry and binds N+1, a port of A's
        // slice (RFC 8656 §7.2: "the server uses the previously reserved transport address
        // corresponding to the included token").
        let pending = pair.b.receive(try allocateRequest(pair.b, token: token, client: Addr.client2, id: 9), from: Addr.client2)
        #expect(pending.sent.isEmpty)
        #expect(pending.opens.map(\.port) == [port + 1])
        #expect(pending.opens.map(\.family) == [.ipv4])
        let response = try #require(pair.b.answer(pending.opens).only)
        #expect(try inspect(response.bytes) { try $0.xorRelayedAddresses() }
            == [TransportAddress(ip: .v4(Addr.relayV4), port: port + 1)])
        #expect(try inspect(response.bytes) { try $0.reservationToken() } == nil)
        #expect(pair.registry.table.outstandingCount == 0)
        #expect(pair.registry.table.lentCount == 1)
        // A still holds its reservation entry until the 30 s timer; the port stays out of A's pool.
        #expect(pair.a.server.tableSizes.reservations == 1)
        #expect(pair.b.server.tableSizes.reservations == 0)
    }

    @Test func aTokenIsClaimedOnceAcrossServers() throws {
        let pair = Pair()
        let (_, token) = try pair.reserveOnA()
        try pair.b.allocate(Addr.client2, as: .bob, id: 9) { $0.appendUInt64(.reservationToken, token) }
        // A second claim, on either server, within the 30 s: the token is no longer valid (RFC 8656
        // §7.2 step 5: "If the token is not valid for some reason, the server rejects the request
        // with a 508 (Insufficient Capacity) error").
        expect508(pair.b.receive(try allocateRequest(pair.b, token: token, client: Self.client3, id: 10), from: Self.client3), id: 10)
        expect508(pair.a.receive(try allocateRequest(pair.a, token: token, client: Self.client3, id: 11), from: Self.client3), id: 11)
        #expect(pair.registry.table.lentCount == 1)
    }

    @Test func anExpiredTokenIsRefusedAndTheOwnerGetsItsPortBack() throws {
        let pair = Pair()
        let (port, token) = try pair.reserveOnA()
        // B's clock reaches the expiry before A has run its timer: the registry already refuses.
        pair.b.now = pair.b.now.adding(seconds: 30)
        expect508(pair.b.receive(try allocateRequest(pair.b, token: token, client: Addr.client2, id: 9), from: Addr.client2), id: 9)
        #expect(pair.a.server.ports.isUsed(port + 1, .ipv4))
        // A's timer withdraws the unclaimed reservation and frees N+1 in its own pool.
        pair.a.advance(seconds: 30)
        #expect(pair.a.server.tableSizes.reservations == 0)
        #expect(pair.registry.table.outstandingCount == 0)
        #expect(!pair.a.server.ports.isUsed(port + 1, .ipv4))
        expect508(pair.b.receive(try allocateRequest(pair.b, token: token, client: Self.client3, id: 10), from: Self.client3), id: 10)
    }

    @Test func theReservationIsHeldForThirtySeconds() throws {
        let pair = Pair()
        let (port, token) = try pair.reserveOnA()
        // RFC 8656 §7.2: "The server MUST hold this reservation for at least 30 seconds".
        pair.advance(seconds: 29)
        let (relays, _, _) = try pair.b.allocate(Addr.client2, as: .bob, id: 9) { $0.appendUInt64(.reservationToken, token) }
        #expect(relays.map(\.port) == [port + 1])
    }

    @Test func aClaimedPortComesBackToItsOwnerAfterTheClaimantsSocketIsClosed() throws {
        let pair = Pair()
        let (port, token) = try pair.reserveOnA()
        try pair.b.allocate(Addr.client2, as: .bob, id: 9) { $0.appendUInt64(.reservationToken, token) }
        // A's reservation timer fires after the claim: withdraw fails, the port stays lent.
        pair.advance(seconds: 30)
        #expect(pair.a.server.tableSizes.reservations == 0)
        #expect(pair.a.server.ports.isUsed(port + 1, .ipv4))

        // B deletes the allocation. The close goes out in this batch; the
        // port is given back only on a later call, after the shell has closed the socket.
        let deleted = try deleteAllocation(on: pair.b, client: Addr.client2, id: 12)
        #expect(deleted.closes.count == 1)
        pair.b.advance(seconds: 0)
        #expect(pair.registry.table.lentCount == 1, "not in the call that queued the close")
        pair.b.advance(seconds: 1)
        #expect(pair.registry.table.lentCount == 0)
        #expect(pair.registry.table.givenBackCount == 1)
        #expect(pair.b.server.tableSizes.timers == 0)

        // A collects it on its next reservation and may hand the port out again.
        pair.a.now = pair.b.now
        try pair.a.allocate(Self.client3, as: .bob, id: 13) { $0.appendEvenPort(reserveNext: true) }
        #expect(pair.registry.table.givenBackCount == 0)
        // Free again: the new allocation's port is even and its N'+1 cannot be N+1, since N is
        // still in use by the first allocation.
        #expect(!pair.a.server.ports.isUsed(port + 1, .ipv4))
    }

    @Test func anOwnerOutOfPortsTakesBackGivenBackPorts() throws {
        // A has two ports: N for the allocation, N+1 reserved, then claimed by B.
        let pair = Pair(rangeA: 50000...50001)
        let (port, token) = try pair.reserveOnA()
        #expect(port == 50000)
        try pair.b.allocate(Addr.client2, as: .bob, id: 9) { $0.appendUInt64(.reservationToken, token) }
        pair.advance(seconds: 30)
        // Nothing free on A while B holds 50001.
        let full = pair.a.receive(message(.allocate, id: transactionID(10), auth: try pair.a.auth(.bob, client: Self.client3)) {
            $0.appendRequestedTransport(17)
        }, from: Self.client3)
        expect508(full, id: 10)
        // B's allocation ends; its port goes back to A, which uses it for the next Allocate.
        try deleteAllocation(on: pair.b, client: Addr.client2, id: 12)
        pair.advance(seconds: 1)
        #expect(pair.registry.table.givenBackCount == 1)
        let client4 = TransportAddress("93.184.216.37:40003")!
        let (relays, _, _) = try pair.a.allocate(client4, as: .bob, id: 11)
        #expect(relays.map(\.port) == [50001])
        #expect(pair.registry.table.givenBackCount == 0)
    }

    @Test func aFailedBindOfAClaimedPortIs508AndIsNotMovedToAnotherPort() throws {
        let pair = Pair()
        let (_, token) = try pair.reserveOnA()
        let pending = pair.b.receive(try allocateRequest(pair.b, token: token, client: Addr.client2, id: 9), from: Addr.client2)
        #expect(pending.opens.count == 1)
        // Someone else on the host bound N+1: the token's address is not available, so 508 (no
        // retry on another port: "the previously reserved transport address ... (if it is still
        // available)").
        let failed = pair.b.answer(pending.opens, with: .failed(errno: 98))  // EADDRINUSE
        expect508(failed, id: 9)
        pair.b.advance(seconds: 1)
        #expect(pair.registry.table.lentCount == 0)
        #expect(pair.registry.table.givenBackCount == 1)
        #expect(pair.b.server.allocationCount == 0)
    }

    @Test func aRequestRefusedAfterTheTokenCheckDoesNotSpendTheToken() throws {
        let pair = Pair()
        let (port, token) = try pair.reserveOnA()
        // A malformed LIFETIME (2 bytes instead of 4) is a 400; the token stays claimable.
        let request = message(.allocate, id: transactionID(9), auth: try pair.b.auth(.bob, client: Addr.client2)) { w in
            w.appendRequestedTransport(17)
            w.appendUInt64(.reservationToken, token)
            [UInt8(0), 60].withUnsafeBytes { w.append(.lifetime, bytes: $0) }
        }
        let refused = pair.b.receive(request, from: Addr.client2)
        #expect(refused.requests.isEmpty)
        #expect(refused.only.flatMap { errorCode($0.bytes) } == 400)
        #expect(pair.registry.table.outstandingCount == 1)
        let (relays, _, _) = try pair.b.allocate(Self.client3, as: .bob, id: 10) { $0.appendUInt64(.reservationToken, token) }
        #expect(relays.map(\.port) == [port + 1])
    }

    @Test func outstandingReservationsAreBoundedProcessWide() throws {
        // Each server alone would allow 256; the shared registry holds one.
        let pair = Pair(capacity: 1)
        _ = try pair.reserveOnA()
        let request = message(.allocate, id: transactionID(9), auth: try pair.b.auth(.bob, client: Addr.client2)) {
            $0.appendRequestedTransport(17)
            $0.appendEvenPort(reserveNext: true)
        }
        expect508(pair.b.receive(request, from: Addr.client2), id: 9)
        #expect(pair.b.server.allocationCount == 0)
        #expect(pair.b.server.tableSizes.reservations == 0)
        // EVEN-PORT without R reserves nothing and still works.
        let (relays, _, _) = try pair.b.allocate(Self.client3, as: .bob, id: 10) { $0.appendEvenPort(reserveNext: false) }
        #expect(relays.first.map { $0.port % 2 == 0 } == true)
    }

    @Test func theTableAloneClaimsOnceAndRoutesGivenBackPortsToTheirOwner() {
        var table = ReservationTable(capacity: 2)
        let a = table.join(), b = table.join()
        let expiry = Instant(seconds: 100), before = Instant(seconds: 99)
        let first = table.register(1, ReservedPort(port: 50001, family: .ipv4, owner: a), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered
        let sameToken = table.register(1, ReservedPort(port: 50003, family: .ipv4, owner: a), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered
        let second = table.register(2, ReservedPort(port: 50005, family: .ipv6, owner: a), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered
        let third = table.register(3, ReservedPort(port: 50007, family: .ipv4, owner: a), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered
        #expect(first && !sameToken && second)
        #expect(!third, "full")
        #expect(table.claimableFamily(2, now: before) == .ipv6)
        #expect(table.claimableFamily(2, now: expiry) == nil)
        let expired = table.claim(1, by: b, now: expiry)
        let claimed = table.claim(1, by: b, now: before)
        let again = table.claim(1, by: b, now: before)
        #expect(expired == nil)
        #expect(claimed == ReservedPort(port: 50001, family: .ipv4, owner: a))
        #expect(again == nil, "claimed once")
        let withdrawnClaimed = table.withdraw(1)
        let withdrawnUnclaimed = table.withdraw(2)
        #expect(!withdrawnClaimed, "claimed: the port is lent")
        #expect(withdrawnUnclaimed, "unclaimed: the owner takes it back")
        let early = table.takeGivenBack(owner: a)
        #expect(early == [])
        table.giveBack(port: 50001, family: .ipv4)
        table.giveBack(port: 50001, family: .ipv4)  // a second give-back of the same port is ignored
        let toB = table.takeGivenBack(owner: b)
        let toA = table.takeGivenBack(owner: a)
        #expect(toB == [])
        #expect(toA == [ReservedPort(port: 50001, family: .ipv4, owner: a)])
        #expect(table.lentCount == 0 && table.givenBackCount == 0 && table.outstandingCount == 0)
    }
}
