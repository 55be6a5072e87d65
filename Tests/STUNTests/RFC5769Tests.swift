import Testing
import STUN

/// RFC 5769 "Test Vectors for Session Traversal Utilities for NAT (STUN)", transcribed from §2.
/// These vectors pad with spaces (0x20) where RFC 8489 now asks for zeros, except §2.4; the writer's
/// `paddingByte` reproduces them exactly.
@Suite struct RFC5769Tests {
    static let shortTermPassword = "VOkJxbRl1RmTxUk/WvJxBt"
    static let transactionID = TransactionID(hex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"))

    // §2.1 Sample Request
    static let sampleRequest = hex("""
        00 01 00 58  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
        80 22 00 10  53 54 55 4e  20 74 65 73  74 20 63 6c  69 65 6e 74
        00 24 00 04  6e 00 01 ff
        80 29 00 08  93 2f f9 b1  51 26 3b 36
        00 06 00 09  65 76 74 6a  3a 68 36 76  59 20 20 20
        00 08 00 14  9a ea a7 0c  bf d8 cb 56  78 1e f2 b5  b2 d3 f2 49  c1 b5 71 a2
        80 28 00 04  e5 7a 3b cf
        """)

    // §2.2 Sample IPv4 Response
    static let sampleIPv4Response = hex("""
        01 01 00 3c  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
        80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
        00 20 00 08  00 01 a1 47  e1 12 a6 43
        00 08 00 14  2b 91 f5 99  fd 9e 90 c3  8c 74 89 f9  2a f9 ba 53  f0 6b e7 d7
        80 28 00 04  c0 7d 4c 96
        """)

    // §2.3 Sample IPv6 Response
    static let sampleIPv6Response = hex("""
        01 01 00 48  21 12 a4 42  b7 e7 a7 01  bc 34 d6 86  fa 87 df ae
        80 22 00 0b  74 65 73 74  20 76 65 63  74 6f 72 20
        00 20 00 14  00 02 a1 47  01 13 a9 fa  a5 d3 f1 79  bc 25 f4 b5  be d2 b9 d9
        00 08 00 14  a3 82 95 4e  4b e6 7b f1  17 84 c9 7c  82 92 c2 75  bf e3 ed 41
        80 28 00 04  c8 fb 0b 4c
        """)

    // §2.4 Sample Request with Long-Term Authentication
    static let sampleLongTermRequest = hex("""
        00 01 00 60  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
        00 06 00 12  e3 83 9e e3  83 88 e3 83  aa e3 83 83  e3 82 af e3  82 b9 00 00
        00 15 00 1c  66 2f 2f 34  39 39 6b 39  35 34 64 36  4f 4c 33 34  6f 4c 39 46  53 54 76 79  36 34 73 41
        00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
        00 08 00 14  f6 70 24 65  6d d6 4a 3e  02 b8 e0 71  2e 85 c9 a2  8c a8 96 66
        """)

    static let longTermUsername = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"  // マトリックス

    @Test func sampleRequestParsesAndVerifies() throws {
        try parsed(Self.sampleRequest) { m throws in
            #expect(m.type == bindingRequest)
            #expect(m.transactionID == Self.transactionID)
            #expect(try m.software() == "STUN test client")
            #expect(try m.username() == "evtj:h6vY")
            #expect(m.hasMessageIntegrity && m.hasFingerprint && !m.hasMessageIntegritySHA256)
            #expect(m.verifyMessageIntegrity(key: Array(Self.shortTermPassword.utf8)))
            #expect(!m.verifyMessageIntegrity(key: Array("VOkJxbRl1RmTxUk/WvJxBT".utf8)))
            #expect(m.verifyFingerprint())
            // PRIORITY (0x0024) and ICE-CONTROLLED (0x8029) are ICE attributes.
            #expect(m.unknownComprehensionRequired(known: { $0 != AttributeType(rawValue: 0x0024) })
                == [AttributeType(rawValue: 0x0024)])
        }
    }

    @Test func sampleIPv4ResponseDecodesMappedAddress() throws {
        try parsed(Self.sampleIPv4Response) { m throws in
            #expect(m.type == bindingSuccess)
            #expect(try m.software() == "test vector")
            #expect(try m.xorMappedAddress() == TransportAddress("192.0.2.1:32853"))
            #expect(m.verifyMessageIntegrity(key: Array(Self.shortTermPassword.utf8)))
            #expect(m.verifyFingerprint())
        }
    }

    @Test func sampleIPv6ResponseDecodesMappedAddress() throws {
        try parsed(Self.sampleIPv6Response) { m throws in
            #expect(try m.xorMappedAddress() == TransportAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
            #expect(m.verifyMessageIntegrity(key: Array(Self.shortTermPassword.utf8)))
            #expect(m.verifyFingerprint())
        }
    }

    @Test func sampleLongTermRequestVerifiesWithMD5Key() throws {
        // RFC 5769 §2.4: password "The<U+00AD>M<U+00AA>tr<U+2168>" is "TheMatrIX" after SASLprep.
        let key = longTermKey(username: Self.longTermUsername, realm: "example.org", password: "TheMatrIX", algorithm: .md5)
        try parsed(Self.sampleLongTermRequest) { m throws in
            #expect(try m.username() == Self.longTermUsername)
            #expect(try m.nonce() == "f//499k954d6OL34oL9FSTvy64sA")
            #expect(try m.realm() == "example.org")
            #expect(m.verifyMessageIntegrity(key: key))
            #expect(!m.hasFingerprint)
            #expect(!m.verifyFingerprint())
        }
    }

    @Test func writerReproducesSampleRequest() throws {
        let out = encode(bindingRequest, Self.transactionID) { w in
            w.paddingByte = 0x20
            w.append(.software, string: "STUN test client")
            [UInt8](hex("6e 00 01 ff")).withUnsafeBytes { w.append(AttributeType(rawValue: 0x0024), bytes: $0) }
            [UInt8](hex("93 2f f9 b1 51 26 3b 36")).withUnsafeBytes { w.append(AttributeType(rawValue: 0x8029), bytes: $0) }
            w.append(.username, string: "evtj:h6vY")
            w.appendMessageIntegrity(key: Array(Self.shortTermPassword.utf8))
            w.appendFingerprint()
        }
        #expect(out == Self.sampleRequest)
    }

    @Test func writerReproducesSampleResponses() throws {
        let v4 = encode(bindingSuccess, Self.transactionID) { w in
            w.paddingByte = 0x20
            w.append(.software, string: "test vector")
            w.appendXorAddress(.xorMappedAddress, TransportAddress("192.0.2.1:32853")!)
            w.appendMessageIntegrity(key: Array(Self.shortTermPassword.utf8))
            w.appendFingerprint()
        }
        #expect(v4 == Self.sampleIPv4Response)
        let v6 = encode(bindingSuccess, Self.transactionID) { w in
            w.paddingByte = 0x20
            w.append(.software, string: "test vector")
            w.appendXorAddress(.xorMappedAddress, TransportAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853")!)
            w.appendMessageIntegrity(key: Array(Self.shortTermPassword.utf8))
            w.appendFingerprint()
        }
        #expect(v6 == Self.sampleIPv6Response)
    }

    @Test func writerReproducesSampleLongTermRequest() throws {
        let key = longTermKey(username: Self.longTermUsername, realm: "example.org", password: "TheMatrIX", algorithm: .md5)
        let out = encode(bindingRequest, TransactionID(hex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e"))) { w in
            w.append(.username, string: Self.longTermUsername)
            w.append(.nonce, string: "f//499k954d6OL34oL9FSTvy64sA")
            w.append(.realm, string: "example.org")
            w.appendMessageIntegrity(key: key)
        }
        #expect(out == Self.sampleLongTermRequest)
    }
}
