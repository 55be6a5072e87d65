/// Encoding of MAPPED-ADDRESS and the XOR-*-ADDRESS attributes (RFC 8489 §14.1, §14.2;
/// RFC 8656 §18.3, §18.5).
///
/// ```
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |0 0 0 0 0 0 0 0|    Family     |         X-Port                |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                X-Address (Variable)
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
enum AddressAttribute {
    /// The value length for each family: 4 + 4 (IPv4) or 4 + 16 (IPv6).
    static func valueLength(_ family: AddressFamily) -> Int {
        family == .ipv4 ? 8 : 20
    }

    /// Decodes an address value; nil when the family is unknown or the length does not match it.
    /// With `xor`, undoes the XOR with the magic cookie (and the transaction ID for IPv6).
    static func decode(_ value: UnsafeRawBufferPointer, xor transactionID: TransactionID?) -> TransportAddress? {
        guard value.count >= 4 else { return nil }
        // RFC 8489 §14.1: "The first 8 bits of the MAPPED-ADDRESS MUST be set to 0 and MUST be
        // ignored by receivers."
        guard let family = AddressFamily(rawValue: value[1]), value.count == valueLength(family) else { return nil }
        var port = value.readUInt16(at: 2)
        if transactionID != nil {
            // RFC 8489 §14.2: "X-Port is computed by XOR'ing the mapped port with the most
            // significant 16 bits of the magic cookie."
            port ^= UInt16(truncatingIfNeeded: STUNMessage.magicCookie >> 16)
        }
        switch family {
        case .ipv4:
            var a = value.readUInt32(at: 4)
            if transactionID != nil { a ^= STUNMessage.magicCookie }
            return TransportAddress(ip: .v4(IPv4Address(a)), port: port)
        case .ipv6:
            var high = value.readUInt64(at: 4), low = value.readUInt64(at: 12)
            if let id = transactionID {
                // "X-Address is computed by XOR'ing the mapped IP address with the concatenation
                // of the magic cookie and the 96-bit transaction ID."
                high ^= UInt64(STUNMessage.magicCookie) << 32 | UInt64(id.high)
                low ^= id.low
            }
            return TransportAddress(ip: .v6(IPv6Address(high: high, low: low)), port: port)
        }
    }

    /// Encodes `address` at `offset` (the caller has checked that `valueLength` bytes fit).
    static func encode(_ address: TransportAddress, xor transactionID: TransactionID?,
                       into buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        buffer[offset] = 0
        buffer[offset + 1] = address.family.rawValue
        var port = address.port
        if transactionID != nil { port ^= UInt16(truncatingIfNeeded: STUNMessage.magicCookie >> 16) }
        buffer.writeUInt16(port, at: offset + 2)
        switch address.ip {
        case .v4(let a):
            buffer.writeUInt32(transactionID == nil ? a.value : a.value ^ STUNMessage.magicCookie, at: offset + 4)
        case .v6(let a):
            var high = a.high, low = a.low
            if let id = transactionID {
                high ^= UInt64(STUNMessage.magicCookie) << 32 | UInt64(id.high)
                low ^= id.low
            }
            buffer.writeUInt64(high, at: offset + 4)
            buffer.writeUInt64(low, at: offset + 12)
        }
    }
}
