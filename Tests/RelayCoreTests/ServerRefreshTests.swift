import Testing
@testable import RelayCore
import STUN

/// Refresh (RFC 8656 §8.2).
@Suite struct ServerRefreshTests {
    func refresh(_ h: Harness, id: UInt8, client: TransportAddress = Addr.client, _ body: (inout STUNMessageWriter) -> Void = { _ in }) throws -> Outputs {
        h.receive(message(.refresh, id: transactionID(id), auth: try h.auth(client: client), body), from: client)
    }

    @Test func refreshSetsTheDesiredLifetime() throws {
        let h = Harness()
        try h.allocate()
        h.advance(seconds: 500)
        let out = try refresh(h, id: 2) { $0.appendUInt32(.lifetime, 1200) }
        #expect(out.only?.bytes == expectedResponse(.refresh, .successResponse, id: transactionID(2), key: Credentials.alice.key) {
            $0.appendUInt32(.lifetime, 1200)
        })
        #expect(h.server.nextTimeout() == h.now.adding(seconds: 1200))
        // Without LIFETIME: the default; below the default: the default; above the max: the max.
        #expect(try inspect(try #require(try refresh(h, id: 3).only).bytes) { try $0.lifetime() } == 600)
        #expect(h.server.nextTimeout() == h.now.adding(seconds: 600))
        #expect(try inspect(try #require(try refresh(h, id: 4) { $0.appendUInt32(.lifetime, 30) }.only).bytes) { try $0.lifetime() } == 600)
        #expect(try inspect(try #require(try refresh(h, id: 5) { $0.appendUInt32(.lifetime, 90000) }.only).bytes) { try $0.lifetime() } == 3600)
        // The allocation now outlives its original 600 s.
        h.advance(seconds: 3599)
        #expect(h.server.allocationCount == 1)
        h.advance(seconds: 1)
        #expect(h.server.allocationCount == 0)
    }

    @Test func refreshWithoutAnAllocationIs437() throws {
        let h = Harness()
        let out = try refresh(h, id: 2)
        #expect(out.only?.bytes == expectedResponse(.refresh, .errorResponse, id: transactionID(2), key: Credentials.alice.key) {
            $0.appendErrorCode(.allocationMismatch)
        })
    }

    @Test func refreshForAFamilyTheAllocationLacksIs443() throws {
        let h = Harness()
        try h.allocate()
        #expect(errorCode(try #require(try refresh(h, id: 2) { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }.only).bytes) == 443)
        #expect(errorCode(try #require(try refresh(h, id: 3) { $0.appendAddressFamily(.requestedAddressFamily, .ipv4) }.only).bytes) == nil)
    }

    @Test func refreshWithAMalformedLifetimeIs400() throws {
        let h = Harness()
        try h.allocate()
        let out = try refresh(h, id: 2) { w in [1, 2].withUnsafeBytes { w.append(.lifetime, bytes: $0) } }
        #expect(errorCode(try #require(out.only).bytes) == 400)
    }

    @Test func aDualAllocationsAddressesAreRefreshedSeparately() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (_, handles, _) = try h.allocate { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        try h.channelBind(0x4000, to: Addr.peer)
        try h.channelBind(0x4001, to: Addr.peerV6, id: 4)
        h.advance(seconds: 200)
        // RFC 8656 §8.1: REQUESTED-ADDRESS-FAMILY names the address to refresh.
        let out = try refresh(h, id: 5) {
            $0.appendAddressFamily(.requestedAddressFamily, .ipv6)
            $0.appendUInt32(.lifetime, 1200)
        }
        #expect(try inspect(try #require(out.only).bytes) { try $0.lifetime() } == 1200)
        // At 600 the IPv4 address expires alone, taking its IPv4 channel and permission with it.
        let expired = h.advance(seconds: 400)
        #expect(expired.closes == [handles[0]])
        #expect(h.server.allocationCount == 1)
        #expect(h.server.tableSizes.channels == 1)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        try h.channelBind(0x4001, to: Addr.peerV6, id: 6)
        #expect(h.receive(channelData(0x4001, [1]), from: Addr.client).only?.socket == handles[1])
        // An IPv4 peer is now a family mismatch.
        #expect(errorCode(try #require(try h.createPermission([Addr.peer], id: 7).only).bytes) == 443)
        // The IPv6 address lives until 1400.
        #expect(h.advance(seconds: 799).closes.isEmpty)
        #expect(h.advance(seconds: 1).closes == [handles[1]])
        #expect(h.server.allocationCount == 0)
        #expect(h.server.nextTimeout() == nil)
    }

    @Test func deletingOneFamilyOfADualAllocationKeepsTheOther() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (_, handles, _) = try h.allocate { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        let out = try refresh(h, id: 2) {
            $0.appendAddressFamily(.requestedAddressFamily, .ipv4)
            $0.appendUInt32(.lifetime, 0)
        }
        #expect(out.closes == [handles[0]])
        #expect(try inspect(try #require(out.only).bytes) { try $0.lifetime() } == 0)
        #expect(h.server.allocationCount == 1)
        // The rest goes with a plain delete.
        #expect(try refresh(h, id: 3) { $0.appendUInt32(.lifetime, 0) }.closes == [handles[1]])
        #expect(h.server.allocationCount == 0)
        #expect(h.server.tableSizes.sockets == 0)
    }
}
