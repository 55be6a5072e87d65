import Glibc
import Synchronization

/// Where workers leave their counters for the exporter. One slot per worker; a worker writes only
/// its own slot, from its own thread, at most every publish interval (`SnapshotPublisher`). The
/// exporter reads every slot under its lock when scraped. The counters themselves stay plain
/// integers in the worker and are never read by another thread: only the copies here are shared.
public final class MetricsBoard: Sendable {
    public let slots: [WorkerSlot]

    public init(workers: Int) {
        slots = (0..<max(0, workers)).map { WorkerSlot(index: $0) }
    }

    /// The latest snapshot of every worker that has published.
    public func snapshots() -> [RelaySnapshot] {
        slots.compactMap { $0.latest.snapshot }
    }

    /// True when every worker has published within `maxAge` nanoseconds and none has stopped: each
    /// publishes at least once per heartbeat even when idle, so a silent slot is a stuck or dead worker.
    public func allWorkersAlive(maxAge: UInt64, now: UInt64 = MonotonicClock.nanoseconds()) -> Bool {
        guard !slots.isEmpty else { return false }
        return slots.allSatisfy { slot in
            let latest = slot.latest
            guard latest.snapshot != nil, !latest.stopped else { return false }
            return now &- latest.publishedAt <= maxAge
        }
    }
}

/// One worker's published snapshot.
public final class WorkerSlot: Sendable {
    public struct Latest: Sendable {
        public var snapshot: RelaySnapshot?
        /// `MonotonicClock` nanoseconds of the last publish.
        public var publishedAt: UInt64 = 0
        public var stopped = false
    }

    public let index: Int
    private let state = Mutex(Latest())

    init(index: Int) { self.index = index }

    public func publish(_ snapshot: RelaySnapshot) {
        let now = MonotonicClock.nanoseconds()
        state.withLock {
            $0.snapshot = snapshot
            $0.publishedAt = now
        }
    }

    /// The worker ended (its last snapshot stays readable).
    public func markStopped() {
        state.withLock { $0.stopped = true }
    }

    public var latest: Latest { state.withLock { $0 } }
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the readiness check ages snapshots with).
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
