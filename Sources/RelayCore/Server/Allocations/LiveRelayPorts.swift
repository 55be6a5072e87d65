import STUN
import Synchronization

/// Which relay ports are live allocation sockets right now, across every `Server` of the process
/// (one per worker), per address family: one bit per port, 8 KiB per family.
///
/// A peer on the relay's own address is admitted only at a port in this set, at the moment the
/// datagram is relayed (hairpin between two allocations of this relay, possibly on different
/// workers). Any other port of that address is some other program's socket: Linux's default
/// ephemeral range (32768–60999) overlaps the default relay range, so a resolver's query socket
/// or any local UDP service may sit there, and no client may reach it through an allocation.
///
/// Each server sets a port when the shell has opened its socket and clears it when it asks the
/// shell to close it; ports never overlap between servers (disjoint slices; a reserved port is
/// bound by one server at a time), so every bit has one writer at a time. Readers are any worker's
/// packet path, but only for own-address peers: the common path never reads it.
public final class LiveRelayPorts: @unchecked Sendable {
    private static let wordsPerFamily = 65536 / 64
    private let words: UnsafeMutablePointer<Atomic<UInt64>>

    public init() {
        words = .allocate(capacity: 2 * Self.wordsPerFamily)
        for i in 0 ..< 2 * Self.wordsPerFamily { (words + i).initialize(to: Atomic(0)) }
    }

    deinit {
        words.deinitialize(count: 2 * Self.wordsPerFamily)
        words.deallocate()
    }

    @inline(__always)
    private static func index(_ port: UInt16, _ family: AddressFamily) -> (word: Int, mask: UInt64) {
        let base = family == .ipv4 ? 0 : wordsPerFamily
        return (base + Int(port >> 6), 1 << UInt64(port & 63))
    }

    public func setLive(_ port: UInt16, family: AddressFamily, _ live: Bool) {
        let (word, mask) = Self.index(port, family)
        if live {
            _ = words[word].bitwiseOr(mask, ordering: .releasing)
        } else {
            _ = words[word].bitwiseAnd(~mask, ordering: .releasing)
        }
    }

    @inline(__always)
    public func isLive(_ port: UInt16, family: AddressFamily) -> Bool {
        let (word, mask) = Self.index(port, family)
        return words[word].load(ordering: .acquiring) & mask != 0
    }

    /// Live ports of `family` (tests, diagnostics).
    public func count(_ family: AddressFamily) -> Int {
        let base = family == .ipv4 ? 0 : Self.wordsPerFamily
        var n = 0
        for i in base ..< base + Self.wordsPerFamily { n += words[i].load(ordering: .relaxed).nonzeroBitCount }
        return n
    }
}
