/// Ethernet + IPv4 + UDP frames, built once per flow and sent as they are through an AF_PACKET
/// socket. Checksums are complete (the lab turns checksum offload off on the generator's veth for
/// the same reason: the XDP program cannot update a partial checksum).
public struct IPv4Endpoint: Sendable, Equatable, Hashable {
    public var address: (UInt8, UInt8, UInt8, UInt8)
    public var port: UInt16
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, port: UInt16) {
        address = (a, b, c, d)
        self.port = port
    }
    public var bytes: [UInt8] { [address.0, address.1, address.2, address.3] }
    public static func == (l: Self, r: Self) -> Bool { l.bytes == r.bytes && l.port == r.port }
    public func hash(into h: inout Hasher) { h.combine(bytes); h.combine(port) }
}

public enum LabFrames {
    public static let ethernetHeader = 14, ipv4Header = 20, udpHeader = 8

    /// RFC 1071 one's-complement sum of `bytes` (odd length padded with a zero byte), folded, not
    /// inverted; `initial` carries a partial sum.
    public static func onesComplementSum(_ bytes: [UInt8], initial: UInt32 = 0) -> UInt16 {
        var sum = initial
        var i = 0
        while i + 1 < bytes.count {
            sum &+= UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum &+= UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        return UInt16(sum)
    }

    /// One UDP/IPv4 frame from `source` to `destination` carrying `payload`, TTL 64, DF set.
    /// RFC 768: the UDP checksum covers the pseudo-header (addresses, protocol 17, UDP length),
    /// the UDP header and the data; a computed 0 is sent as 0xFFFF.
    public static func udp4(sourceMAC: [UInt8], destinationMAC: [UInt8], source: IPv4Endpoint,
                            destination: IPv4Endpoint, payload: [UInt8], identification: UInt16 = 0) -> [UInt8] {
        precondition(sourceMAC.count == 6 && destinationMAC.count == 6)
        let udpLength = udpHeader + payload.count
        let totalLength = ipv4Header + udpLength
        var ip: [UInt8] = [0x45, 0, UInt8(totalLength >> 8), UInt8(totalLength & 0xFF),
                           UInt8(identification >> 8), UInt8(identification & 0xFF), 0x40, 0,
                           64, 17, 0, 0]
        ip += source.bytes + destination.bytes
        let ipSum = ~onesComplementSum(ip)
        ip[10] = UInt8(ipSum >> 8); ip[11] = UInt8(ipSum & 0xFF)
        var udp: [UInt8] = [UInt8(source.port >> 8), UInt8(source.port & 0xFF),
                            UInt8(destination.port >> 8), UInt8(destination.port & 0xFF),
                            UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0]
        udp += payload
        let pseudo = source.bytes + destination.bytes + [0, 17, UInt8(udpLength >> 8), UInt8(udpLength & 0xFF)]
        var udpSum = ~onesComplementSum(pseudo + udp)
        if udpSum == 0 { udpSum = 0xFFFF }
        udp[6] = UInt8(udpSum >> 8); udp[7] = UInt8(udpSum & 0xFF)
        return destinationMAC + sourceMAC + [0x08, 0x00] + ip + udp
    }

    /// The bench payload of `flow` (BenchPayload header, sequence and time 0, then filler) of
    /// `bytes` bytes; with `channel`, wrapped as ChannelData (RFC 8656 §12.4: channel number,
    /// length, application data). No padding is added: "Over UDP, the padding is not required but
    /// MAY be included" (RFC 8656 §12.5).
    public static func benchPayload(flow: UInt32, bytes: Int, channel: UInt16?) -> [UInt8] {
        var data = [UInt8](repeating: 0, count: max(bytes, BenchPayload.headerLength))
        for i in BenchPayload.headerLength..<data.count { data[i] = UInt8(truncatingIfNeeded: i &* 7) }
        data.withUnsafeMutableBytes { BenchPayload.write(to: $0.baseAddress!, flow: flow, sequence: 0, sentNanoseconds: 0) }
        guard let channel else { return data }
        return [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(data.count >> 8), UInt8(data.count & 0xFF)] + data
    }
}
