import RelayCore

/// The worker-thread side of a `WorkerSlot`: decides when the worker's counters are copied out.
/// Not shared; each worker owns one.
public struct SnapshotPublisher {
    public let slot: WorkerSlot
    /// Minimum time between two publishes while counters change.
    public let interval: UInt64
    /// Longest time between two publishes when nothing changes (the liveness heartbeat).
    public let heartbeat: UInt64
    public private(set) var lastPublish: Instant?

    public init(slot: WorkerSlot, intervalNanoseconds: UInt64 = 250_000_000, heartbeatNanoseconds: UInt64 = 1_000_000_000) {
        self.slot = slot
        interval = intervalNanoseconds
        heartbeat = max(intervalNanoseconds, heartbeatNanoseconds)
    }

    /// When the next publish is due: `interval` after the last when there are unpublished changes,
    /// `heartbeat` after it otherwise; immediately before the first.
    public func deadline(dirty: Bool) -> Instant {
        guard let lastPublish else { return Instant(nanoseconds: 0) }
        return lastPublish.adding(nanoseconds: dirty ? interval : heartbeat)
    }

    public func isDue(now: Instant, dirty: Bool) -> Bool { deadline(dirty: dirty) <= now }

    public mutating func publish(_ snapshot: RelaySnapshot, now: Instant) {
        slot.publish(snapshot)
        lastPublish = now
    }
}
