import Testing
import STUN

/// Which attributes count: first occurrence wins; attributes after the integrity attributes are
/// ignored as RFC 8489 §14.5-§14.7 require.
@Suite struct AttributeOrderTests {
    static let id = TransactionID(Array(1...12) as [UInt8])

    @Test func duplicateAttributeFirstWins() throws {
        let bytes = message(attributes: tlv(0x000D, [0, 0, 0, 10]) + tlv(0x000D, [0, 0, 0, 20]) + tlv(0x0006, Array("a".utf8)))
        try parsed(bytes) { m throws in
            #expect(try m.lifetime() == 10)
            var seen: [UInt16] = []
            m.forEachAttribute { t, _ in seen.append(t.rawValue) }
            #expect(seen == [0x000D, 0x000D, 0x0006])
        }
    }

    @Test func attributesAfterMessageIntegrityAreIgnored() throws {
        let key = Array("secret".utf8)
        let bytes = encode(bindingRequest, Self.id) { w in
            w.append(.username, string: "alice")
            w.appendMessageIntegrity(key: key)
            w.appendUInt32(.lifetime, 600)                  // ignored: after MI
            w.append(.username, string: "mallory")          // ignored
            w.appendMessageIntegritySHA256(key: key)        // counts
            w.append(.software, string: "x")                // ignored: after MI-SHA256
            w.appendFingerprint()                           // counts
            w.append(.realm, string: "late")                // ignored: after FINGERPRINT
        }!
        try parsed(bytes) { m throws in
            #expect(try m.lifetime() == nil)
            #expect(try m.username() == "alice")
            #expect(try m.software() == nil)
            #expect(try m.realm() == nil)
            #expect(m.hasMessageIntegrity && m.hasMessageIntegritySHA256 && m.hasFingerprint)
            var seen: [AttributeType] = []
            m.forEachAttribute { t, _ in seen.append(t) }
            #expect(seen == [.username, .messageIntegrity, .messageIntegritySHA256, .fingerprint])
            // MI covers only what precedes it; the later attributes do not disturb it.
            #expect(m.verifyMessageIntegrity(key: key))
            // MI-SHA256 covers MI and the ignored attributes before it, as written.
            #expect(m.verifyMessageIntegritySHA256(key: key))
            // FINGERPRINT was appended before REALM and covers up to itself.
            #expect(m.verifyFingerprint())
        }
    }

    @Test func secondMessageIntegrityIsIgnored() throws {
        let bytes = encode(bindingRequest, Self.id) { w in
            w.appendMessageIntegrity(key: Array("right".utf8))
            w.appendMessageIntegrity(key: Array("wrong".utf8))
        }!
        try parsed(bytes) { m throws in
            #expect(m.verifyMessageIntegrity(key: Array("right".utf8)))
            #expect(!m.verifyMessageIntegrity(key: Array("wrong".utf8)))
            var count = 0
            m.forEachAttribute { t, _ in if t == .messageIntegrity { count += 1 } }
            #expect(count == 1)
        }
    }

    @Test func unknownComprehensionRequiredListsEachOnce() throws {
        let bytes = message(attributes: tlv(0x0031, []) + tlv(0x8031, []) + tlv(0x0031, []) + tlv(0x0006, Array("u".utf8))
                            + tlv(0x0032, [1]))
        let unknown = try parsed(bytes) { m in m.unknownComprehensionRequired(known: { $0 == .username }) }
        #expect(unknown == [AttributeType(rawValue: 0x0031), AttributeType(rawValue: 0x0032)])
    }

    @Test func unknownAfterMessageIntegrityIsNotReported() throws {
        let bytes = encode(bindingRequest, Self.id) { w in
            w.appendMessageIntegrity(key: [1])
            w.appendEmpty(AttributeType(rawValue: 0x0031))
        }!
        let unknown = try parsed(bytes) { m in m.unknownComprehensionRequired(known: { _ in false }) }
        #expect(unknown == [.messageIntegrity])
    }
}

@Suite struct UnknownAttributesLimitTests {
    @Test func unknownListIsBounded() throws {
        let attributes = (0..<300).flatMap { i in tlv(UInt16(0x1000 + i), []) }
        let unknown = try parsed(message(attributes: attributes)) { m in m.unknownComprehensionRequired(known: { _ in false }) }
        #expect(unknown.count == STUNMessage.unknownAttributesLimit)
        #expect(unknown.first?.rawValue == 0x1000)
    }
}
