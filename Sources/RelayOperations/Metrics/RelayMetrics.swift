import CoreMetrics
import Prometheus
import Synchronization

/// Turns the workers' plain counters into swift-metrics instruments, on demand.
///
/// Nothing here runs on a worker thread. `update()` (called by a `/metrics` scrape or by a
/// periodic OTLP export) sums the latest snapshot of every source and moves the instruments by the
/// difference since the previous update, so a counter exported through swift-metrics carries the
/// same total as the workers' own counters. Histograms go to Prometheus as native histogram text
/// (swift-metrics records one sample per call, which would cost one call per packet); other
/// factories get them as cumulative `_bucket{le}` / `_count` / `_sum` counters.
public final class RelayMetrics: Sendable {
    public typealias Source = @Sendable () -> [RelaySnapshot]

    public let registry: PrometheusCollectorRegistry
    private let sources = Mutex<[Source]>([])
    private let state: Mutex<ExportState>

    /// - Parameters:
    ///   - registry: the Prometheus registry `/metrics` prints.
    ///   - additionalFactories: further swift-metrics backends (e.g. OTLP) fed the same values.
    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
                additionalFactories: [any MetricsFactory] = []) {
        self.registry = registry
        let factories: [any MetricsFactory] = [PrometheusMetricsFactory(registry: registry)] + additionalFactories
        state = Mutex(ExportState(factories: factories, histogramFactories: additionalFactories))
    }

    /// Adds a source of worker snapshots (a `MetricsBoard`; tests add plain snapshots).
    public func addSource(_ source: @escaping Source) {
        sources.withLock { $0.append(source) }
    }

    public func addSource(_ board: MetricsBoard) {
        addSource { board.snapshots() }
    }

    /// Sums every source and brings the instruments up to date. Returns the sum.
    @discardableResult
    public func update() -> RelaySnapshot {
        let current = sources.withLock { $0 }
        var total = RelaySnapshot()
        for source in current {
            for snapshot in source() { total.add(snapshot) }
        }
        state.withLock { $0.apply(total) }
        return total
    }

    /// `update()`, then the Prometheus text exposition format (version 0.0.4).
    public func prometheusText() -> String {
        let total = update()
        var text = registry.emitToString()
        for histogram in RelayHistogram.allCases {
            appendPrometheusHistogram(histogram, total[histogram], to: &text)
        }
        return text
    }

    private func appendPrometheusHistogram(_ histogram: RelayHistogram, _ counts: BucketCounts, to text: inout String) {
        let name = histogram.name
        text += "# HELP \(name) \(histogram.help)\n# TYPE \(name) histogram\n"
        var cumulative = 0
        for (i, bound) in counts.upperBounds.enumerated() {
            cumulative &+= counts.counts[i]
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        cumulative &+= counts.counts[counts.upperBounds.count]
        text += "\(name)_bucket{le=\"+Inf\"} \(cumulative)\n"
        text += "\(name)_sum \(counts.sum)\n\(name)_count \(cumulative)\n"
    }
}

/// The instruments and the totals they were last moved to. Only touched under `RelayMetrics.state`.
private struct ExportState: @unchecked Sendable {
    // @unchecked: swift-metrics instruments are thread-safe handles, and this struct is only
    // reached through a Mutex.
    enum Instrument {
        case counter([CoreMetrics.Counter])
        case gauge([CoreMetrics.Gauge])
    }

    var instruments: [Instrument] = []
    var exported: RelaySnapshot
    /// Per histogram: per bucket (cumulative, with +Inf last), then count, then sum.
    var histogramCounters: [[[CoreMetrics.Counter]]] = []

    init(factories: [any MetricsFactory], histogramFactories: [any MetricsFactory]) {
        exported = RelaySnapshot()
        for series in RelaySeries.allCases {
            let (name, labels) = series.metric
            switch series.kind {
            case .counter:
                instruments.append(.counter(factories.map { CoreMetrics.Counter(label: name, dimensions: labels, factory: $0) }))
            case .gauge:
                instruments.append(.gauge(factories.map { CoreMetrics.Gauge(label: name, dimensions: labels, factory: $0) }))
            }
        }
        for histogram in RelayHistogram.allCases {
            var perSeries: [[CoreMetrics.Counter]] = []
            let bounds = histogram.upperBounds.map(String.init) + ["+Inf"]
            for bound in bounds {
                perSeries.append(histogramFactories.map {
                    CoreMetrics.Counter(label: histogram.name + "_bucket", dimensions: [("le", bound)], factory: $0)
                })
            }
            perSeries.append(histogramFactories.map { CoreMetrics.Counter(label: histogram.name + "_count", factory: $0) })
            perSeries.append(histogramFactories.map { CoreMetrics.Counter(label: histogram.name + "_sum", factory: $0) })
            histogramCounters.append(perSeries)
        }
    }

    mutating func apply(_ total: RelaySnapshot) {
        for series in RelaySeries.allCases {
            let value = total[series]
            switch instruments[series.index] {
            case .gauge(let gauges):
                for gauge in gauges { gauge.record(value) }
            case .counter(let counters):
                // Workers' counters only grow; a smaller total (a worker that has not published
                // yet after a restart) is not exported as a negative increment.
                let delta = value &- exported[series]
                guard delta > 0 else { continue }
                for counter in counters { counter.increment(by: Int64(delta)) }
                exported[series] = value
            }
        }
        for histogram in RelayHistogram.allCases {
            let now = total[histogram], before = exported[histogram]
            let counters = histogramCounters[histogram.rawValue]
            guard !counters.isEmpty, !(counters.first?.isEmpty ?? true) else { continue }
            var cumulativeNow = 0, cumulativeBefore = 0
            for i in now.counts.indices {
                cumulativeNow &+= now.counts[i]
                cumulativeBefore &+= before.counts[i]
                increment(counters[i], by: cumulativeNow &- cumulativeBefore)
            }
            increment(counters[now.counts.count], by: now.count &- before.count)
            increment(counters[now.counts.count + 1], by: now.sum &- before.sum)
        }
        for histogram in RelayHistogram.allCases where total[histogram].count >= exported[histogram].count {
            exported[histogram] = total[histogram]
        }
    }

    private func increment(_ counters: [CoreMetrics.Counter], by delta: Int) {
        guard delta > 0 else { return }
        for counter in counters { counter.increment(by: Int64(delta)) }
    }
}
