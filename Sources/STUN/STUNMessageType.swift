/// The class of a STUN message (RFC 8489 §5: the C1 and C0 bits).
public enum STUNClass: UInt8, Sendable {
    case request = 0
    case indication = 1
    case successResponse = 2
    case errorResponse = 3
}

/// The 16-bit STUN Message Type field: a method and a class, interleaved.
///
/// RFC 8489 §5:
/// ```
///  0                 1
///  2  3  4 5 6 7 8 9 0 1 2 3 4 5
/// +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
/// |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
/// |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
/// +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
/// "The most significant 2 bits of every STUN message MUST be zeroes."
public struct STUNMessageType: Hashable, Sendable {
    public var method: STUNMethod
    public var messageClass: STUNClass

    @inlinable public init(method: STUNMethod, messageClass: STUNClass) {
        self.method = method
        self.messageClass = messageClass
    }

    /// Decodes the field; nil when either of the two most significant bits is set.
    @inlinable public init?(rawValue: UInt16) {
        guard rawValue & 0xC000 == 0 else { return nil }
        let m = (rawValue & 0x000F) | ((rawValue & 0x00E0) >> 1) | ((rawValue & 0x3E00) >> 2)
        let c = UInt8(truncatingIfNeeded: ((rawValue & 0x0010) >> 4) | ((rawValue & 0x0100) >> 7))
        // c is two bits, so every value names a case.
        self.method = STUNMethod(rawValue: m)
        self.messageClass = STUNClass(rawValue: c) ?? .request
    }

    /// The encoded field. Method bits above the 12th are dropped.
    @inlinable public var rawValue: UInt16 {
        let m = method.rawValue & 0x0FFF
        let c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0x1) << 4) | ((c & 0x2) << 7)
    }
}

extension STUNMessageType: CustomStringConvertible {
    public var description: String { "\(method) \(messageClass)" }
}
