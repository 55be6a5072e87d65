/// What a datagram on the TURN port is, from its first byte (RFC 8656 §12: "the first two bits
/// of a STUN message are always 0b00 ... the first two bits of a ChannelData message are 0b01").
///
/// RFC 7983 narrows the ranges: 0-3 STUN, 64-79 TURN channel (0x4000-0x4FFF).
/// Everything else (DTLS, RTP, reserved channel numbers 0x5000-0x7FFF...) is `other`.
public enum DatagramKind: Sendable {
    case stun
    case channelData
    case other

    @inlinable
    public init(firstByte: UInt8) {
        switch firstByte {
        case 0x00...0x03: self = .stun
        case 0x40...0x4F: self = .channelData
        default: self = .other
        }
    }

    /// The kind with RFC 5766's channel range when `rfc5766Channels` is set: RFC 5766 §11, "the
    /// first two bits of a ChannelData message are 0b01", i.e. first bytes 64-127 (channel numbers
    /// 0x4000-0x7FFF). Without it, the same as `init(firstByte:)`.
    @inlinable
    public init(firstByte: UInt8, rfc5766Channels: Bool) {
        switch firstByte {
        case 0x00...0x03: self = .stun
        case 0x40...0x4F: self = .channelData
        case 0x50...0x7F: self = rfc5766Channels ? .channelData : .other
        default: self = .other
        }
    }
}
