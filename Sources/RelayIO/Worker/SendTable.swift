import CUDP

/// Bookkeeping of the sendmsg calls in flight, one entry per shim send slot: which buffers each
/// points into (released when it completes) and enough to re-send it without GSO.
final class SendTable {
    static let maxSegments = Int(CU_SEND_MAX_IOV)
    /// A reference names a receive buffer (its id) or, with this bit, a transmit buffer.
    static let transmitBit: UInt32 = 0x8000_0000
    /// ... or, with this bit, a large transmit copy (`LargeTransmitBuffers`).
    static let largeBit: UInt32 = 0x4000_0000

    let count: Int
    let free: UnsafeMutablePointer<UInt32>
    var freeCount: Int
    let socket: UnsafeMutablePointer<UInt32>
    let destination: UnsafeMutablePointer<cu_addr>
    let segments: UnsafeMutablePointer<UInt16>
    let segmentSize: UnsafeMutablePointer<UInt16>
    let references: UnsafeMutablePointer<UInt32>
    /// Nonzero on the first single send that re-sends a refused GSO run: the errno of the refusal.
    /// Its completion tells whether the kernel refused GSO (the single send succeeds) or the
    /// destination (it fails too).
    let probeErrno: UnsafeMutablePointer<Int32>
    /// The segment size of the refused run, for a probe.
    let probeSegmentSize: UnsafeMutablePointer<UInt16>

    init(count: Int) {
        self.count = count
        free = .allocate(capacity: count)
        for i in 0..<count { free[i] = UInt32(count - 1 - i) }
        freeCount = count
        socket = .allocate(capacity: count)
        socket.initialize(repeating: 0, count: count)
        destination = .allocate(capacity: count)
        destination.initialize(repeating: cu_addr(), count: count)
        segments = .allocate(capacity: count)
        segments.initialize(repeating: 0, count: count)
        segmentSize = .allocate(capacity: count)
        segmentSize.initialize(repeating: 0, count: count)
        references = .allocate(capacity: count * Self.maxSegments)
        references.initialize(repeating: 0, count: count * Self.maxSegments)
        probeErrno = .allocate(capacity: count)
        probeErrno.initialize(repeating: 0, count: count)
        probeSegmentSize = .allocate(capacity: count)
        probeSegmentSize.initialize(repeating: 0, count: count)
    }

    deinit {
        free.deallocate()
        socket.deallocate()
        destination.deallocate()
        segments.deallocate()
        segmentSize.deallocate()
        references.deallocate()
        probeErrno.deallocate()
        probeSegmentSize.deallocate()
    }

    @inline(__always) func take() -> Int? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        return Int(free[freeCount])
    }

    @inline(__always) func give(_ slot: Int) {
        segments[slot] = 0
        probeErrno[slot] = 0
        free[freeCount] = UInt32(slot)
        freeCount += 1
    }

    @inline(__always) func references(of slot: Int) -> UnsafeMutablePointer<UInt32> {
        references + slot * Self.maxSegments
    }
}
