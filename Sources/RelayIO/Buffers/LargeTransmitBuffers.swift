import Glibc

/// Heap copies for the few messages a stream client sends that are larger than a transmit buffer
/// (ChannelData over TCP/TLS may carry up to 65,535 bytes; `TransmitBufferPool` slots are a few
/// KiB, sized for STUN responses). Each lives from its send's submission to its completion. At
/// most `capacity` at once: beyond it such a message is dropped and counted, so memory stays
/// bounded (capacity × 64 KiB).
final class LargeTransmitBuffers {
    let capacity: Int
    private var blocks: [UnsafeMutableRawPointer?]
    private var free: [Int]

    init(capacity: Int) {
        self.capacity = capacity
        blocks = Array(repeating: nil, count: capacity)
        free = Array((0..<capacity).reversed())
    }

    deinit {
        for block in blocks { Glibc.free(block) }
    }

    /// A copy of `length` bytes at `bytes` and its index, or nil when all are in use.
    func take(copying bytes: UnsafeRawPointer, length: Int) -> (UnsafeMutableRawPointer, Int)? {
        guard let index = free.popLast() else { return nil }
        guard let block = malloc(max(1, length)) else {
            free.append(index)
            return nil
        }
        block.copyMemory(from: bytes, byteCount: length)
        blocks[index] = block
        return (block, index)
    }

    func give(_ index: Int) {
        guard index >= 0, index < capacity, let block = blocks[index] else { return }
        Glibc.free(block)
        blocks[index] = nil
        free.append(index)
    }
}
