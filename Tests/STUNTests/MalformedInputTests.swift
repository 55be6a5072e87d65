import Testing
import STUN

/// Every malformed input is an error value, never a trap.
@Suite struct MalformedInputTests {
    static let valid = message(attributes: tlv(0x0006, Array("user".utf8)))

    @Test func truncatedHeaderIsRejected() {
        for n in 0..<20 {
            #expect(parseError(Array(Self.valid.prefix(n))) == .truncatedHeader)
        }
    }

    @Test func topTwoBitsSetIsNotSTUN() {
        var bytes = Self.valid
        bytes[0] |= 0x40
        #expect(parseError(bytes) == .notSTUN)
        bytes[0] = 0x80
        #expect(parseError(bytes) == .notSTUN)
    }

    @Test func wrongMagicCookieIsRejected() {
        var bytes = Self.valid
        bytes[7] ^= 0x01
        #expect(parseError(bytes) == .badMagicCookie)
    }

    @Test func lengthPastTheEndIsRejected() {
        var bytes = Self.valid
        bytes[3] += 4
        #expect(parseError(bytes) == .lengthMismatch)
        // Trailing bytes the length does not cover are a mismatch too.
        #expect(parseError(Self.valid + [0, 0, 0, 0]) == .lengthMismatch)
    }

    @Test func lengthNotMultipleOfFourIsRejected() {
        var bytes = Self.valid + [0]
        bytes[3] += 1
        #expect(parseError(bytes) == .lengthNotAligned)
    }

    @Test func attributeLengthPastTheEndIsRejected() {
        // USERNAME claims 9 bytes, only 8 follow (4 of value + this header's own padding space).
        let bytes = message(attributes: [0x00, 0x06, 0x00, 0x09] + Array("user".utf8))
        #expect(parseError(bytes) == .truncatedAttribute)
        // Claims 0xFFFF bytes.
        #expect(parseError(message(attributes: [0x00, 0x06, 0xFF, 0xFF, 1, 2, 3, 4])) == .truncatedAttribute)
    }

    @Test func paddingPastTheEndIsRejected() {
        // A 5-byte value needs 3 bytes of padding, which are missing: the message stops after 8 value bytes
        // of the second attribute's space.
        let bytes = message(attributes: [0x00, 0x06, 0x00, 0x05, 1, 2, 3, 4])
        #expect(parseError(bytes) == .truncatedAttribute)
    }

    @Test func truncatedAttributeHeaderCannotOccurButIsHandled() {
        // The aligned length rule leaves no room for a partial 4-byte header; an empty body is valid.
        #expect(parseError(message(attributes: [])) == nil)
    }

    @Test func nonZeroPaddingIsIgnored() throws {
        // RFC 8489 §14: padding bits "MUST be ignored by the receiver".
        let bytes = message(attributes: [0x00, 0x06, 0x00, 0x05] + Array("user!".utf8) + [0xFF, 0xFF, 0xFF])
        #expect(try parsed(bytes) { m throws in try m.username() } == "user!")
    }

    @Test func oversizedTextAttributesAreMalformed() throws {
        let longUsername = message(attributes: tlv(0x0006, Array(repeating: 0x61, count: 514)))
        #expect(throws: STUNAttributeError.malformed(.username)) { try parsed(longUsername) { m throws in try m.username() } }
        let maxUsername = message(attributes: tlv(0x0006, Array(repeating: 0x61, count: 513)))
        #expect(try parsed(maxUsername) { m throws in try m.username()?.utf8.count } == 513)

        let longRealm = message(attributes: tlv(0x0014, Array(repeating: 0x61, count: 128)))
        #expect(throws: STUNAttributeError.malformed(.realm)) { try parsed(longRealm) { m throws in try m.realm() } }
        let maxRealm = message(attributes: tlv(0x0014, Array(repeating: 0x61, count: 127)))
        #expect(try parsed(maxRealm) { m throws in try m.realm()?.count } == 127)

        // 128 three-byte characters: 384 bytes, fewer than 763, but 128 characters.
        let longNonce = message(attributes: tlv(0x0015, Array(repeating: hex("e3 83 9e"), count: 128).flatMap { $0 }))
        #expect(throws: STUNAttributeError.malformed(.nonce)) { try parsed(longNonce) { m throws in try m.nonce() } }
        let okNonce = message(attributes: tlv(0x0015, Array(repeating: hex("e3 83 9e"), count: 127).flatMap { $0 }))
        #expect(try parsed(okNonce) { m throws in try m.nonce()?.count } == 127)
    }

    @Test func invalidUTF8IsMalformed() {
        let bytes = message(attributes: tlv(0x0006, [0x61, 0xC3, 0x28]))
        #expect(throws: STUNAttributeError.malformed(.username)) { try parsed(bytes) { m throws in try m.username() } }
    }

    @Test func wrongAddressFamilyIsMalformed() {
        // Family 0x03 does not exist.
        let bytes = message(attributes: tlv(0x0020, [0x00, 0x03, 0x12, 0x34, 1, 2, 3, 4]))
        #expect(throws: STUNAttributeError.malformed(.xorMappedAddress)) { try parsed(bytes) { m throws in try m.xorMappedAddress() } }
        // IPv4 family with an IPv6-sized value.
        let mixed = message(attributes: tlv(0x0012, [0x00, 0x01, 0x12, 0x34] + Array(repeating: 0, count: 16)))
        #expect(throws: STUNAttributeError.malformed(.xorPeerAddress)) { try parsed(mixed) { m throws in try m.xorPeerAddresses() } }
    }

    @Test func xorPeerAddressWithBadLengthIsMalformed() {
        for value in [[UInt8](), [0x00, 0x01, 0x12], [0x00, 0x01, 0x12, 0x34, 1, 2, 3], [0x00, 0x02, 0x12, 0x34, 1, 2, 3, 4]] {
            let bytes = message(attributes: tlv(0x0012, value))
            #expect(throws: STUNAttributeError.malformed(.xorPeerAddress)) { try parsed(bytes) { m throws in try m.xorPeerAddresses() } }
        }
        // One good and one bad: the whole list is malformed.
        let good = tlv(0x0012, [0x00, 0x01, 0x12, 0x34, 1, 2, 3, 4])
        let bytes = message(attributes: good + tlv(0x0012, [0x00, 0x01]))
        #expect(throws: STUNAttributeError.malformed(.xorPeerAddress)) { try parsed(bytes) { m throws in try m.xorPeerAddresses() } }
    }

    @Test func fixedSizeAttributesWithWrongLengthAreMalformed() {
        func check(_ type: AttributeType, _ value: [UInt8], sourceLocation: SourceLocation = #_sourceLocation,
                   _ read: (STUNMessage) throws -> Void) {
            let bytes = message(attributes: tlv(type.rawValue, value))
            #expect(throws: STUNAttributeError.malformed(type), sourceLocation: sourceLocation) {
                try parsed(bytes) { m throws in try read(m) }
            }
        }
        check(.lifetime, [0, 0, 1]) { _ = try $0.lifetime() }
        check(.lifetime, [0, 0, 0, 0, 0]) { _ = try $0.lifetime() }
        check(.channelNumber, [0x40, 0x00]) { _ = try $0.channelNumber() }
        check(.requestedTransport, [17]) { _ = try $0.requestedTransport() }
        check(.requestedAddressFamily, [0x03, 0, 0, 0]) { _ = try $0.requestedAddressFamily() }
        check(.requestedAddressFamily, [0x01]) { _ = try $0.requestedAddressFamily() }
        check(.additionalAddressFamily, [0x00, 0, 0, 0]) { _ = try $0.additionalAddressFamily() }
        check(.evenPort, [0x80, 0, 0, 0]) { _ = try $0.evenPort() }
        check(.reservationToken, [1, 2, 3, 4]) { _ = try $0.reservationToken() }
        check(.userhash, Array(repeating: 1, count: 31)) { _ = try $0.userhash() }
        check(.errorCode, [0, 0, 2, 0]) { _ = try $0.errorCode() }      // class 2
        check(.errorCode, [0, 0, 4, 100]) { _ = try $0.errorCode() }    // number 100
        check(.errorCode, [0, 0, 4]) { _ = try $0.errorCode() }
        check(.addressErrorCode, [0x05, 0, 4, 40]) { _ = try $0.addressErrorCode() }
        check(.passwordAlgorithm, [0, 2, 0, 8, 1, 2]) { _ = try $0.passwordAlgorithm() }
        check(.passwordAlgorithms, [0, 1, 0, 0, 0, 2]) { _ = try $0.passwordAlgorithms() }
        check(.passwordAlgorithms, [0, 1, 0, 5, 0, 2, 0, 0]) { _ = try $0.passwordAlgorithms() }
        check(.unknownAttributes, [0, 1, 0]) { _ = try $0.unknownAttributes() }
        check(.icmp, [0, 0, 3, 1]) { _ = try $0.icmp() }
    }
}
