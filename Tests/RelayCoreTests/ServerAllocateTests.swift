import Testing
@testable import RelayCore
import STUN

/// Allocate (RFC 8656 §7.2), in the order of its checks, and the socket round trip with the shell.
@Suite struct ServerAllocateTests {
    /// An authenticated Allocate from alice with `body` attributes.
    func allocateRequest(_ h: Harness, id: UInt8 = 1, client: TransportAddress = Addr.client, as credentials: Credentials = .alice,
                         transport: UInt8? = 17, _ body: (inout STUNMessageWriter) -> Void = { _ in }) throws -> [UInt8] {
        let nonce = try h.nonce(for: client)
        return message(.allocate, id: transactionID(id), auth: RequestAuth(credentials: credentials, nonce: nonce)) { w in
            if let transport { w.appendRequestedTransport(transport) }
            body(&w)
        }
    }

    func expectError(_ out: Outputs, _ code: STUNErrorCode, id: UInt8 = 1, key: [UInt8] = Credentials.alice.key,
                     sourceLocation: SourceLocation = #_sourceLocation,
                     _ extra: (inout STUNMessageWriter) -> Void = { _ in }) {
        #expect(out.requests.isEmpty, sourceLocation: sourceLocation)
        #expect(out.only?.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(id), key: key) {
            $0.appendErrorCode(code)
            extra(&$0)
        }, sourceLocation: sourceLocation)
    }

    @Test func successResponseWaitsForTheSocketAndIsSigned() throws {
        let h = Harness()
        let pending = h.receive(try allocateRequest(h), from: Addr.client)
        #expect(pending.sent.isEmpty)
        let open = try #require(pending.opens.first)
        #expect(pending.opens.count == 1)
        #expect(open.handle == .allocation(index: 0))
        #expect(open.family == .ipv4)
        #expect((49152...65535).contains(open.port))
        let done = h.answer(pending.opens)
        #expect(done.only?.socket == .listener(.ipv4))
        #expect(done.only?.destination == Addr.client)
        #expect(done.only?.bytes == expectedResponse(.allocate, .successResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v4(Addr.relayV4), port: open.port))
            $0.appendUInt32(.lifetime, 600)
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        })
        #expect(h.server.allocationCount == 1)
        #expect(h.server.statistics.allocationsCreated == 1)
    }

    @Test func portsAreRandomFromTheSeed() throws {
        func firstPort(seed: UInt64) throws -> UInt16 {
            let h = Harness(seed: seed)
            return try #require(h.receive(try allocateRequest(h), from: Addr.client).opens.first?.port)
        }
        #expect(try firstPort(seed: 1) == firstPort(seed: 1))
        #expect(try firstPort(seed: 1) != firstPort(seed: 2))
    }

    @Test func retransmissionsGetTheSameResponseAndOthers437() throws {
        let h = Harness()
        let request = try allocateRequest(h)
        let pending = h.receive(request, from: Addr.client)
        // While the socket is opening, a retransmission is ignored (the answer comes once open).
        #expect(h.receive(request, from: Addr.client).sent.isEmpty)
        #expect(h.receive(request, from: Addr.client).requests.isEmpty)
        let first = try #require(h.answer(pending.opens).only)
        // RFC 8489 §6.3.4: same 5-tuple and transaction ID → the same response bytes.
        h.now = h.now.adding(seconds: 5)
        let again = try #require(h.receive(request, from: Addr.client).only)
        #expect(again.bytes == first.bytes)
        #expect(h.server.statistics.responses.retransmitted == 1)
        // A new transaction from the same 5-tuple: RFC 8656 §7.2 step 2, 437.
        expectError(h.receive(try allocateRequest(h, id: 2), from: Addr.client), .allocationMismatch, id: 2)
        // After the cache lifetime (40 s) the retransmission is answered from the allocation state.
        h.now = h.now.adding(seconds: 60)
        let late = try #require(h.receive(request, from: Addr.client).only)
        #expect(try inspect(late.bytes) { try $0.xorRelayedAddresses() } == inspect(first.bytes) { try $0.xorRelayedAddresses() })
        #expect(try inspect(late.bytes) { try $0.lifetime() } == 535)
    }

    @Test func aLateRetransmissionRepeatsTokenAndAddressError() throws {
        let h = Harness()
        let request = try allocateRequest(h) {
            $0.appendEvenPort(reserveNext: true)
        }
        let first = try #require(h.answer(h.receive(request, from: Addr.client).opens).only)
        h.now = h.now.adding(seconds: 50)
        let late = try #require(h.receive(request, from: Addr.client).only)
        #expect(try inspect(late.bytes) { try $0.reservationToken() } == inspect(first.bytes) { try $0.reservationToken() })
        #expect(try inspect(late.bytes) { try $0.lifetime() } == 550)

        let partial = Harness()
        let dual = try allocateRequest(partial) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        _ = partial.answer(partial.receive(dual, from: Addr.client).opens)
        partial.now = partial.now.adding(seconds: 50)
        let again = try #require(partial.receive(dual, from: Addr.client).only)
        #expect(try inspect(again.bytes) { try $0.addressErrorCode()?.code } == 440)
    }

    @Test func requestedTransportMissingIs400AndNotUDPIs442() throws {
        let h = Harness()
        expectError(h.receive(try allocateRequest(h, transport: nil), from: Addr.client), .badRequest)
        // Neither UDP nor TCP (132: SCTP) is 442; TCP over a UDP client connection is RFC 6062's
        // 400 ("If the client connection transport is not TCP or TLS").
        expectError(h.receive(try allocateRequest(h, id: 2, transport: 132), from: Addr.client), .unsupportedTransportProtocol, id: 2)
        expectError(h.receive(try allocateRequest(h, id: 3, transport: 6), from: Addr.client), .badRequest, id: 3)
        #expect(h.server.allocationCount == 0)
    }

    @Test func dontFragmentIsAnUnknownAttribute() throws {
        // RFC 8656 §7.2 step 4: this server does not set DF, so DONT-FRAGMENT is treated "as an
        // unknown comprehension-required attribute".
        let h = Harness()
        let out = h.receive(try allocateRequest(h) { $0.appendEmpty(.dontFragment) }, from: Addr.client)
        expectError(out, .unknownAttribute) { $0.appendUnknownAttributes([.dontFragment]) }
    }

    @Test func lifetimeIsDefaultedAndCapped() throws {
        func granted(_ requested: UInt32?, _ configure: (inout ServerConfiguration) -> Void = { _ in }) throws -> UInt32? {
            let h = Harness(configure)
            let (_, _, response) = try h.allocate { w in if let requested { w.appendUInt32(.lifetime, requested) } }
            return try inspect(response) { try $0.lifetime() }
        }
        #expect(try granted(nil) == 600)
        #expect(try granted(0) == 600)
        #expect(try granted(100) == 600)
        #expect(try granted(1200) == 1200)
        #expect(try granted(5000) == 3600)
        #expect(try granted(5000) { $0.maxLifetime = 1800 } == 1800)
        #expect(try granted(nil) { $0.defaultLifetime = 300 } == 300)
    }

    @Test func allocationExpiresAfterItsLifetimeAndClosesItsSocket() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        #expect(h.server.nextTimeout() == h.now.adding(seconds: 600))
        #expect(h.advance(seconds: 599).closes.isEmpty)
        let expired = h.advance(seconds: 1)
        #expect(expired.closes == handles)
        #expect(h.server.allocationCount == 0)
        #expect(h.server.nextTimeout() == nil)
        #expect(h.server.tableSizes.total == h.server.tableSizes.transactionCache)
        #expect(h.server.statistics.allocationsExpired == 1)
    }

    // MARK: Address families (RFC 8656 §7.2 steps 6, 7, 9)

    @Test func requestedFamilyNotOfferedIs440() throws {
        let h = Harness()
        expectError(h.receive(try allocateRequest(h) { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }, from: Addr.client),
                    .addressFamilyNotSupported)
        // No REQUESTED-ADDRESS-FAMILY and no IPv4 relay address: 440 too.
        let v6only = Harness { $0.relayAddressIPv4 = nil; $0.relayAddressIPv6 = Addr.relayV6 }
        expectError(v6only.receive(try allocateRequest(v6only), from: Addr.client), .addressFamilyNotSupported)
    }

    @Test func bothFamilyAttributesOrAdditionalIPv4Are400() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        expectError(h.receive(try allocateRequest(h) {
            $0.appendAddressFamily(.requestedAddressFamily, .ipv4)
            $0.appendAddressFamily(.additionalAddressFamily, .ipv6)
        }, from: Addr.client), .badRequest)
        expectError(h.receive(try allocateRequest(h, id: 2) { $0.appendAddressFamily(.additionalAddressFamily, .ipv4) }, from: Addr.client),
                    .badRequest, id: 2)
    }

    @Test func dualAllocationOpensOneSocketPerFamilyOnOnePort() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let pending = h.receive(try allocateRequest(h) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }, from: Addr.client)
        #expect(pending.opens.map(\.family) == [.ipv4, .ipv6])
        let port = try #require(pending.opens.first?.port)
        #expect(pending.opens.allSatisfy { $0.port == port })
        #expect(Set(pending.opens.map(\.handle)).count == 2)
        // Nothing until both are open.
        #expect(h.answer([pending.opens[0]]).sent.isEmpty)
        let done = h.answer([pending.opens[1]])
        #expect(done.only?.bytes == expectedResponse(.allocate, .successResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v4(Addr.relayV4), port: port))
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v6(Addr.relayV6), port: port))
            $0.appendUInt32(.lifetime, 600)
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        })
    }

    @Test func draftCodepointOfAdditionalAddressFamilyAsksForADualAllocation() throws {
        // coturn's turnutils_uclient -Z sends ADDITIONAL-ADDRESS-FAMILY as 0x8032
        // (draft-ietf-tram-turn-ipv6); RFC 8656 §18.11 numbers it 0x8000. Same request either way.
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let pending = h.receive(try allocateRequest(h) { $0.appendAddressFamily(.draftAdditionalAddressFamily, .ipv6) }, from: Addr.client)
        #expect(pending.opens.map(\.family) == [.ipv4, .ipv6])
        let port = try #require(pending.opens.first?.port)
        #expect(h.answer(pending.opens).only?.bytes == expectedResponse(.allocate, .successResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v4(Addr.relayV4), port: port))
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v6(Addr.relayV6), port: port))
            $0.appendUInt32(.lifetime, 600)
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        })
        // The draft codepoint obeys the same rules: with REQUESTED-ADDRESS-FAMILY, or naming IPv4, 400.
        expectError(h.receive(try allocateRequest(h, id: 2, client: Addr.client2) {
            $0.appendAddressFamily(.requestedAddressFamily, .ipv4)
            $0.appendAddressFamily(.draftAdditionalAddressFamily, .ipv6)
        }, from: Addr.client2), .badRequest, id: 2)
        expectError(h.receive(try allocateRequest(h, id: 3, client: Addr.client2) {
            $0.appendAddressFamily(.draftAdditionalAddressFamily, .ipv4)
        }, from: Addr.client2),
                    .badRequest, id: 3)
    }

    @Test func requestedIPv6OnDualStackServerGetsOnlyIPv6() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (relays, _, _) = try h.allocate { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }
        #expect(relays.map(\.family) == [.ipv6])
    }

    @Test func additionalIPv6WithoutIPv6IsAPartialSuccess() throws {
        let h = Harness()
        let pending = h.receive(try allocateRequest(h) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }, from: Addr.client)
        let port = try #require(pending.opens.first?.port)
        #expect(pending.opens.count == 1)
        // RFC 8656 §7.2 step 9: "it includes ADDRESS-ERROR-CODE attribute in the success response".
        let response = h.answer(pending.opens).only?.bytes
        #expect(response == expectedResponse(.allocate, .successResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v4(Addr.relayV4), port: port))
            $0.appendUInt32(.lifetime, 600)
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
            $0.appendAddressErrorCode(family: .ipv6, code: 440, reason: "Address Family not Supported")
        })
        // The attribute written by hand from RFC 8656 §18.12 (type 0x8001, length 32, family 0x02,
        // class 4, number 40, the reason), not by the writer the expectation above uses.
        let addressError: [UInt8] = [0x80, 0x01, 0x00, 0x20, 0x02, 0x00, 0x04, 0x28] + Array("Address Family not Supported".utf8)
        #expect(response?.firstRange(of: addressError) != nil)
    }

    // MARK: EVEN-PORT and RESERVATION-TOKEN

    @Test func evenPortGivesAnEvenPort() throws {
        for seed: UInt64 in 1...8 {
            let h = Harness(seed: seed)
            let (relays, _, response) = try h.allocate { $0.appendEvenPort(reserveNext: false) }
            #expect(relays.first.map { $0.port % 2 == 0 } == true)
            #expect(try inspect(response) { try $0.reservationToken() } == nil)
        }
    }

    @Test func reserveNextHoldsPortNPlusOneForTheToken() throws {
        let h = Harness()
        let (relays, _, response) = try h.allocate { $0.appendEvenPort(reserveNext: true) }
        let port = try #require(relays.first?.port)
        #expect(port % 2 == 0)
        let token = try #require(try inspect(response) { try $0.reservationToken() })
        #expect(h.server.tableSizes.reservations == 1)
        // Another client redeems the token within 30 s and gets N+1.
        let second = h.receive(try allocateRequest(h, id: 9, client: Addr.client2, as: .bob) { $0.appendUInt64(.reservationToken, token) },
                               from: Addr.client2)
        #expect(second.opens.map(\.port) == [port + 1])
        #expect(h.server.tableSizes.reservations == 0)
        // A token is good once.
        let third = h.receive(try allocateRequest(h, id: 10, client: TransportAddress("93.184.216.36:1")!, as: .bob) {
            $0.appendUInt64(.reservationToken, token)
        }, from: TransportAddress("93.184.216.36:1")!)
        expectError(third, .insufficientCapacity, id: 10, key: Credentials.bob.key)
    }

    @Test func reservationExpiresAfter30Seconds() throws {
        let h = Harness()
        let (_, _, response) = try h.allocate { $0.appendEvenPort(reserveNext: true) }
        let token = try #require(try inspect(response) { try $0.reservationToken() })
        #expect(h.server.nextTimeout() == h.now.adding(seconds: 30))
        h.advance(seconds: 30)
        #expect(h.server.tableSizes.reservations == 0)
        let late = h.receive(try allocateRequest(h, id: 9, client: Addr.client2, as: .bob) { $0.appendUInt64(.reservationToken, token) },
                             from: Addr.client2)
        expectError(late, .insufficientCapacity, id: 9, key: Credentials.bob.key)
    }

    @Test func reservationTokenWithOtherPortAttributesIs400() throws {
        let h = Harness()
        expectError(h.receive(try allocateRequest(h) {
            $0.appendUInt64(.reservationToken, 1)
            $0.appendEvenPort(reserveNext: false)
        }, from: Addr.client), .badRequest)
        let dual = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        // Step 8: R bit with ADDITIONAL-ADDRESS-FAMILY.
        expectError(dual.receive(try allocateRequest(dual) {
            $0.appendEvenPort(reserveNext: true)
            $0.appendAddressFamily(.additionalAddressFamily, .ipv6)
        }, from: Addr.client), .badRequest)
    }

    @Test func reservationsAreBounded() throws {
        // coturn CVE-2026-73215: EVEN-PORT reservations must not exhaust the port pool.
        let h = Harness { $0.maxReservations = 2 }
        for i in 0..<2 {
            let client = TransportAddress(ip: Addr.client.ip, port: UInt16(1000 + i))
            try h.allocate(client, id: UInt8(i + 1)) { $0.appendEvenPort(reserveNext: true) }
        }
        let client = TransportAddress(ip: Addr.client.ip, port: 1002)
        expectError(h.receive(try allocateRequest(h, id: 3, client: client) { $0.appendEvenPort(reserveNext: true) }, from: client),
                    .insufficientCapacity, id: 3)
        #expect(h.server.tableSizes.reservations == 2)
    }

    // MARK: Quotas and capacity

    @Test func allocationsPerUsernameQuotaIs486() throws {
        let h = Harness { $0.maxAllocationsPerUsername = 2 }
        try h.allocate(TransportAddress(ip: Addr.client.ip, port: 1000), id: 1)
        try h.allocate(TransportAddress(ip: Addr.client.ip, port: 1001), id: 2)
        let third = TransportAddress(ip: Addr.client.ip, port: 1002)
        expectError(h.receive(try allocateRequest(h, id: 3, client: third), from: third), .allocationQuotaReached, id: 3)
        // Another user is not affected.
        try h.allocate(third, as: .bob, id: 4)
        #expect(h.server.statistics.responses.quotaReached486 == 1)
    }

    @Test func totalAllocationsAndPortExhaustionAre508() throws {
        let h = Harness { $0.maxAllocations = 1 }
        try h.allocate()
        expectError(h.receive(try allocateRequest(h, id: 2, client: Addr.client2, as: .bob), from: Addr.client2),
                    .insufficientCapacity, id: 2, key: Credentials.bob.key)

        let small = Harness { $0.portRange = 50000...50001 }
        let (first, _, _) = try small.allocate(TransportAddress(ip: Addr.client.ip, port: 1000), id: 1)
        let (second, _, _) = try small.allocate(TransportAddress(ip: Addr.client.ip, port: 1001), id: 2)
        #expect(Set(first.map(\.port) + second.map(\.port)) == [50000, 50001])
        let third = TransportAddress(ip: Addr.client.ip, port: 1002)
        expectError(small.receive(try allocateRequest(small, id: 3, client: third), from: third), .insufficientCapacity, id: 3)
    }

    // MARK: Bind failures

    @Test func failedBindIsRetriedOnAnotherPort() throws {
        let h = Harness()
        let pending = h.receive(try allocateRequest(h), from: Addr.client)
        let first = try #require(pending.opens.first)
        let retry = h.answer(pending.opens, with: .failed(errno: 98))
        #expect(retry.sent.isEmpty)
        let second = try #require(retry.opens.first)
        #expect(second.handle == first.handle)
        #expect(second.port != first.port)
        let done = h.answer(retry.opens)
        #expect(try inspect(try #require(done.only).bytes) { try $0.xorRelayedAddresses() }
            == [TransportAddress(ip: .v4(Addr.relayV4), port: second.port)])
        #expect(h.server.statistics.bindFailures == 1)
    }

    @Test func bindFailingEverywhereIs508AndLeavesNothing() throws {
        let h = Harness { $0.maxBindAttempts = 3 }
        var opens = h.receive(try allocateRequest(h), from: Addr.client).opens
        for _ in 0..<2 {
            let retry = h.answer(opens, with: .failed(errno: 98))
            #expect(retry.opens.count == 1)
            opens = retry.opens
        }
        let failed = h.answer(opens, with: .failed(errno: 98))
        expectError(failed, .insufficientCapacity)
        #expect(h.server.allocationCount == 0)
        #expect(h.server.tableSizes.sockets == 0)
        #expect(h.server.nextTimeout() == nil)
    }

    @Test func dualAllocationSurvivesOneFamilyFailingWithAddressErrorCode() throws {
        let h = Harness {
            $0.relayAddressIPv6 = Addr.relayV6
            $0.maxBindAttempts = 1
        }
        let pending = h.receive(try allocateRequest(h) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }, from: Addr.client)
        #expect(h.answer([pending.opens[1]], with: .failed(errno: 98)).sent.isEmpty)
        let done = h.answer([pending.opens[0]])
        #expect(done.only?.bytes == expectedResponse(.allocate, .successResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v4(Addr.relayV4), port: pending.opens[0].port))
            $0.appendUInt32(.lifetime, 600)
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
            $0.appendAddressErrorCode(family: .ipv6, code: 508, reason: "Insufficient Capacity")
        })
    }

    @Test func shellNeverAnsweringTimesOutWith508() throws {
        let h = Harness()
        let pending = h.receive(try allocateRequest(h), from: Addr.client)
        #expect(h.server.nextTimeout() == h.now.adding(seconds: 10))
        let out = h.advance(seconds: 10)
        #expect(out.closes == pending.opens.map(\.handle))
        #expect(out.only?.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendErrorCode(.insufficientCapacity)
        })
        #expect(h.server.allocationCount == 0)
        // The late answer for the closed handle is harmless, and the handle is then reusable.
        #expect(h.answer(pending.opens).sent.isEmpty)
        #expect(h.server.tableSizes.sockets == 0)
    }

    // MARK: Draining

    @Test func drainingRefusesNewAllocationsButKeepsOldOnes() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.channelBind(0x4000, to: Addr.peer)
        h.server.drain()
        expectError(h.receive(try allocateRequest(h, id: 2, client: Addr.client2, as: .bob), from: Addr.client2),
                    .insufficientCapacity, id: 2, key: Credentials.bob.key)
        #expect(h.receive(channelData(0x4000, [1, 2]), from: Addr.client).only?.socket == handles[0])

        let alt = TransportAddress("198.51.100.7:3478")!
        let redirecting = Harness { $0.alternateServer = alt }
        redirecting.server.drain()
        let out = redirecting.receive(try allocateRequest(redirecting), from: Addr.client)
        #expect(errorCode(try #require(out.only).bytes) == 300)
        #expect(out.only?.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(1), key: Credentials.alice.key) {
            $0.appendErrorCode(.tryAlternate)
            $0.appendPlainAddress(.alternateServer, alt)
        })
    }
}
