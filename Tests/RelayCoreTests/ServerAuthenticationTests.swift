import Testing
@testable import RelayCore
import STUN

/// The long-term credential mechanism as the server runs it (RFC 8489 §9.2.4), end to end.
@Suite struct ServerAuthenticationTests {
    /// An Allocate with REQUESTED-TRANSPORT, LIFETIME and SOFTWARE as real clients send it (64 bytes
    /// unauthenticated: large enough for the full challenge within 3× its size).
    func allocate(_ h: Harness, id: UInt8 = 1, client: TransportAddress = Addr.client, auth: RequestAuth?,
                  fingerprint: Bool = false) -> Outputs {
        h.receive(message(.allocate, id: transactionID(id), auth: auth, fingerprint: fingerprint) {
            $0.appendRequestedTransport(17)
            $0.appendUInt32(.lifetime, 600)
            $0.append(.software, string: "test client 1.0")
        }, from: client)
    }

    /// A nonce from a full challenge (the harness's own comes from a small request: compact).
    func fullNonce(_ h: Harness, client: TransportAddress = Addr.client) throws -> String {
        let response = try #require(allocate(h, id: 199, client: client, auth: nil).only)
        return try #require(try inspect(response.bytes) { try $0.nonce() })
    }

    /// The 401/438 challenge, byte for byte (the nonce is taken from the response and checked by
    /// using it).
    /// `key`: the key the request's own MESSAGE-INTEGRITY proved (the challenge is signed with it).
    func expectChallenge(_ out: Outputs, _ code: STUNErrorCode, id: UInt8, key: [UInt8]? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let response = try #require(out.only, sourceLocation: sourceLocation)
        let nonce = try #require(try inspect(response.bytes) { try $0.nonce() }, sourceLocation: sourceLocation)
        #expect(response.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(id), key: key) {
            $0.appendErrorCode(code)
            $0.append(.realm, string: "example.org")
            $0.append(.nonce, string: nonce)
            $0.appendPasswordAlgorithms([.sha256, .md5])
        }, sourceLocation: sourceLocation)
        return nonce
    }

    @Test func noIntegrityGets401WithRealmNonceAndPasswordAlgorithms() throws {
        let h = Harness()
        let nonce = try expectChallenge(allocate(h, auth: nil), .unauthenticated, id: 1)
        #expect(nonce.hasPrefix("obMatJos2AAAB"))
        // The nonce works.
        #expect(allocate(h, id: 2, auth: RequestAuth(credentials: .alice, nonce: nonce)).opens.count == 1)
        #expect(h.server.statistics.responses.unauthorized401 == 1)
    }

    @Test func withoutAdvertisedAlgorithmsTheChallengeHasNoList() throws {
        let h = Harness { $0.advertisePasswordAlgorithms = false }
        let response = try #require(allocate(h, auth: nil).only)
        let nonce = try #require(try inspect(response.bytes) { try $0.nonce() })
        #expect(nonce.hasPrefix("obMatJos2AAAA"))
        #expect(try inspect(response.bytes) { try $0.passwordAlgorithms() } == [])
    }

    @Test func staleForgedOrForeignNonceGets438WithAFreshOne() throws {
        let h = Harness()
        let nonce = try h.nonce()
        // RFC 8489 §9.2.4: "If the NONCE is no longer valid ... 438 (Stale Nonce)".
        h.now = h.now.adding(seconds: 600)
        let fresh = try expectChallenge(allocate(h, id: 2, auth: RequestAuth(credentials: .alice, nonce: nonce)), .staleNonce, id: 2,
                                        key: Credentials.alice.key)
        #expect(fresh != nonce)
        #expect(allocate(h, id: 3, auth: RequestAuth(credentials: .alice, nonce: fresh)).opens.count == 1)
        // Forged: right shape, wrong tag.
        var forged = Array(fresh.utf8)
        forged[forged.count - 1] = forged[forged.count - 1] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        _ = try expectChallenge(allocate(h, id: 4, client: Addr.client2, auth: RequestAuth(credentials: .bob, nonce: String(decoding: forged, as: UTF8.self))),
                                .staleNonce, id: 4, key: Credentials.bob.key)
        // A nonce is bound to the client's transport address.
        _ = try expectChallenge(allocate(h, id: 5, client: Addr.client2, auth: RequestAuth(credentials: .bob, nonce: fresh)), .staleNonce, id: 5,
                                key: Credentials.bob.key)
        #expect(h.server.statistics.responses.staleNonce438 == 3)
    }

    @Test func unknownUserAndWrongPasswordGet401() throws {
        let h = Harness()
        let nonce = try h.nonce()
        _ = try expectChallenge(allocate(h, id: 2, auth: RequestAuth(credentials: Credentials(username: "mallory", password: "x"), nonce: nonce)),
                                .unauthenticated, id: 2)
        _ = try expectChallenge(allocate(h, id: 3, auth: RequestAuth(credentials: Credentials(username: "alice", password: "wrong"), nonce: nonce)),
                                .unauthenticated, id: 3)
        // The realm is part of the key: another realm's key does not verify.
        var otherRealm = Credentials.alice
        otherRealm.realm = "elsewhere"
        _ = try expectChallenge(allocate(h, id: 4, auth: RequestAuth(credentials: otherRealm, nonce: nonce)), .unauthenticated, id: 4)
        #expect(h.server.allocationCount == 0)
    }

    @Test func integrityWithoutUsernameIs400AndWithoutNonceIsASignedChallenge() throws {
        // RFC 8489 §9.2.4: "If the message contains a MESSAGE-INTEGRITY ... but is missing either
        // the USERNAME or USERHASH, REALM, or NONCE attribute ... 400 (Bad Request)." Except the
        // NONCE: Firezone's clients send their first Allocate without one and need a 401 with a
        // nonce, signed with their key (see `Server.authenticate`).
        let h = Harness()
        let nonce = try h.nonce()
        let noUsername = message(.allocate, id: transactionID(2)) { w in
            w.appendRequestedTransport(17)
            w.append(.realm, string: "example.org")
            w.append(.nonce, string: nonce)
            w.appendMessageIntegrity(key: Credentials.alice.key)
        }
        let noNonce = message(.allocate, id: transactionID(3)) { w in
            w.appendRequestedTransport(17)
            w.append(.username, string: "alice")
            w.append(.realm, string: "example.org")
            w.appendMessageIntegrity(key: Credentials.alice.key)
        }
        #expect(h.receive(noUsername, from: Addr.client).only?.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(2)) {
            $0.appendErrorCode(.badRequest)
        })
        let challenge = try #require(h.receive(noNonce, from: Addr.client).only)
        let fresh = try #require(try inspect(challenge.bytes) { try $0.nonce() })
        #expect(challenge.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(3), key: Credentials.alice.key) {
            $0.appendErrorCode(.unauthenticated)
            $0.append(.realm, string: "example.org")
            $0.append(.nonce, string: fresh)
            $0.appendPasswordAlgorithms([.sha256, .md5])
        })
    }

    @Test func sha256IntegrityIsAnsweredWithSha256AndFingerprintEchoed() throws {
        let h = Harness()
        var auth = try h.auth()
        auth.sha256 = true
        let pending = allocate(h, auth: auth, fingerprint: true)
        let port = try #require(pending.opens.first?.port)
        #expect(h.answer(pending.opens).only?.bytes == expectedResponse(.allocate, .successResponse, id: transactionID(1),
                                                                        key: Credentials.alice.key, sha256: true, fingerprint: true) {
            $0.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: .v4(Addr.relayV4), port: port))
            $0.appendUInt32(.lifetime, 600)
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        })
        // Errors after authentication are signed the same way.
        auth.nonce = try h.nonce()
        #expect(allocate(h, id: 2, auth: auth).only?.bytes == expectedResponse(.allocate, .errorResponse, id: transactionID(2),
                                                                             key: Credentials.alice.key, sha256: true) {
            $0.appendErrorCode(.allocationMismatch)
        })
    }

    @Test func softwareGoesIntoAuthenticatedResponsesWhenConfigured() throws {
        let h = Harness { $0.software = "turn-relay 1.0" }
        let (_, _, response) = try h.allocate()
        #expect(try inspect(response) { try $0.software() } == "turn-relay 1.0")
        #expect(try inspect(response) { $0.verifyMessageIntegrity(key: Credentials.alice.key) })
    }

    @Test func passwordAlgorithmSha256DerivesTheKeyWithSha256() throws {
        let h = Harness()
        var credentials = Credentials.alice
        credentials.algorithm = .sha256
        let auth = RequestAuth(credentials: credentials, nonce: try fullNonce(h), passwordAlgorithms: [.sha256, .md5])
        let pending = allocate(h, auth: auth)
        let response = try #require(h.answer(pending.opens).only)
        #expect(try inspect(response.bytes) { $0.verifyMessageIntegrity(key: credentials.key) })
        #expect(errorCode(response.bytes) == nil)
    }

    @Test func passwordAlgorithmsThatDoNotMatchTheOfferAre400() throws {
        let h = Harness()
        var credentials = Credentials.alice
        credentials.algorithm = .sha256
        // The list must be the one the server sent ([SHA-256, MD5]), in order.
        let reordered = RequestAuth(credentials: credentials, nonce: try fullNonce(h), passwordAlgorithms: [.md5, .sha256])
        #expect(errorCode(try #require(allocate(h, auth: reordered).only).bytes) == 400)
        // PASSWORD-ALGORITHM without PASSWORD-ALGORITHMS.
        let lone = message(.allocate, id: transactionID(2)) { w in
            w.appendRequestedTransport(17)
            w.append(.username, string: "alice")
            w.append(.realm, string: "example.org")
            w.append(.nonce, string: (try? h.nonce()) ?? "")
            w.appendPasswordAlgorithm(.sha256)
            w.appendMessageIntegrity(key: credentials.key)
        }
        #expect(errorCode(try #require(h.receive(lone, from: Addr.client).only).bytes) == 400)
    }

    @Test func userhashFindsStaticUsers() throws {
        let h = Harness()
        var auth = try h.auth()
        auth.userhash = true
        let pending = allocate(h, auth: auth)
        #expect(pending.opens.count == 1)
        // A username the server cannot find from its hash (not a static user): 401.
        var unknown = RequestAuth(credentials: Credentials(username: "1900000000:eve", password: "x"), nonce: try h.nonce(for: Addr.client2))
        unknown.userhash = true
        _ = try expectChallenge(allocate(h, id: 2, client: Addr.client2, auth: unknown), .unauthenticated, id: 2)
    }

    @Test func restCredentialsWorkUntilTheyExpireAndSecretsRotate() throws {
        let h = Harness { $0.credentials = CredentialStore(restSecrets: ["new-secret", "old-secret"]) }
        let start = h.now.unixSeconds
        for (i, secret) in ["old-secret", "new-secret"].enumerated() {
            let client = TransportAddress(ip: Addr.client.ip, port: UInt16(2000 + i))
            let made = RESTCredential.make(secret: secret, ttlSeconds: 3600, id: "user\(i)", nowUnixSeconds: start)
            let credentials = Credentials(username: made.username, password: made.password)
            #expect(try h.allocate(client, as: credentials, id: UInt8(i + 1)).relays.count == 1)
        }
        // Expired: "<expiry>" in the past.
        let expired = RESTCredential.make(secret: "new-secret", ttlSeconds: 0, id: "late", nowUnixSeconds: start - 10)
        let nonce = try h.nonce(for: Addr.client2)
        _ = try expectChallenge(allocate(h, id: 9, client: Addr.client2,
                                         auth: RequestAuth(credentials: Credentials(username: expired.username, password: expired.password), nonce: nonce)),
                                .unauthenticated, id: 9,
                                // Signed: the expired username still names the key its request proved.
                                key: Credentials(username: expired.username, password: expired.password).key)
    }

    @Test func firezoneCredentialsAuthenticate() throws {
        let h = Harness { $0.credentials = CredentialStore(firezoneSecrets: ["stamp-secret"]) }
        let expiry = h.now.unixSeconds + 3600
        let credentials = Credentials(username: "\(expiry):c2FsdA", password: FirezoneCredential.password(expiry: expiry, secret: "stamp-secret", salt: "c2FsdA"))
        #expect(try h.allocate(as: credentials).relays.count == 1)
    }

    @Test func otherUsersRequestsOnAnAllocationGet441() throws {
        let h = Harness()
        try h.allocate()
        let request = message(.refresh, id: transactionID(5), auth: RequestAuth(credentials: .bob, nonce: try h.nonce()))
        #expect(h.receive(request, from: Addr.client).only?.bytes == expectedResponse(.refresh, .errorResponse, id: transactionID(5), key: Credentials.bob.key) {
            $0.appendErrorCode(.wrongCredentials)
        })
    }

    @Test func challengesAreRateLimitedPerSource() throws {
        let h = Harness { $0.challengesPerSecondPerSource = 3 }
        var answered = 0
        for i in 0..<10 where !allocate(h, id: UInt8(i), auth: nil).sent.isEmpty { answered += 1 }
        #expect(answered == 3)
        #expect(h.server.statistics.drops.challengeRateLimited == 7)
        // Another source has its own budget; the first gets one more after a third of a second.
        #expect(allocate(h, client: Addr.client2, auth: nil).sent.count == 1)
        h.now = h.now.adding(nanoseconds: 340_000_000)
        #expect(allocate(h, auth: nil).sent.count == 1)
        #expect(allocate(h, auth: nil).sent.isEmpty)
        // Non-challenge answers (Binding) are not limited.
        for _ in 0..<10 { #expect(h.receive(message(.binding), from: Addr.client).sent.count == 1) }
    }

    /// Found by the server-deep fuzz target (RELIABILITY.md, "Fuzzing"): a request signed with
    /// valid credentials but a nonce gone stale is answered 438, and the 438s share the source's
    /// challenge budget with the 401s, so past the budget such a request gets no answer at all (a
    /// client retransmitting with an old nonce cannot make the server answer without limit). After
    /// the budget refills, the 438 brings a fresh nonce, with which the request authenticates.
    @Test func staleNonceAnswersShareTheChallengeBudget() throws {
        let h = Harness { $0.challengesPerSecondPerSource = 3 }
        let stale = try h.nonce()
        h.advance(seconds: 700)
        var answered = 0
        for i in 0..<6 {
            if let only = allocate(h, id: UInt8(10 + i), auth: RequestAuth(credentials: .alice, nonce: stale)).only {
                #expect(errorCode(only.bytes) == 438)
                answered += 1
            }
        }
        #expect(answered == 3)
        #expect(h.server.statistics.drops.challengeRateLimited == 3)
        h.now = h.now.adding(seconds: 1)
        let response = try #require(allocate(h, id: 20, auth: RequestAuth(credentials: .alice, nonce: stale)).only)
        #expect(errorCode(response.bytes) == 438)
        let fresh = try #require(try inspect(response.bytes) { try $0.nonce() })
        let pending = allocate(h, id: 21, auth: RequestAuth(credentials: .alice, nonce: fresh))
        #expect(pending.sent.isEmpty && pending.opens.count == 1)
    }

    @Test func bindingIgnoresIntegrity() throws {
        let h = Harness()
        let request = message(.binding, id: transactionID(7), auth: RequestAuth(credentials: Credentials(username: "x", password: "y"), nonce: "n"))
        #expect(h.receive(request, from: Addr.client).only?.bytes == expectedResponse(.binding, .successResponse, id: transactionID(7)) {
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        })
    }
}
