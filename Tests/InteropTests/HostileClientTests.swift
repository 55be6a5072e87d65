import Foundation
import Glibc
import RelayCore
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport
@testable import InteropTestSupport

/// The findings of a hostile-client review, each reproduced against the real `turn-relay` binary
/// on loopback as an attacker would: a client with valid credentials (or none) probing what the
/// relay lets it reach and what it makes the relay send.
@Suite(.serialized, .dedicatedThread)
struct HostileClientTests {
    /// A REST credential for `id` against `server`'s secret, valid one hour.
    static func client(_ server: TurnServerUnderTest, id: String, bind: String = "127.0.0.1",
                       ipv6: Bool = false) throws -> TestTURNClient {
        let credential = RESTCredential.make(secret: server.secret, ttlSeconds: 3600, id: id, nowUnixSeconds: UInt64(time(nil)))
        let listener = ipv6 ? TransportAddress(ip: .v6(.loopback), port: server.port)
            : TransportAddress(ip: .v4(.loopback), port: server.port)
        let local = ipv6 ? TransportAddress(ip: .v6(.loopback), port: 0) : TransportAddress(ip: .v4(IPv4Address(bind)!), port: 0)
        return try TestTURNClient(server: listener, username: credential.username, password: credential.password, bind: local)
    }

    // MARK: 1. The relay's own address

    /// "The relay's own address is open on every port of the relay range": with the default peer
    /// policy a UDP service on the relay's address at a relay-range port that is no allocation
    /// answered Send and ChannelData. Now only live allocations are reachable there (hairpin),
    /// on IPv4 and IPv6.
    @Test func ownAddressPortsAreReachableOnlyWhileAnAllocationHoldsThem() throws {
        try ownAddressPortsAreReachableOnlyWhileAnAllocationHoldsThem(ipv6: false)
    }

    @Test(.enabled(if: IPv6Loopback.isAvailable, IPv6Loopback.missing))
    func ownAddressPortsAreReachableOnlyWhileAnAllocationHoldsThemOverIPv6() throws {
        try ownAddressPortsAreReachableOnlyWhileAnAllocationHoldsThem(ipv6: true)
    }

    func ownAddressPortsAreReachableOnlyWhileAnAllocationHoldsThem(ipv6: Bool) throws {
        let server = try TurnServerUnderTest(.turnRelay, allowLoopbackPeers: false)
        defer { server.stop() }
        let relayIP: IPAddress = ipv6 ? .v6(.loopback) : .v4(.loopback)
        // Some program's socket on the relay's address, inside the relay range, no allocation.
        let echoPort = server.relayPorts.upperBound - 3
        let echo = try UDPEcho(TransportAddress(ip: relayIP, port: echoPort))
        defer { echo.stop() }
        let target = TransportAddress(ip: relayIP, port: echoPort)

        let alice = try Self.client(server, id: "alice", ipv6: ipv6)
        let allocated = try #require(alice.allocate(family: ipv6 ? .ipv6 : nil))
        #expect(allocated.errorCode == nil, "allocate: \(String(describing: allocated.errorCode))")
        // A permission is IP-only (RFC 8656 §9), so the relay's own address gets one ...
        #expect(alice.createPermission(peer: target)?.errorCode == nil)
        // ... but neither a Send indication nor a channel reaches the non-allocation port.
        for i in 0..<20 { alice.sendIndication(to: target, payload: [0xEC, UInt8(i)]) }
        #expect(alice.channelBind(0x4000, peer: target)?.errorCode == 403)
        #expect(echo.received(within: .milliseconds(700)) == 0, "ipv6=\(ipv6): the echo service was reached")

        // Hairpin between two real allocations keeps working.
        let bob = try Self.client(server, id: "bob", ipv6: ipv6)
        let bobAllocated = try #require(bob.allocate(family: ipv6 ? .ipv6 : nil))
        let bobRelayed = try #require(bobAllocated.xorRelayedAddresses.first)
        let aliceRelayed = try #require(allocated.xorRelayedAddresses.first)
        #expect(bob.createPermission(peer: aliceRelayed)?.errorCode == nil)
        #expect(alice.channelBind(0x4001, peer: bobRelayed)?.errorCode == nil)
        alice.sendChannelData(0x4001, payload: [1, 2, 3, 4])
        #expect(bob.receive() == .dataIndication(peer: aliceRelayed, payload: [1, 2, 3, 4]))
        // Once Bob's allocation is gone, its port is no longer a peer, even on the bound channel.
        #expect(bob.refresh(lifetime: 0)?.errorCode == nil)
        let quiet = try UDPEcho(bobRelayed, attempts: 20)
        defer { quiet.stop() }
        for _ in 0..<5 { alice.sendChannelData(0x4001, payload: [5, 6]) }
        #expect(quiet.received(within: .milliseconds(500)) == 0)
    }

    // MARK: 2. Port 0

    /// "ChannelBind 0x4000 → <allowed peer>:0 is accepted" and a burst to it turned GSO off for the
    /// whole process. RFC 8656 §12.2: "if a value is not allowed, the server rejects the request
    /// with a 403 (Forbidden) error."
    @Test func portZeroIsNeverAPeer() throws {
        let server = try TurnServerUnderTest(.turnRelay)
        defer { server.stop() }
        let alice = try Self.client(server, id: "alice")
        #expect(try #require(alice.allocate(), "no answer to Allocate").errorCode == nil)
        let zero = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 2)), port: 0)
        #expect(alice.channelBind(0x4000, peer: zero)?.errorCode == 403)
        // A Send indication to port 0 is dropped; the relay keeps relaying to real peers.
        let echo = try UDPEcho(TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 2)), port: 0))
        defer { echo.stop() }
        #expect(alice.createPermission(peer: echo.address)?.errorCode == nil)
        for _ in 0..<10 { alice.sendIndication(to: zero, payload: Array(repeating: 7, count: 100)) }
        alice.sendIndication(to: echo.address, payload: [9, 9])
        #expect(alice.receive() == .dataIndication(peer: echo.address, payload: [9, 9]))
    }

    // MARK: 3. TURN inside TURN

    /// "With --listen-port 24100 --min-port 24050 --max-port 24150, ChannelBind → <relay
    /// address>:24100 (its own listener) is accepted and an Allocate sent through the channel
    /// creates an inner allocation."
    @Test func aListenPortInsideTheRelayRangeIsRefusedAtStartUp() throws {
        let range = try LoopbackPorts.relayPortRange(count: 100)
        let listen = range.lowerBound + 50
        let process = try ChildProcess(
            executable: try TurnServerUnderTest.turnRelayBinary(),
            arguments: ["serve", "--listen-port", "\(listen)", "--min-port", "\(range.lowerBound)",
                        "--max-port", "\(range.upperBound)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none"],
            name: "turn-relay-listen-in-range", environment: ["PATH": "/usr/bin:/bin"])
        let status = process.waitForExit(timeout: .seconds(20))
        #expect(status != nil && status != 0, "it must refuse to start: \(process.output)")
        #expect(process.output.contains("inside the relay port range"), "\(process.output)")
    }

    /// Even where the operator opened loopback, the listener is no peer in any spelling.
    @Test func theListenerIsNeverAPeer() throws {
        let server = try TurnServerUnderTest(.turnRelay)
        defer { server.stop() }
        let alice = try Self.client(server, id: "alice")
        #expect(try #require(alice.allocate(), "no answer to Allocate").errorCode == nil)
        var channel: UInt16 = 0x4000
        for spelling in ["127.0.0.1", "127.0.0.2", "127.9.9.9", "0.0.0.0"] {
            let peer = TransportAddress(ip: .v4(IPv4Address(spelling)!), port: server.port)
            #expect(alice.channelBind(channel, peer: peer)?.errorCode == 403, "\(spelling)")
            channel += 1
        }
        // A Send indication carrying an Allocate to the listener is dropped: no inner allocation.
        let listener = TransportAddress(ip: .v4(.loopback), port: server.port)
        #expect(alice.createPermission(peer: listener)?.errorCode == nil)
        alice.sendIndication(to: listener, payload: Self.headerOnly(.binding))
        #expect(alice.receive(timeoutMilliseconds: 700) == nil)
    }

    // MARK: 4. EVEN-PORT reservations

    /// "One username ran 300 Allocate(EVEN-PORT R=1) + Refresh(0) cycles: 256 succeeded, then 508
    /// ... every other user's EVEN-PORT request gets 508." RFC 8656 §7.2: the quota "SHOULD" be
    /// based on the username.
    @Test func oneUserCannotHoldTheReservationRegistry() throws {
        let server = try TurnServerUnderTest(.turnRelay, relayPortCount: 600,
                                             extraArguments: ["--max-allocations-per-user", "10", "--workers", "1"])
        defer { server.stop() }
        let mallory = try Self.client(server, id: "mallory")
        var reserved = 0
        var refusal: Int?
        for _ in 0..<300 {
            let response = try #require(mallory.request(.allocate) { w in
                w.appendRequestedTransport(17)
                w.appendEvenPort(reserveNext: true)
            })
            if let code = response.errorCode {
                refusal = code
                break
            }
            reserved += 1
            #expect(mallory.refresh(lifetime: 0)?.errorCode == nil)
        }
        #expect(reserved == 10, "reservations of one user")
        #expect(refusal == 486)
        // Another user still reserves.
        let alice = try Self.client(server, id: "alice")
        let response = try #require(alice.request(.allocate) { w in
            w.appendRequestedTransport(17)
            w.appendEvenPort(reserveNext: true)
        })
        #expect(response.errorCode == nil)
        #expect(response.reservationToken != nil)
    }

    // MARK: 5. Challenge amplification

    /// "A 20-byte header-only Allocate/Refresh/CreatePermission earns a 132-byte 401 (6.6×)". An
    /// unauthenticated answer is now at most 3× its request, for every request kind; a request of
    /// a real client's size still gets a usable challenge.
    @Test func unauthenticatedAnswersStayWithinThreeTimesTheRequest() throws {
        let server = try TurnServerUnderTest(.turnRelay)
        defer { server.stop() }
        let listener = TransportAddress(ip: .v4(.loopback), port: server.port)
        var cases: [(String, [UInt8])] = []
        for method in [STUNMethod.allocate, .refresh, .createPermission, .channelBind, .binding] {
            cases.append(("\(method) header only", Self.headerOnly(method)))
        }
        cases.append(("allocate + REQUESTED-TRANSPORT", Self.request(.allocate) { $0.appendRequestedTransport(17) }))
        cases.append(("allocate + REQUESTED-TRANSPORT + FINGERPRINT", Self.request(.allocate) {
            $0.appendRequestedTransport(17)
            $0.appendFingerprint()
        }))
        let aioiceAllocate = Self.request(.allocate) {
            $0.appendUInt32(.lifetime, 600)
            $0.appendRequestedTransport(17)
        }
        cases.append(("allocate as aioice sends it", aioiceAllocate))
        cases.append(("create permission + peer", Self.request(.createPermission) {
            $0.appendXorAddress(.xorPeerAddress, TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 2)), port: 9))
        }))
        cases.append(("unknown method", Self.headerOnly(STUNMethod(rawValue: 0x0FF))))
        // Each from its own source address: the per-source challenge limit is not what is tested.
        for (i, (name, request)) in cases.enumerated() {
            let socket = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(127, 0, 1, UInt8(i + 1))), port: 0))
            socket.send(request, to: listener)
            let answer = try #require(socket.receive(timeoutMilliseconds: 2000), "\(name): no answer")
            let ratio = Double(answer.bytes.count) / Double(request.count)
            print("hostile: \(name): \(request.count) → \(answer.bytes.count) bytes (\(String(format: "%.2f", ratio))×)")
            #expect(answer.bytes.count <= 3 * request.count, "\(name): \(request.count) → \(answer.bytes.count)")
        }
        // A real client's first Allocate still gets REALM and a NONCE, and the full dance works.
        let socket = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(127, 0, 2, 1)), port: 0))
        socket.send(aioiceAllocate, to: listener)
        let challenge = try #require(socket.receive(timeoutMilliseconds: 2000))
        let parsed = try #require(TestTURNClient.parseResponse(challenge.bytes, id: Self.fixedID))
        #expect(parsed.errorCode == 401 && parsed.realm == server.realm && parsed.nonce != nil)
        let alice = try Self.client(server, id: "alice", bind: "127.0.2.2")
        #expect(try #require(alice.allocate(), "no answer to Allocate").errorCode == nil)
    }

    // MARK: - Helpers

    static let fixedID = TransactionID([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])

    static func request(_ method: STUNMethod, _ body: (inout STUNMessageWriter) -> Void) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 512)
        let length = buffer.withUnsafeMutableBytes { raw -> Int in
            var w = STUNMessageWriter(into: raw, type: STUNMessageType(method: method, messageClass: .request), transactionID: fixedID)
            body(&w)
            return w.finish() ?? 0
        }
        return Array(buffer[0..<length])
    }

    static func headerOnly(_ method: STUNMethod) -> [UInt8] { request(method) { _ in } }
}
