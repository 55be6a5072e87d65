/// Why a datagram is not a well-formed STUN message. The receiver drops such datagrams silently
/// (RFC 8489 §6.3: "If the message is not a valid STUN message, it is discarded").
public enum STUNParseError: Error, Hashable, Sendable {
    /// Fewer than the 20 bytes of the STUN header.
    case truncatedHeader
    /// RFC 8489 §5: "The most significant 2 bits of every STUN message MUST be zeroes."
    case notSTUN
    /// RFC 8489 §5: "The Magic Cookie field MUST contain the fixed value 0x2112A442".
    case badMagicCookie
    /// The header's Message Length does not equal the bytes that follow the header.
    case lengthMismatch
    /// RFC 8489 §5: "the message length MUST contain the size of the message in bytes, not
    /// including the 20-byte STUN header. Since all STUN attributes are padded to a multiple of
    /// 4 bytes, the last 2 bits of this field are always zero."
    case lengthNotAligned
    /// An attribute header, value or padding runs past the end of the message.
    case truncatedAttribute
}

/// An attribute is present but its value is invalid (wrong length, unknown address family,
/// oversized text, bad UTF-8...). A server answers such a request with 400 (Bad Request).
public enum STUNAttributeError: Error, Hashable, Sendable {
    case malformed(AttributeType)
}
