import Testing
@testable import RelayCore
import STUN

/// The server's cache of validated nonces (`ValidatedNonceCache`): the answer is always the one
/// `NonceAuthority.validate` would give.
@Suite struct ValidatedNonceCacheTests {
    static let authority = NonceAuthority(key: Array(repeating: 0x42, count: 32))
    static let minted: UInt64 = 1_800_000_000

    func withBytes<R>(_ nonce: String, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        Array(nonce.utf8).withUnsafeBytes(body)
    }

    @Test func hitsOnlyTheSameNonceFromTheSameClient() {
        var cache = ValidatedNonceCache(seed: 9)
        let client = TransportAddress("192.0.2.1:40000")!
        let nonce = Self.authority.mint(for: client, nowUnixSeconds: Self.minted)
        #expect(withBytes(nonce) { cache.mintedAt($0, client: client) } == nil)
        withBytes(nonce) { cache.insert($0, client: client, mintedAt: Self.minted) }
        #expect(withBytes(nonce) { cache.mintedAt($0, client: client) } == Self.minted)
        // Another port or address of the same client: not this entry.
        #expect(withBytes(nonce) { cache.mintedAt($0, client: TransportAddress("192.0.2.1:40001")!) } == nil)
        #expect(withBytes(nonce) { cache.mintedAt($0, client: TransportAddress("192.0.2.2:40000")!) } == nil)
        // Every single altered byte misses, and so do a prefix and an extension.
        let bytes = Array(nonce.utf8)
        for i in bytes.indices {
            var altered = bytes
            altered[i] ^= 0x01
            #expect(altered.withUnsafeBytes { cache.mintedAt($0, client: client) } == nil)
        }
        #expect(Array(bytes.dropLast()).withUnsafeBytes { cache.mintedAt($0, client: client) } == nil)
        #expect((bytes + [0x30]).withUnsafeBytes { cache.mintedAt($0, client: client) } == nil)
        #expect(cache.count == 1)
    }

    @Test func staysBounded() {
        var cache = ValidatedNonceCache(seed: 3)
        for i in 0 ..< 3 * ValidatedNonceCache.slotCount {
            let client = TransportAddress(ip: .v4(IPv4Address(0x0A00_0000 | UInt32(i))), port: 40000)
            withBytes(Self.authority.mint(for: client, nowUnixSeconds: Self.minted)) { cache.insert($0, client: client, mintedAt: Self.minted) }
        }
        #expect(cache.count <= ValidatedNonceCache.slotCount)
        #expect(cache.count > ValidatedNonceCache.slotCount / 2)
    }

    /// Through the server: a cached nonce still goes stale at the end of its lifetime (RFC 8489
    /// §9.2.4: "If the NONCE is no longer valid, the server MUST generate an error response with
    /// an error code of 438 (Stale Nonce)"), and a cached nonce is no good from another address.
    @Test func serverStillRefusesStaleAndForeignNonces() throws {
        let h = Harness()
        let nonce = try h.nonce()
        func refresh(_ id: UInt8, from client: TransportAddress = Addr.client) -> Int? {
            let request = message(.refresh, id: transactionID(id), auth: RequestAuth(credentials: .alice, nonce: nonce))
            return h.receive(request, from: client).only.flatMap { errorCode($0.bytes) }
        }
        #expect(h.server.validatedNonces.count == 0)
        // A valid nonce on a request that does not authenticate is not remembered.
        let wrong = message(.refresh, id: transactionID(9), auth: RequestAuth(credentials: Credentials(username: "alice", password: "wrong"), nonce: nonce))
        #expect(h.receive(wrong, from: Addr.client).only.flatMap { errorCode($0.bytes) } == 401)
        #expect(h.server.validatedNonces.count == 0)
        #expect(refresh(1) == 437)
        #expect(h.server.validatedNonces.count == 1)
        #expect(refresh(2) == 437)
        #expect(refresh(3, from: Addr.client2) == 438)
        h.now = h.now.adding(seconds: 599)
        #expect(refresh(4) == 437)
        h.now = h.now.adding(seconds: 1)
        #expect(refresh(5) == 438)
        // The nonce presented from the other address was not cached for it.
        #expect(h.server.validatedNonces.count == 1)
    }
}
