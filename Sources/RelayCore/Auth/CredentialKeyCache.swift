import STUN

/// The long-term keys' HMAC states of recently authenticated usernames, so that a client's later
/// requests skip deriving the password (one HMAC-SHA1 per REST secret), the key (RFC 8489 §9.2.2:
/// "key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))") and the HMAC key
/// padding.
///
/// Bounded and direct-mapped (`DirectMappedSlots`): `slotCount` slots chosen by the username,
/// password algorithm and integrity attribute. Only keys that just verified a
/// request's MESSAGE-INTEGRITY are stored, so a client without valid credentials cannot put entries
/// in (nor, beyond what its own valid credentials allow, push others out). An entry is a shortcut,
/// never a verdict: a request whose integrity the cached key does not verify goes through the full
/// derivation over every candidate password. The server empties the cache whenever the credentials
/// change (`Server.reload`), and a time-limited username's entry is refused once the username's
/// own expiry has passed, exactly as `CredentialStore.lookup` would refuse it.
struct CredentialKeyCache {
    static let slotCount = 1024

    struct Entry {
        var username: String
        var algorithm: PasswordAlgorithm
        /// The expiry a time-limited username names (TURN REST, Firezone), nil for a static user.
        var expiry: UInt64?
        var integrity: ResponseSigner.Integrity
    }

    /// What an entry is found by.
    private struct Key: Hashable {
        var username: String
        var algorithm: PasswordAlgorithm
        var sha256: Bool
    }

    private var slots: DirectMappedSlots<Entry>

    init(seed: UInt64) {
        slots = DirectMappedSlots(slotCount: Self.slotCount, seed: seed)
    }

    /// Entries in use (for tests).
    var count: Int { slots.count }

    /// The entry for this username, password algorithm and integrity attribute, if cached.
    func lookup(username: String, algorithm: PasswordAlgorithm, sha256: Bool) -> Entry? {
        guard let entry = slots[slots.slot(Key(username: username, algorithm: algorithm, sha256: sha256))],
              entry.username == username, entry.algorithm == algorithm, entry.integrity.isSHA256 == sha256 else { return nil }
        return entry
    }

    mutating func insert(_ entry: Entry) {
        slots[slots.slot(Key(username: entry.username, algorithm: entry.algorithm, sha256: entry.integrity.isSHA256))] = entry
    }

    mutating func removeAll() { slots.removeAll() }
}

extension ResponseSigner.Integrity {
    var isSHA256: Bool {
        if case .sha256 = self { return true }
        return false
    }
}
