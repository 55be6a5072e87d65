import STUN

/// Relay ports in use, per address family, as a bitset over the 65,536 port numbers (8 KiB per
/// family, fixed). Ports are chosen at random from the configured range with the injected random
/// source (RFC 8656 §7.2: "the server SHOULD only allocate ports from the range 49152 - 65535";
/// random choice because predictable relay ports help attackers, coturn CVE-2025-69217).
struct PortAllocator {
    let range: ClosedRange<UInt16>
    /// Random probes before falling back to a scan from a random start.
    let randomProbes: Int
    private var used: [[UInt64]] = [Array(repeating: 0, count: 1024), Array(repeating: 0, count: 1024)]
    private(set) var usedCount: [Int] = [0, 0]

    init(range: ClosedRange<UInt16>, randomProbes: Int = 16) {
        self.range = range
        self.randomProbes = randomProbes
    }

    func isUsed(_ port: UInt16, _ family: AddressFamily) -> Bool {
        let f = family == .ipv4 ? 0 : 1
        return used[f][Int(port) >> 6] & (1 << UInt64(port & 63)) != 0
    }

    mutating func markUsed(_ port: UInt16, _ family: AddressFamily) {
        guard !isUsed(port, family) else { return }
        let f = family == .ipv4 ? 0 : 1
        used[f][Int(port) >> 6] |= 1 << UInt64(port & 63)
        usedCount[f] += 1
    }

    mutating func release(_ port: UInt16, _ family: AddressFamily) {
        guard isUsed(port, family) else { return }
        let f = family == .ipv4 ? 0 : 1
        used[f][Int(port) >> 6] &= ~(1 << UInt64(port & 63))
        usedCount[f] -= 1
    }

    /// What a caller asks for.
    struct Request {
        /// The port must be free in each of these families (a dual allocation uses one port number
        /// on both when it can).
        var families: [AddressFamily]
        /// EVEN-PORT: the port must be even.
        var even: Bool = false
        /// EVEN-PORT with R=1: port N+1 must be free too (N even).
        var reserveNext: Bool = false
    }

    /// A free port satisfying `request`, not yet marked used; nil when there is none.
    func choose(_ request: Request, using random: inout some RandomNumberGenerator) -> UInt16? {
        let lower = Int(range.lowerBound), size = Int(range.upperBound) - lower + 1
        func fits(_ p: Int) -> Bool {
            guard p >= lower, p <= Int(range.upperBound) else { return false }
            let port = UInt16(p)
            if request.even || request.reserveNext, port & 1 != 0 { return false }
            for f in request.families where isUsed(port, f) { return false }
            if request.reserveNext {
                guard p + 1 <= Int(range.upperBound) else { return false }
                for f in request.families where isUsed(UInt16(p + 1), f) { return false }
            }
            return true
        }
        for _ in 0..<randomProbes {
            let p = lower + Int(random.next(upperBound: UInt64(size)))
            if fits(p) { return UInt16(p) }
        }
        // Bounded scan (at most the range size) from a random start, so a nearly full range still
        // finds the last free ports without unbounded retries.
        let start = Int(random.next(upperBound: UInt64(size)))
        for i in 0..<size {
            let p = lower + (start + i) % size
            if fits(p) { return UInt16(p) }
        }
        return nil
    }
}
