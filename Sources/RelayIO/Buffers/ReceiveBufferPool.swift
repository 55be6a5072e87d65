import CUDP
import Glibc
import RelayCore

/// The provided receive buffers of one worker: `count` slots of `stride` bytes in one mapping.
///
/// Slot layout (offsets from the slot start; the kernel is told each slot holds `kernelBytes`):
///
///     0      16            48                  96                      96+cap      stride
///     | out  | source name | control (UDP_GRO) | payload (cap bytes)  | GRO spread slack + tailroom |
///
/// `io_uring_recvmsg_out` (16) + `msg_namelen` (32) + `msg_controllen` (48) put the payload at offset
/// 96 in every slot. The shim decodes the first 96 bytes into a `cu_completion` before Swift sees the
/// datagram, so they become headroom: 96 ≥ `InboundDatagram.headroom` (64). The slack after the
/// kernel's part gives every datagram ≥ `InboundDatagram.tailroom` (8) bytes after it, and room to
/// spread GRO segments apart (see `Worker.appendReceived`).
///
/// A slot is owned by the kernel (in the buffer ring) or by the worker. The worker counts holders
/// per slot: one while the datagram is in the batch being processed, plus one per send that points
/// into it; at zero the slot goes back to the ring.
final class ReceiveBufferPool {
    static let payloadOffset = Int(CU_RECV_PAYLOAD_OFFSET)
    /// Between two spread GRO segments: tailroom of the first + headroom of the next.
    static let segmentGap = 8 + 64

    let count: Int
    let stride: Int
    /// What the kernel may write into a slot: header + name + control + payload capacity.
    let kernelBytes: Int
    let base: UnsafeMutableRawPointer
    let mappingBytes: Int
    /// Holders per slot (0 = in the kernel's ring).
    let holders: UnsafeMutablePointer<UInt16>
    /// Slots to hand back to the ring at the next `flushReturns`.
    let returns: UnsafeMutablePointer<UInt16>
    var returnCount = 0
    /// Slots currently in the kernel's ring.
    var inRing: Int

    /// - Parameters:
    ///   - count: a power of two ≤ 32768.
    ///   - payloadCapacity: largest payload one receive may land (65536 with GRO: a coalesced
    ///     receive is up to 64 KiB and is truncated, not split, when the buffer is smaller).
    ///   - maxSegments: most GRO segments one receive may be spread into.
    init?(count: Int, payloadCapacity: Int, maxSegments: Int) {
        guard count > 0, count <= 32768, count & (count - 1) == 0, payloadCapacity > 0 else { return nil }
        self.count = count
        kernelBytes = Self.payloadOffset + payloadCapacity
        let raw = kernelBytes + max(0, maxSegments - 1) * Self.segmentGap + InboundDatagram.tailroom
        stride = (raw + 63) & ~63
        mappingBytes = stride * count
        guard let p = mmap(nil, mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return nil }
        base = p
        holders = .allocate(capacity: count)
        holders.initialize(repeating: 0, count: count)
        returns = .allocate(capacity: count)
        returns.initialize(repeating: 0, count: count)
        inRing = count
    }

    deinit {
        munmap(base, mappingBytes)
        holders.deallocate()
        returns.deallocate()
    }

    @inline(__always) func slot(_ id: Int) -> UnsafeMutableRawPointer { base + id * stride }

    /// Whether `pointer` lies inside slot `id`.
    @inline(__always) func contains(_ pointer: UnsafeRawPointer, length: Int, slot id: Int) -> Bool {
        let start = UnsafeRawPointer(slot(id))
        return pointer >= start && length >= 0 && pointer + length <= start + stride
    }

    /// The kernel filled slot `id`: the worker now holds it once.
    @inline(__always) func received(_ id: Int) {
        holders[id] = 1
        inRing -= 1
    }

    @inline(__always) func retain(_ id: Int) {
        holders[id] &+= 1
    }

    /// Drops one hold; queues the slot for return at zero.
    @inline(__always) func release(_ id: Int) {
        let h = holders[id]
        guard h > 0 else { return }
        holders[id] = h - 1
        if h == 1 {
            returns[returnCount] = UInt16(truncatingIfNeeded: id)
            returnCount += 1
        }
    }

    /// Publishes queued returns to the backend (the kernel's buffer ring, or the batched loop's
    /// free list) in one go.
    @inline(__always) func flushReturns<B: IOBackend>(_ backend: B) {
        guard returnCount > 0 else { return }
        backend.returnBuffers(returns, count: returnCount)
        inRing += returnCount
        returnCount = 0
    }
}
