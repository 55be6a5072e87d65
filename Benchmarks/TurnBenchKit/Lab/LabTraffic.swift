/// What `turn-bench lab` sends: which flow each consecutive datagram belongs to.
///
/// Flows are numbered as BenchPayload numbers them: flow `2 * allocation` is client → peer
/// (ChannelData to the relay's listen port), flow `2 * allocation + 1` is peer → client (plain
/// UDP to the allocation's relayed address).
public enum LabWorkload: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Consecutive datagrams belong to different flows and different allocations, and the two
    /// directions alternate: what a relay carrying thousands of flows sees.
    case interleaved
    /// `burst` consecutive datagrams per flow, then the next flow (the order of `interleaved`).
    case bursty(burst: Int)

    public var description: String {
        switch self {
        case .interleaved: "interleaved"
        case .bursty(let n): "bursty-\(n)"
        }
    }

    /// "interleaved" or "bursty-N" (N ≥ 2).
    public init?(_ text: String) {
        if text == "interleaved" { self = .interleaved; return }
        guard text.hasPrefix("bursty-"), let n = Int(text.dropFirst("bursty-".count)), (2...1024).contains(n) else { return nil }
        self = .bursty(burst: n)
    }
}

public enum TrafficOrder {
    /// One cycle of flow indices for `allocations` allocations, both directions. Every flow
    /// appears the same number of times per cycle (once, or `burst` times).
    ///
    /// Interleaved: position k carries direction k % 2, allocation (k / 2 + (k % 2) · h) mod n with
    /// h = ⌈n / 2⌉, so client → peer datagrams of allocations 0, 1, 2 … alternate with peer → client
    /// datagrams of allocations h, h + 1 …: no two consecutive datagrams (the wrap-around included)
    /// share a flow, and for n ≥ 3 (h mod n is neither 0 nor 1) none share an allocation.
    public static func cycle(allocations n: Int, workload: LabWorkload) -> [Int] {
        guard n > 0 else { return [] }
        var order: [Int] = []
        order.reserveCapacity(2 * n)
        let half = (n + 1) / 2
        for k in 0..<(2 * n) {
            let direction = k % 2
            let allocation = (k / 2 + direction * half) % n
            order.append(2 * allocation + direction)
        }
        switch workload {
        case .interleaved:
            return order
        case .bursty(let burst):
            return order.flatMap { repeatElement($0, count: burst) }
        }
    }

    /// How many of the first `count` positions of the repeated `cycle` are client → peer
    /// (even flow numbers); the rest are peer → client.
    public static func clientToPeerCount(cycle: [Int], sent count: UInt64) -> UInt64 {
        guard !cycle.isEmpty else { return 0 }
        let perCycle = UInt64(cycle.lazy.filter { $0 % 2 == 0 }.count)
        let full = count / UInt64(cycle.count), rest = Int(count % UInt64(cycle.count))
        return full * perCycle + UInt64(cycle[0..<rest].lazy.filter { $0 % 2 == 0 }.count)
    }
}
