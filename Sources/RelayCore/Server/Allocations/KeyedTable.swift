import STUN

/// A key the fast-path tables can hash with a per-process seed.
protocol TableKey: Equatable {
    /// A 64-bit hash keyed by `seed`. Build it from `TableHash.mix`/`finish` over the key's words.
    func tableHash(seed: UInt64) -> UInt64
}

/// A cheap keyed hash: multiply-and-fold rounds (the 128-bit product's halves xored) starting from a
/// secret seed. It is not a MAC, but without the seed a client cannot compute which keys share a
/// home slot, and `KeyedTable` bounds probe lengths by re-seeding, so chosen keys cannot force long
/// probe sequences on the per-packet path.
enum TableHash {
    @inline(__always) static func mix(_ h: UInt64, _ word: UInt64) -> UInt64 {
        let p = (h ^ word).multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
        return p.high ^ p.low
    }

    @inline(__always) static func finish(_ h: UInt64, seed: UInt64) -> UInt64 {
        let p = h.multipliedFullWidth(by: seed | 1)
        return p.high ^ p.low ^ h
    }

    /// Three words for a transport address: address bits, then port and family together.
    @inline(__always) static func mix(_ h: UInt64, _ address: TransportAddress, extra: UInt64) -> UInt64 {
        let tail = UInt64(address.port) | UInt64(address.family.rawValue) << 16 | extra << 24
        switch address.ip {
        case .v4(let a): return mix(mix(h, UInt64(a.value)), tail)
        case .v6(let a): return mix(mix(mix(h, a.high), a.low), tail)
        }
    }
}

/// An open-addressing hash table (linear probing, backward-shift deletion) for the tables the
/// per-packet path reads: one cheap keyed hash and, at most, a few adjacent slots per lookup, where
/// `Dictionary` spends most of a lookup in SipHash.
///
/// Invariants: every entry lies within `maxProbe` slots of its home slot, and at most half of the
/// slots are used. An insertion that would need a longer probe re-seeds the hash and rebuilds (after
/// a few re-seeds it doubles the table, and only then allows longer probes), so lookups stay bounded.
/// The tables' sizes are bounded by the server's quotas; growth happens only on insertion (the slow
/// path).
struct KeyedTable<Key: TableKey, Value> {
    struct Entry {
        var key: Key
        var value: Value
        var hash: UInt64
    }

    private(set) var count = 0
    private var slots: [Entry?]
    private var mask: Int
    private var seed: UInt64
    private(set) var maxProbe = 32
    /// Times the table was rebuilt with a new seed because a probe ran too long (for tests).
    private(set) var reseeds = 0

    init(seed: UInt64, capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = Array(repeating: nil, count: size)
        mask = size - 1
        self.seed = seed
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always) private func index(of key: Key) -> Int? {
        let hash = key.tableHash(seed: seed)
        var i = Int(truncatingIfNeeded: hash) & mask
        for _ in 0 ..< maxProbe {
            guard let entry = slots[i] else { return nil }
            if entry.hash == hash && entry.key == key { return i }
            i = (i &+ 1) & mask
        }
        return nil
    }

    subscript(key: Key) -> Value? {
        @inline(__always) get {
            guard let i = index(of: key), let entry = slots[i] else { return nil }
            return entry.value
        }
        set {
            if let newValue { insert(key, newValue) } else { removeValue(forKey: key) }
        }
    }

    private mutating func insert(_ key: Key, _ value: Value) {
        if let i = index(of: key) {
            slots[i]?.value = value
            return
        }
        if (count + 1) * 2 > slots.count { rebuild(size: slots.count * 2, seed: seed) }
        var attempts = 0
        while !place(Entry(key: key, value: value, hash: key.tableHash(seed: seed))) {
            attempts += 1
            reseeds += 1
            // A fresh seed scatters an unlucky (or chosen) cluster; if that keeps failing, more room,
            // and as a last resort (only for pathological key sets) longer probes.
            let nextSeed = TableHash.mix(seed, 0xA076_1D64_78BD_642F &+ UInt64(attempts))
            if attempts % 4 == 0 {
                if slots.count >= (count + 1) * 16 { maxProbe *= 2 }
                rebuild(size: slots.count * 2, seed: nextSeed)
            } else {
                rebuild(size: slots.count, seed: nextSeed)
            }
        }
        count += 1
    }

    /// Puts a new entry within `maxProbe` of its home, or returns false.
    private mutating func place(_ entry: Entry) -> Bool {
        var i = Int(truncatingIfNeeded: entry.hash) & mask
        for _ in 0 ..< min(maxProbe, slots.count) {
            if slots[i] == nil {
                slots[i] = entry
                return true
            }
            i = (i &+ 1) & mask
        }
        return false
    }

    /// Rehashes every entry into `size` slots under `seed`. If one does not fit, tries again with
    /// the next seed (bounded: the table is at most half full, and after a few seeds it grows).
    private mutating func rebuild(size: Int, seed newSeed: UInt64) {
        let old = slots
        var size = size
        var candidate = newSeed
        var attempt = 0
        while true {
            slots = Array(repeating: nil, count: size)
            mask = size - 1
            seed = candidate
            var ok = true
            for case var entry? in old {
                entry.hash = entry.key.tableHash(seed: seed)
                if !place(entry) { ok = false; break }
            }
            if ok { break }
            attempt += 1
            candidate = TableHash.mix(candidate, 0xE703_7ED1_A0B4_28DB &+ UInt64(attempt))
            if attempt % 4 == 0 {
                if size >= count * 16 { maxProbe *= 2 }
                size *= 2
            }
            reseeds += 1
        }
    }

    @discardableResult
    mutating func removeValue(forKey key: Key) -> Value? {
        guard var hole = index(of: key), let removed = slots[hole] else { return nil }
        slots[hole] = nil
        count -= 1
        // Backward shift: pull later entries of the run into the hole when that does not move
        // them before their home slot, so no tombstones and probes stay short.
        var j = hole
        while true {
            j = (j &+ 1) & mask
            guard let entry = slots[j] else { break }
            let home = Int(truncatingIfNeeded: entry.hash) & mask
            // Distance from home to j, and from home to the hole, going forward around the ring.
            if (j &- home) & mask >= (j &- hole) & mask {
                slots[hole] = entry
                slots[j] = nil
                hole = j
            }
        }
        return removed.value
    }
}

extension ChannelKey: TableKey {
    @inline(__always) func tableHash(seed: UInt64) -> UInt64 {
        TableHash.finish(TableHash.mix(seed, client.address, extra: UInt64(number.rawValue)), seed: seed)
    }
}

extension PeerChannelKey: TableKey {
    @inline(__always) func tableHash(seed: UInt64) -> UInt64 {
        TableHash.finish(TableHash.mix(seed, peer.address, extra: UInt64(allocation.index)), seed: seed)
    }
}
