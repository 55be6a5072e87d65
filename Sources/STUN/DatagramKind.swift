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
}
