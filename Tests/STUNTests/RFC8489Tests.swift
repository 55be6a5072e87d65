import Testing
import STUN

/// RFC 8489 Appendix B.1 "Sample Request with Long-Term Authentication with MESSAGE-INTEGRITY-SHA256
/// and USERHASH", as corrected by RFC Errata 6268 (the published vector lacked PASSWORD-ALGORITHM and
/// had a wrong length and HMAC).
@Suite struct RFC8489Tests {
    static let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
    static let nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA"
    static let transactionID = TransactionID(hex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e"))

    static let sampleRequest = hex("""
        00 01 00 90  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
        00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f  24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
        00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f  34 39 39 6b  39 35 34 64
                     36 4f 4c 33  34 6f 4c 39  46 53 54 76  79 36 34 73  41 00 00 00
        00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
        00 1d 00 04  00 02 00 00
        00 1c 00 20  b5 c7 bf 00  5b 6c 52 a2  1c 51 c5 e8  92 f8 19 24  13 62 96 cb  92 7c 43 14  93 09 27 8c  c6 51 8e 65
        """)

    @Test func userhashMatchesVector() throws {
        let expected = try parsed(Self.sampleRequest) { m throws in try m.userhash().map { Array($0) } }
        #expect(expected == userhash(username: Self.username, realm: "example.org"))
    }

    @Test func sampleRequestParsesAndVerifiesWithSHA256Key() throws {
        let key = longTermKey(username: Self.username, realm: "example.org", password: "TheMatrIX", algorithm: .sha256)
        try parsed(Self.sampleRequest) { m throws in
            #expect(m.type == bindingRequest)
            #expect(try m.nonce() == Self.nonce)
            #expect(try m.realm() == "example.org")
            #expect(try m.username() == nil)
            let algorithm = try m.passwordAlgorithm()
            #expect(algorithm?.algorithm == PasswordAlgorithm.sha256.rawValue)
            #expect(algorithm?.parameters.count == 0)
            #expect(m.hasMessageIntegritySHA256 && !m.hasMessageIntegrity)
            #expect(m.verifyMessageIntegritySHA256(key: key))
            let md5Key = longTermKey(username: Self.username, realm: "example.org", password: "TheMatrIX", algorithm: .md5)
            #expect(!m.verifyMessageIntegritySHA256(key: md5Key))
        }
    }

    @Test func writerReproducesSampleRequest() {
        let key = longTermKey(username: Self.username, realm: "example.org", password: "TheMatrIX", algorithm: .sha256)
        let hash = userhash(username: Self.username, realm: "example.org")
        let out = encode(bindingRequest, Self.transactionID) { w in
            hash.withUnsafeBytes { w.append(.userhash, bytes: $0) }
            w.append(.nonce, string: Self.nonce)
            w.append(.realm, string: "example.org")
            w.appendPasswordAlgorithm(.sha256)
            w.appendMessageIntegritySHA256(key: key)
        }
        #expect(out == Self.sampleRequest)
    }
}
