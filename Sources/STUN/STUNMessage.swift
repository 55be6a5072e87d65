/// A parsed STUN message: a view over borrowed bytes, valid as long as those bytes are.
///
/// `parse` validates the header and walks every attribute TLV once; it copies nothing and
/// allocates nothing. Accessors re-walk the (already validated) attributes on demand.
///
/// RFC 8489 §5 header:
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |0 0|     STUN Message Type     |         Message Length        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Magic Cookie                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Transaction ID (96 bits)                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
public struct STUNMessage {
    public static let headerLength = 20
    public static let magicCookie: UInt32 = 0x2112_A442

    /// The whole message, header included.
    public let bytes: UnsafeRawBufferPointer
    public let type: STUNMessageType
    public let transactionID: TransactionID

    /// Offsets of the attribute headers of the integrity attributes that count; -1 when absent.
    let messageIntegrityOffset: Int
    let messageIntegritySHA256Offset: Int
    let fingerprintOffset: Int

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(STUNParseError) -> STUNMessage {
        guard bytes.count >= headerLength else { throw .truncatedHeader }
        guard let type = STUNMessageType(rawValue: bytes.readUInt16(at: 0)) else { throw .notSTUN }
        let length = Int(bytes.readUInt16(at: 2))
        guard bytes.readUInt32(at: 4) == magicCookie else { throw .badMagicCookie }
        guard length & 3 == 0 else { throw .lengthNotAligned }
        guard length == bytes.count - headerLength else { throw .lengthMismatch }

        var mi = -1, mi256 = -1, fp = -1
        var phase = AttributePhase.normal
        var offset = headerLength
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else { throw .truncatedAttribute }
            let attributeType = AttributeType(rawValue: bytes.readUInt16(at: offset))
            let valueLength = Int(bytes.readUInt16(at: offset + 2))
            // RFC 8489 §14: "the attribute MUST be padded with 1, 2, or 3 bytes of padding so that its
            // value contains a multiple of 4 bytes." The padding must lie inside the message too.
            let padded = (valueLength + 3) & ~3
            guard bytes.count - offset - 4 >= padded else { throw .truncatedAttribute }
            if phase.admit(attributeType) {
                switch attributeType {
                case .messageIntegrity: mi = offset
                case .messageIntegritySHA256: mi256 = offset
                case .fingerprint: fp = offset
                default: break
                }
            }
            offset += 4 + padded
        }
        return STUNMessage(bytes: bytes, type: type, transactionID: TransactionID(reading: bytes, at: 8),
                           messageIntegrityOffset: mi, messageIntegritySHA256Offset: mi256, fingerprintOffset: fp)
    }

    /// The value of the first occurrence of `type` among the attributes that count (see
    /// `forEachAttribute`), without copying.
    public func attribute(_ type: AttributeType) -> UnsafeRawBufferPointer? {
        var found: UnsafeRawBufferPointer?
        walk { t, value in
            if t == type { found = value; return false }
            return true
        }
        return found
    }

    /// Calls `body` for every attribute that counts, in order, repeats included.
    ///
    /// RFC 8489 §14.5: "With the exception of the MESSAGE-INTEGRITY-SHA256 and FINGERPRINT
    /// attributes, which appear after MESSAGE-INTEGRITY, agents MUST ignore all other attributes
    /// that follow MESSAGE-INTEGRITY." §14.6: the same for MESSAGE-INTEGRITY-SHA256 with only
    /// FINGERPRINT after it. §14.7: "When present, the FINGERPRINT attribute MUST be the last
    /// attribute in the message", so anything after it is ignored too.
    public func forEachAttribute(_ body: (AttributeType, UnsafeRawBufferPointer) throws -> Void) rethrows {
        var phase = AttributePhase.normal
        var offset = Self.headerLength
        while offset + 4 <= bytes.count {
            let t = AttributeType(rawValue: bytes.readUInt16(at: offset))
            let length = Int(bytes.readUInt16(at: offset + 2))
            if phase.admit(t) { try body(t, bytes.slice(offset + 4, length)) }
            offset += 4 + ((length + 3) & ~3)
        }
    }

    /// The comprehension-required attribute types (0x0000-0x7FFF) that count and that `known`
    /// rejects, each listed once, in order of first appearance: the content of UNKNOWN-ATTRIBUTES
    /// for a 420 response (RFC 8489 §6.3.1.1).
    ///
    /// At most `unknownAttributesLimit` types are listed, so that a datagram packed with thousands
    /// of distinct unknown types costs linear time and yields a response of bounded size; the
    /// message is rejected all the same.
    public func unknownComprehensionRequired(known: (AttributeType) -> Bool) -> [AttributeType] {
        var unknown: [AttributeType] = []
        walk { t, _ in
            if t.isComprehensionRequired && !known(t) && !unknown.contains(t) { unknown.append(t) }
            return unknown.count < Self.unknownAttributesLimit
        }
        return unknown
    }

    public static let unknownAttributesLimit = 32

    /// Walks the counted attributes until `body` returns false. The message was validated by
    /// `parse`, so every header and value is in bounds.
    @inline(__always)
    func walk(_ body: (AttributeType, UnsafeRawBufferPointer) -> Bool) {
        var phase = AttributePhase.normal
        var offset = Self.headerLength
        while offset + 4 <= bytes.count {
            let t = AttributeType(rawValue: bytes.readUInt16(at: offset))
            let length = Int(bytes.readUInt16(at: offset + 2))
            if phase.admit(t) && !body(t, bytes.slice(offset + 4, length)) { return }
            offset += 4 + ((length + 3) & ~3)
        }
    }
}

/// Which attributes still count while walking a message in order (RFC 8489 §14.5-§14.7).
enum AttributePhase {
    case normal
    case afterMessageIntegrity
    case afterMessageIntegritySHA256
    case afterFingerprint

    /// Whether an attribute of type `t` at the current position counts; advances the phase.
    @inline(__always)
    mutating func admit(_ t: AttributeType) -> Bool {
        switch self {
        case .normal:
            if t == .messageIntegrity { self = .afterMessageIntegrity }
            else if t == .messageIntegritySHA256 { self = .afterMessageIntegritySHA256 }
            else if t == .fingerprint { self = .afterFingerprint }
            return true
        case .afterMessageIntegrity:
            if t == .messageIntegritySHA256 { self = .afterMessageIntegritySHA256; return true }
            if t == .fingerprint { self = .afterFingerprint; return true }
            return false
        case .afterMessageIntegritySHA256:
            if t == .fingerprint { self = .afterFingerprint; return true }
            return false
        case .afterFingerprint:
            return false
        }
    }
}
