import Glibc

/// Fixed-size buffers for datagrams the core encoded in its batch arena (STUN responses, Data
/// indications): the arena is reused after each batch while the send is still in flight, so those
/// bytes are copied here. Forwarded payloads (ChannelData both ways) never come through here.
final class TransmitBufferPool {
    let count: Int
    let slotBytes: Int
    let base: UnsafeMutableRawPointer
    let mappingBytes: Int
    /// Stack of free slot indices.
    let free: UnsafeMutablePointer<UInt32>
    var freeCount: Int

    init?(count: Int, slotBytes: Int) {
        guard count > 0, slotBytes > 0 else { return nil }
        self.count = count
        self.slotBytes = (slotBytes + 63) & ~63
        mappingBytes = self.slotBytes * count
        guard let p = mmap(nil, mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else { return nil }
        base = p
        free = .allocate(capacity: count)
        for i in 0..<count { free[i] = UInt32(count - 1 - i) }
        freeCount = count
    }

    deinit {
        munmap(base, mappingBytes)
        free.deallocate()
    }

    @inline(__always) func take() -> Int? {
        guard freeCount > 0 else { return nil }
        freeCount -= 1
        return Int(free[freeCount])
    }

    @inline(__always) func give(_ slot: Int) {
        guard slot >= 0, slot < count, freeCount < count else { return }
        free[freeCount] = UInt32(slot)
        freeCount += 1
    }

    @inline(__always) func slot(_ index: Int) -> UnsafeMutableRawPointer { base + index * slotBytes }
}
