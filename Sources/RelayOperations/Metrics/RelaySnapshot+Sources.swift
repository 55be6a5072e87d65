import RelayCore
import RelayIO

extension RelaySnapshot {
    /// The core's counters under their exported names (`ServerReport.metrics`).
    public init(_ report: ServerReport) {
        self.init()
        fill(report, ServerReport.metrics, at: RelaySeries.coreOffset)
    }

    /// A worker's own counters under their exported names (`WorkerStatistics.metrics`).
    public init(_ statistics: WorkerStatistics) {
        self.init()
        fill(statistics, WorkerStatistics.metrics, at: RelaySeries.workerOffset)
    }

    /// The XDP fast path's counters under their exported names (`XDPCounters.metrics`).
    public init(_ counters: XDPCounters) {
        self.init()
        fill(counters, XDPCounters.metrics, at: RelaySeries.xdpOffset)
    }

    /// The process's own gauges under their exported names (`ProcessHealth.metrics`).
    public init(_ health: ProcessHealth) {
        self.init()
        fill(health, ProcessHealth.metrics, at: RelaySeries.healthOffset)
    }

    /// Everything one worker reported: its own counters plus its processor's (a `ServerReport`
    /// from a plain `Server`, a whole `RelaySnapshot` from an `InstrumentedServer`).
    public init(_ report: WorkerReport) {
        self.init(report.statistics)
        switch report.processor {
        case let snapshot as RelaySnapshot: add(snapshot)
        case let server as ServerReport: fill(server, ServerReport.metrics, at: RelaySeries.coreOffset)
        default: break
        }
    }

    private mutating func fill<Source>(_ source: Source, _ series: [MetricSeries<Source>], at offset: Int) {
        for (i, s) in series.enumerated() {
            self[RelaySeries(index: offset + i)] = s.value(source)
        }
    }
}
