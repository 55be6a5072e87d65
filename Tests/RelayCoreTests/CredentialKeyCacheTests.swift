import Testing
@testable import RelayCore
import STUN

/// The server's cache of verified long-term keys (`CredentialKeyCache`): a shortcut that never
/// changes a verdict.
@Suite struct CredentialKeyCacheTests {
    func refresh(_ h: Harness, id: Int, as credentials: Credentials, nonce: String, client: TransportAddress = Addr.client,
                 sha256: Bool = false) -> Int? {
        var auth = RequestAuth(credentials: credentials, nonce: nonce)
        auth.sha256 = sha256
        // Distinct transaction IDs, so no answer comes from the transaction cache.
        let tid = TransactionID([0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, UInt8(truncatingIfNeeded: id >> 8), UInt8(truncatingIfNeeded: id)])
        let request = message(.refresh, id: tid, auth: auth) { $0.appendUInt32(.lifetime, 600) }
        guard let response = h.receive(request, from: client).only else { return nil }
        return errorCode(response.bytes) ?? 0
    }

    /// A key that verified is kept; the same client's next request uses it and gets the same
    /// signed response as without the cache.
    @Test func verifiedKeyIsKeptAndAnswersTheSame() throws {
        let h = Harness()
        #expect(h.server.credentialKeys.count == 0)
        try h.allocate()
        #expect(h.server.credentialKeys.count == 1)
        let request = message(.refresh, id: transactionID(2), auth: try h.auth()) { $0.appendUInt32(.lifetime, 600) }
        #expect(h.receive(request, from: Addr.client).only?.bytes
            == expectedResponse(.refresh, .successResponse, id: transactionID(2), key: Credentials.alice.key) {
                $0.appendUInt32(.lifetime, 600)
            })
        // MESSAGE-INTEGRITY-SHA256 with the same username is a separate entry (another HMAC).
        #expect(refresh(h, id: 3, as: .alice, nonce: try h.nonce(), sha256: true) == 0)
        #expect(h.server.credentialKeys.count == 2)
    }

    /// RFC 8489 §9.2.4: "If the value of the USERNAME or USERHASH attribute is not valid, the
    /// server MUST generate an error response with an error code of 401". Requests that fail
    /// leave nothing behind, and a wrong password for a cached username still fails.
    @Test func failuresCacheNothingAndAreStillRefused() throws {
        let h = Harness()
        let nonce = try h.nonce()
        #expect(refresh(h, id: 2, as: Credentials(username: "mallory", password: "x"), nonce: nonce) == 401)
        #expect(refresh(h, id: 3, as: Credentials(username: "alice", password: "wrong"), nonce: nonce) == 401)
        #expect(h.server.credentialKeys.count == 0)
        // No allocation: 437 after authentication, so alice's key is now cached.
        #expect(refresh(h, id: 4, as: .alice, nonce: nonce) == 437)
        #expect(h.server.credentialKeys.count == 1)
        #expect(refresh(h, id: 5, as: Credentials(username: "alice", password: "wrong"), nonce: nonce) == 401)
        #expect(refresh(h, id: 6, as: .alice, nonce: nonce) == 437)
    }

    /// A time-limited username stops working at the expiry it names even while its key is cached.
    @Test func cachedRestCredentialStillExpires() throws {
        let h = Harness()
        let made = RESTCredential.make(secret: "rest-secret", ttlSeconds: 100, id: "u", nowUnixSeconds: h.now.unixSeconds)
        let credentials = Credentials(username: made.username, password: made.password)
        try h.allocate(as: credentials)
        #expect(h.server.credentialKeys.count == 1)
        #expect(refresh(h, id: 2, as: credentials, nonce: try h.nonce()) == 0)
        // "<expiry>" is still valid during the second it names, not after.
        h.now = h.now.adding(seconds: 100)
        #expect(refresh(h, id: 3, as: credentials, nonce: try h.freshNonce(for: Addr.client)) == 0)
        h.now = h.now.adding(seconds: 1)
        #expect(refresh(h, id: 4, as: credentials, nonce: try h.freshNonce(for: Addr.client)) == 401)
    }

    /// Thousands of distinct valid usernames (REST credentials are free to mint for whoever holds
    /// the secret) fill at most `slotCount` entries, and every one still authenticates.
    @Test func staysBounded() throws {
        let h = Harness()
        let nonce = try h.nonce()
        for i in 0 ..< 3 * CredentialKeyCache.slotCount {
            let made = RESTCredential.make(secret: "rest-secret", ttlSeconds: 3600, id: "user\(i)", nowUnixSeconds: h.now.unixSeconds)
            #expect(refresh(h, id: i, as: Credentials(username: made.username, password: made.password),
                            nonce: nonce) == 437)
        }
        #expect(h.server.credentialKeys.count <= CredentialKeyCache.slotCount)
        #expect(h.server.credentialKeys.count > CredentialKeyCache.slotCount / 2)
    }
}
