import Histogram

/// One-way latency percentiles in microseconds (send timestamp in the payload to arrival, same
/// monotonic clock on both ends).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double

    public init(count: UInt64, p50: Double, p90: Double, p99: Double, p999: Double, max: Double) {
        self.count = count
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }

    public static let empty = LatencySummary(count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0)

    /// Summarises a histogram of nanosecond values.
    public init(nanoseconds h: Histogram<UInt64>) {
        guard h.totalCount > 0 else {
            self = .empty
            return
        }
        func us(_ ns: UInt64) -> Double { Double(ns) / 1000 }
        self.init(count: h.totalCount,
                  p50: us(h.valueAtPercentile(50)), p90: us(h.valueAtPercentile(90)),
                  p99: us(h.valueAtPercentile(99)), p999: us(h.valueAtPercentile(99.9)),
                  max: us(h.max))
    }
}

public enum LatencyHistogram {
    /// 1 ns ... 60 s, three significant digits.
    public static func make() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }
}
