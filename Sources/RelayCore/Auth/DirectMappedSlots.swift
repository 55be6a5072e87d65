/// A fixed number of slots, each key's slot chosen by a hash seeded per process: the storage of the
/// server's bounded caches. A newer entry replaces whatever was in its slot, so memory never grows
/// and a client that does not know the seed cannot aim at another client's slot.
struct DirectMappedSlots<Entry> {
    private var slots: [Entry?]
    private let seed: UInt64

    /// - Parameter slotCount: a power of two.
    init(slotCount: Int, seed: UInt64) {
        precondition(slotCount > 0 && slotCount & (slotCount - 1) == 0, "slotCount must be a power of two")
        slots = Array(repeating: nil, count: slotCount)
        self.seed = seed
    }

    /// Slots in use.
    var count: Int { slots.reduce(0) { $0 + ($1 == nil ? 0 : 1) } }

    /// The slot of `key`.
    func slot<Key: Hashable>(_ key: Key) -> Int {
        var hasher = Hasher()
        hasher.combine(seed)
        hasher.combine(key)
        return hasher.finalize() & (slots.count - 1)
    }

    subscript(slot: Int) -> Entry? {
        get { slots[slot] }
        set { slots[slot] = newValue }
    }

    mutating func removeAll() {
        for i in slots.indices { slots[i] = nil }
    }
}
