import RelayCore

/// What a worker publishes, and the only way its counters leave its thread: its own counters and
/// its processor's (`DatagramProcessor.report`), copied into its `WorkerHandle` every
/// `WorkerConfiguration.statisticsIntervalNanoseconds` (the loop wakes for it even when idle, so
/// a report is also the worker's heartbeat) and once more when it stops. Operations reads the
/// reports (`WorkerHandle.report`), sums them for /metrics and ages them for /readyz.
public struct WorkerReport: Sendable {
    public var statistics = WorkerStatistics()
    /// The processor's own report (the TURN server's counters), nil for processors without one.
    public var processor: (any Sendable)?
    /// The worker's clock (`RelayClock`) at publication; nil before the first.
    public var publishedAt: Instant?
    /// The worker's loop has ended; this is its final report.
    public var stopped = false

    public init(statistics: WorkerStatistics = WorkerStatistics(), processor: (any Sendable)? = nil,
                publishedAt: Instant? = nil, stopped: Bool = false) {
        self.statistics = statistics
        self.processor = processor
        self.publishedAt = publishedAt
        self.stopped = stopped
    }
}
