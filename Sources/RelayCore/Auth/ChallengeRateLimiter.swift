import STUN

/// Per-source limit on unauthenticated error responses (401, 438): a spoofed-source flood must
/// not turn the relay into a reflector (hardening notes §4.1 "Reflection/amplification"; coturn
/// rate-limits 401s per source at 10/s).
///
/// Memory is a fixed table of `tableSize` slots allocated once; nothing grows with the number of
/// sources. Each slot holds one source bucket (an IPv4 address, or an IPv6 /64, since one host
/// owns a whole /64) and its generic cell rate algorithm state: the "theoretical arrival time"
/// of the next response. A source may receive a burst of `burst` responses, then one every
/// `1/perSecond` seconds; the budget refills at `perSecond`, so over any span of T seconds a
/// source gets at most `burst + perSecond × T`.
///
/// The burst is what many clients behind one NAT address need when they join at once (an office
/// of 1,000 opening one meeting: each client's first Allocate is answered 401); the sustained
/// rate is what a spoofed-source flood meets once the burst is spent.
///
/// When two sources hash to the same slot, the newcomer takes the slot over only if the
/// occupant's budget is full again (it has been quiet); otherwise the newcomer is charged to the
/// occupant's budget. So a flood of random spoofed sources can neither evict a victim that is
/// being reflected at (its budget is in use) nor grow the table; the cost is that a source
/// sharing a slot with an active one is limited with it. Pass a random `seed` so an attacker
/// cannot aim sources at a chosen slot; with the same seed and the same `now` values the
/// limiter is deterministic.
public struct ChallengeRateLimiter: Sendable {
    private var families: [UInt8]     // 0 = empty, 4 = IPv4 bucket, 6 = IPv6 /64 bucket
    private var buckets: [UInt64]     // IPv4 address or IPv6 /64 prefix
    private var nextArrival: [UInt64] // GCRA theoretical arrival time, nanoseconds
    private let interval: UInt64      // nanoseconds between responses at the sustained rate
    private let burstTolerance: UInt64
    private let seed: UInt64

    /// - Parameters:
    ///   - perSecond: responses per second per source, sustained. Values below 1 count as 1.
    ///   - burst: responses a quiet source may receive at once; nil means `perSecond`. Values
    ///     below 1 count as 1.
    ///   - tableSize: number of slots. Values below 1 count as 1.
    ///   - seed: hash key for slot selection.
    public init(perSecond: Int = 10, burst: Int? = nil, tableSize: Int = 4096, seed: UInt64 = 0) {
        let rate = UInt64(max(perSecond, 1))
        let size = max(tableSize, 1)
        interval = 1_000_000_000 / rate
        let depth = UInt64(max(burst ?? perSecond, 1))
        let (tolerance, overflow) = interval.multipliedReportingOverflow(by: depth - 1)
        burstTolerance = overflow ? .max : tolerance
        families = [UInt8](repeating: 0, count: size)
        buckets = [UInt64](repeating: 0, count: size)
        nextArrival = [UInt64](repeating: 0, count: size)
        self.seed = seed
    }

    /// The number of slots: constant for the limiter's lifetime, whatever the traffic.
    public var memoryFootprintEntries: Int { families.count }

    /// Whether one more challenge response to `source` fits its budget at `nowNanoseconds`
    /// (monotonic). Charges the budget when it returns true.
    public mutating func allow(source: IPAddress, nowNanoseconds now: UInt64) -> Bool {
        let family: UInt8, bucket: UInt64
        switch source {
        case .v4(let a):
            family = 4; bucket = UInt64(a.value)
        case .v6(let a) where a.high == 0 && a.low >> 32 == 0xFFFF:
            family = 4; bucket = a.low & 0xFFFF_FFFF     // a dual-stack socket's ::ffff:a.b.c.d
        case .v6(let a):
            family = 6; bucket = a.high
        }
        let slot = Int(Self.mix(bucket ^ seed ^ (UInt64(family) << 56)).multipliedFullWidth(by: UInt64(families.count)).high)

        if families[slot] != family || buckets[slot] != bucket {
            let occupantQuiet = families[slot] == 0 || nextArrival[slot] <= now
            if occupantQuiet {
                families[slot] = family
                buckets[slot] = bucket
                nextArrival[slot] = now
            }
        }
        let arrival = max(nextArrival[slot], now)
        if arrival - now > burstTolerance { return false }
        let (next, overflow) = arrival.addingReportingOverflow(interval)
        nextArrival[slot] = overflow ? .max : next
        return true
    }

    /// SplitMix64 finalizer: spreads neighbouring addresses over the table.
    private static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
