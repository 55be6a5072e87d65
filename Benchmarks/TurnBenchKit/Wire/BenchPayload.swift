/// The load generator's payload: a header that identifies the flow and carries the sequence number
/// and the send time, followed by filler up to the requested size.
///
/// Layout (native byte order; sender and receiver are the same process):
/// 0: magic "TRNB" (UInt32), 4: flow (UInt32), 8: sequence (UInt64), 16: send time ns (UInt64).
public enum BenchPayload {
    public static let magic: UInt32 = 0x5452_4E42
    public static let headerLength = 24

    /// Writes the header at `p` (which must have `headerLength` bytes).
    @inlinable
    public static func write(to p: UnsafeMutableRawPointer, flow: UInt32, sequence: UInt64, sentNanoseconds: UInt64) {
        p.storeBytes(of: magic, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: flow, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: sequence, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: sentNanoseconds, toByteOffset: 16, as: UInt64.self)
    }

    /// Reads a header; nil when the bytes are too short or not ours.
    @inlinable
    public static func read(_ b: UnsafeRawBufferPointer) -> (flow: UInt32, sequence: UInt64, sentNanoseconds: UInt64)? {
        guard b.count >= headerLength, b.loadUnaligned(fromByteOffset: 0, as: UInt32.self) == magic else { return nil }
        return (b.loadUnaligned(fromByteOffset: 4, as: UInt32.self),
                b.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                b.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    }

    /// Flow numbering: allocation `index`, direction.
    @inlinable
    public static func flow(allocation index: Int, direction: Direction) -> UInt32 {
        UInt32(truncatingIfNeeded: index &* 2 &+ (direction == .clientToPeer ? 0 : 1))
    }
}
