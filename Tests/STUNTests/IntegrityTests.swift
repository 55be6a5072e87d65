import Testing
import STUN

@Suite struct IntegrityTests {
    static let id = TransactionID(hex("a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac"))
    static let key = longTermKey(username: "alice", realm: "example.org", password: "pw", algorithm: .md5)

    static func signed(fingerprint: Bool, sha256: Bool = false) -> [UInt8] {
        encode(bindingRequest, id) { w in
            w.append(.username, string: "alice")
            w.append(.realm, string: "example.org")
            if sha256 { w.appendMessageIntegritySHA256(key: key) } else { w.appendMessageIntegrity(key: key) }
            if fingerprint { w.appendFingerprint() }
        }!
    }

    @Test func messageIntegrityVerifiesWithLengthAdjustmentWhenFingerprintFollows() throws {
        let bytes = Self.signed(fingerprint: true)
        // The header length counts FINGERPRINT; MI was computed with the length ending at MI.
        #expect(Int(bytes[3]) == bytes.count - 20)
        try parsed(bytes) { m throws in
            #expect(m.verifyMessageIntegrity(key: Self.key))
            #expect(m.verifyFingerprint())
        }
        // The same MI value as the message without FINGERPRINT.
        #expect(Array(Self.signed(fingerprint: false).suffix(20)) == Array(bytes.dropLast(8).suffix(20)))
    }

    @Test func longTermKeyIsMD5OfTheCredentialString() {
        // MD5("alice:example.org:pw") computed independently (coreutils md5sum).
        #expect(Self.key == hex("db 25 ea 61 0c 2a 95 5b 77 b2 72 27 3c be 88 6b"))
        // sha256sum of the same strings.
        #expect(longTermKey(username: "alice", realm: "example.org", password: "pw", algorithm: .sha256)
            == hex("85 c5 b3 24 18 5a d0 cd 30 68 e5 17 63 c4 5a 47 59 14 95 6c 18 85 45 98 61 40 45 b2 89 c5 14 30"))
        #expect(userhash(username: "alice", realm: "example.org")
            == hex("43 5b 79 33 09 6a 30 4d 3c 73 4c fb 83 3e c9 07 5b d4 7a b1 c0 16 03 21 ae d3 1c 06 a8 c7 00 9e"))
    }

    @Test func tamperingBreaksIntegrityAndFingerprint() throws {
        var bytes = Self.signed(fingerprint: true)
        bytes[25] ^= 0x01  // inside USERNAME
        try parsed(bytes) { m throws in
            #expect(!m.verifyMessageIntegrity(key: Self.key))
            #expect(!m.verifyFingerprint())
        }
        var fp = Self.signed(fingerprint: true)
        fp[fp.count - 1] ^= 0x80
        try parsed(fp) { m throws in
            #expect(m.verifyMessageIntegrity(key: Self.key))
            #expect(!m.verifyFingerprint())
        }
    }

    @Test func missingOrWrongLengthIntegrityDoesNotVerify() throws {
        try parsed(message(attributes: tlv(0x0006, Array("a".utf8)))) { m throws in
            #expect(!m.hasMessageIntegrity && !m.verifyMessageIntegrity(key: Self.key))
            #expect(!m.verifyMessageIntegritySHA256(key: Self.key))
            #expect(!m.verifyFingerprint())
        }
        try parsed(message(attributes: tlv(0x0008, Array(repeating: 0, count: 16)))) { m throws in
            #expect(m.hasMessageIntegrity && !m.verifyMessageIntegrity(key: Self.key))
        }
        try parsed(message(attributes: tlv(0x8028, [0, 0]))) { m throws in
            #expect(m.hasFingerprint && !m.verifyFingerprint())
        }
    }

    @Test func sha256IntegrityAcceptsTruncationInMultiplesOfFour() throws {
        for length in [16, 20, 24, 28, 32] {
            let bytes = encode(bindingRequest, Self.id) { w in
                w.append(.username, string: "alice")
                w.appendMessageIntegritySHA256(key: Self.key, truncatedTo: length)
                w.appendFingerprint()
            }!
            #expect(bytes.count == 20 + 12 + 4 + length + 8)
            try parsed(bytes) { m throws in
                #expect(m.verifyMessageIntegritySHA256(key: Self.key), "length \(length)")
                #expect(!m.verifyMessageIntegritySHA256(key: [0x01] + Self.key.dropFirst()), "length \(length)")
                #expect(m.verifyFingerprint())
            }
        }
    }

    @Test func sha256IntegrityRejectsIllegalLengths() throws {
        // 12 bytes (too short), 18 (not a multiple of 4), 36 (too long): never verified.
        for length in [0, 12, 18, 36] {
            let bytes = message(attributes: tlv(0x0006, Array("alice".utf8)) + tlv(0x001C, Array(repeating: 0, count: length)))
            try parsed(bytes) { m throws in
                #expect(m.hasMessageIntegritySHA256)
                #expect(!m.verifyMessageIntegritySHA256(key: Self.key))
            }
        }
    }
}
