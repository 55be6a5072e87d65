import STUN

/// The nonce each recently authenticated client address last presented, so that the client's next
/// requests with the same nonce skip recomputing its HMAC-SHA256 tag (`NonceAuthority.validate`).
///
/// A hit needs the same client transport address and the same nonce bytes as a nonce that
/// `NonceAuthority` validated: its tag is a function of exactly those, so the answer is the one a
/// full validation would give. Freshness is still checked against the nonce's own timestamp on
/// every use. Only nonces of requests that authenticated are stored (`Server.rememberNonce`), so a
/// client without credentials stores nothing, and nobody can store a nonce this server did not mint
/// for that address. Bounded and direct-mapped (`DirectMappedSlots`, by
/// client address); a newer client replaces an older one in its slot, which costs that client one
/// full validation, nothing more.
struct ValidatedNonceCache {
    static let slotCount = 2048
    /// 64 bytes: `NonceAuthority.length` (61) and `compactLength` (32) fit.
    private typealias Words = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    private struct Slot {
        var client: TransportAddress
        var nonce: Words
        var mintedAt: UInt64
    }

    private var slots: DirectMappedSlots<Slot>

    init(seed: UInt64) {
        slots = DirectMappedSlots(slotCount: Self.slotCount, seed: seed)
    }

    /// Entries in use (for tests).
    var count: Int { slots.count }

    /// The nonce bytes zero-padded to 64, or nil when they do not fit.
    private static func words(_ nonce: UnsafeRawBufferPointer) -> Words? {
        guard nonce.count <= MemoryLayout<Words>.size else { return nil }
        var w: Words = (0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &w) { $0.copyMemory(from: nonce) }
        return w
    }

    /// The minting time of `nonce` if it is the one cached for `client`.
    func mintedAt(_ nonce: UnsafeRawBufferPointer, client: TransportAddress) -> UInt64? {
        guard nonce.count == NonceAuthority.length || nonce.count == NonceAuthority.compactLength, let slot = slots[slots.slot(client)], slot.client == client,
              let w = Self.words(nonce) else { return nil }
        let c = slot.nonce
        // Every word compared whatever the first difference.
        let diff = (w.0 ^ c.0) | (w.1 ^ c.1) | (w.2 ^ c.2) | (w.3 ^ c.3) | (w.4 ^ c.4) | (w.5 ^ c.5) | (w.6 ^ c.6) | (w.7 ^ c.7)
        return diff == 0 ? slot.mintedAt : nil
    }

    /// Remembers a nonce that `NonceAuthority.validate` found valid for `client`.
    mutating func insert(_ nonce: UnsafeRawBufferPointer, client: TransportAddress, mintedAt: UInt64) {
        guard nonce.count == NonceAuthority.length || nonce.count == NonceAuthority.compactLength, let w = Self.words(nonce) else { return }
        slots[slots.slot(client)] = Slot(client: client, nonce: w, mintedAt: mintedAt)
    }
}
