/// ChannelData framing (RFC 8656 §12.4):
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Channel Number        |            Length             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// /                       Application Data                        /
/// ```
/// "The Length field specifies the length in bytes of the application data field (i.e., it does
/// not include the size of the ChannelData header)." Over UDP, "the padding is not required but
/// MAY be included"; the length field, not the datagram size, decides where the payload ends.
///
/// Both functions run once per relayed packet: inlinable, no allocation, no dynamic dispatch.
public enum ChannelData {
    public static let headerLength = 4

    /// RFC 8656 §12: "0x4000 through 0x4FFF: These values are the allowed channel numbers".
    public static let validChannels: ClosedRange<UInt16> = 0x4000...0x4FFF

    /// RFC 5766 §11: "0x4000 through 0x7FFF: These values are the allowed channel numbers (16,383
    /// possible values)". RFC 8656 §12 narrowed this to 0x4000-0x4FFF; older clients (coturn's
    /// turnutils_uclient among them) still draw from the whole RFC 5766 range.
    public static let rfc5766Channels: ClosedRange<UInt16> = 0x4000...0x7FFF

    /// The channel and payload length of a ChannelData message, or nil when the datagram is shorter
    /// than the header, the channel number is outside 0x4000-0x4FFF, or the length field claims more
    /// bytes than follow the header. Bytes after the payload (padding) are allowed.
    @inlinable
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> (channel: UInt16, payloadLength: Int)? {
        // Literals rather than `headerLength`/`validChannels`: no global accessor on the fast path.
        guard bytes.count >= 4 else { return nil }
        let channel = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt16.self))
        guard channel >= 0x4000 && channel <= 0x4FFF else { return nil }
        let length = Int(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        guard length <= bytes.count - 4 else { return nil }
        return (channel: channel, payloadLength: length)
    }

    /// `parse` with the highest accepted channel number given: 0x4FFF (RFC 8656) or 0x7FFF
    /// (RFC 5766). Values below 0x4FFF are treated as 0x4FFF: the RFC 8656 range is always valid.
    @inlinable
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, highestChannel: UInt16
    ) -> (channel: UInt16, payloadLength: Int)? {
        guard bytes.count >= 4 else { return nil }
        let channel = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt16.self))
        guard channel >= 0x4000 && channel <= max(highestChannel, 0x4FFF) else { return nil }
        let length = Int(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        guard length <= bytes.count - 4 else { return nil }
        return (channel: channel, payloadLength: length)
    }

    /// Writes the 4-byte header at `p` (no alignment required).
    @inlinable
    public static func writeHeader(to p: UnsafeMutableRawPointer, channel: UInt16, payloadLength: UInt16) {
        p.storeBytes(of: channel.bigEndian, toByteOffset: 0, as: UInt16.self)
        p.storeBytes(of: payloadLength.bigEndian, toByteOffset: 2, as: UInt16.self)
    }
}
