import STUN

/// Recent responses to authenticated requests, so that a retransmitted request (same 5-tuple and
/// transaction ID) gets the same response bytes again (RFC 8489 §6.3.4: "the server MUST ... respond
/// to retransmissions such that the same response is sent ... the server will need to remember the
/// response ... for 40 seconds") instead of, say, a 437 for a retransmitted Allocate.
///
/// A fixed ring: at most `capacity` entries of at most `maxResponseBytes` each; the oldest entry is
/// overwritten first. Only authenticated requests are cached, so spoofed floods add nothing.
struct TransactionCache {
    private struct Entry {
        var key: TransactionKey
        var expiresAt: Instant
        var bytes: [UInt8]
    }

    let capacity: Int
    let lifetimeSeconds: UInt64
    static let maxResponseBytes = 1024
    private var ring: [Entry?]
    private var cursor = 0
    private var index: [TransactionKey: Int] = [:]

    init(capacity: Int, lifetimeSeconds: UInt64) {
        self.capacity = max(1, capacity)
        self.lifetimeSeconds = lifetimeSeconds
        ring = Array(repeating: nil, count: self.capacity)
    }

    var count: Int { index.count }

    func lookup(_ key: TransactionKey, now: Instant) -> [UInt8]? {
        guard let slot = index[key], let entry = ring[slot], entry.expiresAt > now else { return nil }
        return entry.bytes
    }

    func contains(_ key: TransactionKey, now: Instant) -> Bool { lookup(key, now: now) != nil }

    mutating func insert(_ key: TransactionKey, response: UnsafeRawBufferPointer, now: Instant) {
        guard response.count <= Self.maxResponseBytes else { return }
        if let old = index[key] {
            ring[old] = nil
            index[key] = nil
        }
        if let evicted = ring[cursor] { index[evicted.key] = nil }
        ring[cursor] = Entry(key: key, expiresAt: now.adding(seconds: lifetimeSeconds), bytes: Array(response))
        index[key] = cursor
        cursor = (cursor + 1) % capacity
    }
}
