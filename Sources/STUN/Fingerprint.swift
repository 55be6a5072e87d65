/// FINGERPRINT (RFC 8489 §14.7): "The value of the attribute is computed as the CRC-32 of the STUN
/// message up to (but excluding) the FINGERPRINT attribute itself, XOR'ed with the 32-bit value
/// 0x5354554e."
enum Fingerprint {
    static let xorValue: UInt32 = 0x5354_554E

    /// The FINGERPRINT value of `bytes[0..<end]`, with the header's length field taken as
    /// `adjustedLength` (the length as it reads once FINGERPRINT is appended).
    static func value(_ bytes: UnsafeRawBufferPointer, upTo end: Int, adjustedLength: Int) -> UInt32 {
        var crc = CRC32()
        crc.update(bytes.slice(0, 2))
        crc.update(byte: UInt8(truncatingIfNeeded: adjustedLength >> 8))
        crc.update(byte: UInt8(truncatingIfNeeded: adjustedLength))
        crc.update(bytes.slice(4, end - 4))
        return crc.value ^ xorValue
    }
}

extension STUNMessage {
    /// Verifies FINGERPRINT; false when absent or not 4 bytes long.
    public func verifyFingerprint() -> Bool {
        let offset = fingerprintOffset
        guard offset >= 0, bytes.readUInt16(at: offset + 2) == 4 else { return false }
        let expected = Fingerprint.value(bytes, upTo: offset, adjustedLength: offset - Self.headerLength + 8)
        return bytes.readUInt32(at: offset + 4) == expected
    }
}

/// CRC-32 as used by ISO/IEC 3309, ITU-T V.42 and zlib (reflected polynomial 0xEDB88320, initial
/// value and final XOR 0xFFFFFFFF), which RFC 8489 §14.7 names via RFC 1952.
struct CRC32 {
    private var state: UInt32 = 0xFFFF_FFFF

    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    mutating func update(byte: UInt8) {
        state = Self.table[Int((state ^ UInt32(byte)) & 0xFF)] ^ (state >> 8)
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        let table = Self.table
        var c = state
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        state = c
    }

    var value: UInt32 { state ^ 0xFFFF_FFFF }
}
