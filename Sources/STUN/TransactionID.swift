/// The 96-bit STUN transaction ID (RFC 8489 §5), stored inline as two integers in network order.
public struct TransactionID: Hashable, Sendable {
    /// Bytes 0...3 of the ID, big-endian.
    @usableFromInline var high: UInt32
    /// Bytes 4...11 of the ID, big-endian.
    @usableFromInline var low: UInt64

    @inlinable init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Builds an ID from exactly 12 bytes (a programming error otherwise).
    public init(_ bytes: some Collection<UInt8>) {
        precondition(bytes.count == 12, "a STUN transaction ID is 12 bytes")
        var h: UInt32 = 0, l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 4 { h = h << 8 | UInt32(b) } else { l = l << 8 | UInt64(b) }
        }
        self.init(high: h, low: l)
    }

    /// RFC 8489 §5: "The transaction ID MUST be uniformly and randomly chosen from the interval 0 .. 2**96-1".
    public init<R: RandomNumberGenerator>(using generator: inout R) {
        self.init(high: generator.next(), low: generator.next())
    }

    /// Reads the 12 bytes at `offset` (the caller has checked the bounds).
    @inlinable init(reading bytes: UnsafeRawBufferPointer, at offset: Int) {
        self.init(high: bytes.readUInt32(at: offset), low: bytes.readUInt64(at: offset + 4))
    }

    /// Writes the 12 bytes at `offset` (the caller has checked the bounds).
    @inlinable func write(to buffer: UnsafeMutableRawBufferPointer, at offset: Int) {
        buffer.writeUInt32(high, at: offset)
        buffer.writeUInt64(low, at: offset + 4)
    }

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(12)
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt32(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        return out
    }
}

extension TransactionID: CustomStringConvertible {
    public var description: String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
