/// Medians per (server, offered load) over the kept rounds, and B/A ratios: the `compare` table.
public struct ComparisonTable: Sendable, Equatable {
    /// Median figures of one server at one target load.
    public struct Cell: Sendable, Equatable {
        public var rounds: Int
        public var offeredPPS: Double
        public var deliveredPPS: Double
        public var lossRatio: Double
        public var relayCPUMicrosPerPacket: Double?
        public var p99Micros: Double
    }

    public struct Row: Sendable, Equatable {
        /// 0 means flat out.
        public var targetPPS: Double
        public var a: Cell?
        public var b: Cell?
        /// a.delivered / b.delivered: above 1 means A delivers more.
        public var deliveredRatio: Double? { Summary.ratio(a?.deliveredPPS, b?.deliveredPPS) }
        /// a.cpu / b.cpu: below 1 means A spends less CPU per packet.
        public var cpuRatio: Double? { Summary.ratio(a?.relayCPUMicrosPerPacket, b?.relayCPUMicrosPerPacket) }
        /// a.p99 / b.p99: below 1 means A has the lower tail latency.
        public var p99Ratio: Double? { Summary.ratio(a?.p99Micros, b?.p99Micros) }
    }

    public var serverA: String
    public var serverB: String
    public var rows: [Row]
    public var lossThreshold: Double

    /// Groups `runs` by target load; rounds below `firstKeptRound` (the warm-up) are discarded.
    public init(runs: [RunRow], serverA: String, serverB: String, firstKeptRound: Int = 1, lossThreshold: Double = 0.01) {
        self.serverA = serverA
        self.serverB = serverB
        self.lossThreshold = lossThreshold
        let kept = runs.filter { $0.round >= firstKeptRound }
        // Flat out (0) sorts after every finite target.
        let targets = Set(kept.map(\.targetPPS)).sorted { l, r in
            if l == 0 { return false }
            if r == 0 { return true }
            return l < r
        }
        rows = targets.map { t in
            Row(targetPPS: t,
                a: Self.cell(kept.filter { $0.server == serverA && $0.targetPPS == t }),
                b: Self.cell(kept.filter { $0.server == serverB && $0.targetPPS == t }))
        }
    }

    static func cell(_ runs: [RunRow]) -> Cell? {
        guard !runs.isEmpty,
              let offered = Summary.median(runs.map(\.offeredPPS)),
              let delivered = Summary.median(runs.map(\.deliveredPPS)),
              let loss = Summary.median(runs.map(\.lossRatio)),
              let p99 = Summary.median(runs.map(\.p99Micros)) else { return nil }
        let cpus = runs.compactMap(\.relayCPUMicrosPerPacket)
        return Cell(rounds: runs.count, offeredPPS: offered, deliveredPPS: delivered, lossRatio: loss,
                    relayCPUMicrosPerPacket: cpus.count == runs.count ? Summary.median(cpus) : nil, p99Micros: p99)
    }

    /// The highest median delivered rate among loads whose median loss stays below the threshold.
    public func bestDelivered(_ pick: (Row) -> Cell?) -> Double? {
        rows.compactMap(pick).filter { $0.lossRatio < lossThreshold }.map(\.deliveredPPS).max()
    }

    public var bestDeliveredA: Double? { bestDelivered { $0.a } }
    public var bestDeliveredB: Double? { bestDelivered { $0.b } }

    /// A plain-text (Markdown) table.
    public func render() -> String {
        func n(_ v: Double?) -> String { v.map { String(Int64($0.rounded())) } ?? "-" }
        func pct(_ v: Double?) -> String { v.map { fixed($0 * 100, 2) + "%" } ?? "-" }
        func r(_ v: Double?) -> String { v.map { fixed($0, 2) + "×" } ?? "-" }
        func f2(_ v: Double?) -> String { v.map { fixed($0, 2) } ?? "-" }
        var out: [String] = []
        let a = serverA, b = serverB
        out.append("| target pps | offered \(a) | offered \(b) | delivered \(a) | delivered \(b) | ratio | loss \(a) | loss \(b) | CPU µs/pkt \(a) | CPU µs/pkt \(b) | ratio | p99 µs \(a) | p99 µs \(b) | ratio |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows {
            let t = row.targetPPS == 0 ? "flat out" : n(row.targetPPS)
            out.append("| \(t) | \(n(row.a?.offeredPPS)) | \(n(row.b?.offeredPPS)) | \(n(row.a?.deliveredPPS)) | \(n(row.b?.deliveredPPS)) | \(r(row.deliveredRatio)) | \(pct(row.a?.lossRatio)) | \(pct(row.b?.lossRatio)) | \(f2(row.a?.relayCPUMicrosPerPacket)) | \(f2(row.b?.relayCPUMicrosPerPacket)) | \(r(row.cpuRatio)) | \(f2(row.a?.p99Micros)) | \(f2(row.b?.p99Micros)) | \(r(row.p99Ratio)) |")
        }
        let pa = bestDeliveredA, pb = bestDeliveredB
        out.append("")
        out.append("Highest delivered pps at < \(fixed(lossThreshold * 100, 1))% loss: \(a) \(n(pa)), \(b) \(n(pb)), ratio \(r(Summary.ratio(pa, pb)))")
        return out.joined(separator: "\n")
    }
}

/// `v` with exactly `digits` decimals, without Foundation's locale-dependent formatting.
public func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return String(v) }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(v) * scale).rounded()
    guard scaled < 9e18 else { return String(v) }
    let n = UInt64(scaled)
    let whole = n / UInt64(scale)
    let frac = n % UInt64(scale)
    let sign = v < 0 && n != 0 ? "-" : ""
    if digits == 0 { return sign + String(whole) }
    let f = String(frac)
    return sign + String(whole) + "." + String(repeating: "0", count: digits - f.count) + f
}
