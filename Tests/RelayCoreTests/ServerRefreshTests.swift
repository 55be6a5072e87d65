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
}
