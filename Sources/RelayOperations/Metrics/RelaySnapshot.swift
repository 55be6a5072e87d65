/// What one worker has counted so far (from its `WorkerReport`): every `RelaySeries` value and
/// every `RelayHistogram`.
/// Counters in it are cumulative since the worker started; gauges are current levels.
public struct RelaySnapshot: Sendable, Equatable {
    public private(set) var values: [Int]
    public private(set) var histograms: [BucketCounts]

    public init() {
        values = [Int](repeating: 0, count: RelaySeries.allCases.count)
        histograms = RelayHistogram.allCases.map { BucketCounts($0) }
    }

    public subscript(series: RelaySeries) -> Int {
        get { values[series.index] }
        set { values[series.index] = newValue }
    }

    public subscript(histogram: RelayHistogram) -> BucketCounts {
        get { histograms[histogram.rawValue] }
        set { histograms[histogram.rawValue] = newValue }
    }

    /// Adds another snapshot into this one (summing workers).
    public mutating func add(_ other: RelaySnapshot) {
        for i in values.indices { values[i] &+= other.values[i] }
        for i in histograms.indices { histograms[i].add(other.histograms[i]) }
    }

    public static func sum(_ snapshots: some Sequence<RelaySnapshot>) -> RelaySnapshot {
        var total = RelaySnapshot()
        for snapshot in snapshots { total.add(snapshot) }
        return total
    }
}
