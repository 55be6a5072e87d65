import Glibc
import RelayCore
import RelayIO
import Synchronization

/// Where operations reads the workers' counters: the `WorkerReport` each worker of the attached
/// runtimes published last (`WorkerHandle.report`, written by the worker about once a second
/// under its own lock). The counters themselves stay plain integers in the worker and are never
/// read by another thread: only the published copies are shared. A scrape sums them.
public final class MetricsBoard: Sendable {
    private let runtimes = Mutex<[RelayRuntime]>([])

    public init() {}

    /// From now on the workers of `runtime` are summed and watched.
    public func attach(_ runtime: RelayRuntime) {
        runtimes.withLock { $0.append(runtime) }
    }

    /// The latest report of every worker that has published.
    public func reports() -> [WorkerReport] {
        runtimes.withLock { $0 }.flatMap(\.reports).filter { $0.publishedAt != nil }
    }

    /// The latest snapshot of every worker that has published.
    public func snapshots() -> [RelaySnapshot] {
        reports().map(RelaySnapshot.init)
    }

    /// Workers of the attached runtimes that have not published within `maxAge` nanoseconds, or
    /// have stopped.
    public func workersNotPublishing(maxAge: UInt64) -> Int {
        runtimes.withLock { $0 }.reduce(0) { total, runtime in
            let now = runtime.clock.now()
            return total + runtime.reports.filter { report in
                guard let at = report.publishedAt, !report.stopped else { return true }
                return now.nanoseconds &- at.nanoseconds > maxAge
            }.count
        }
    }

    /// True when every worker has published within `maxAge` nanoseconds and none has stopped: each
    /// publishes every statistics interval even when idle, so a silent worker is stuck or dead.
    public func allWorkersAlive(maxAge: UInt64) -> Bool {
        let attached = runtimes.withLock { $0 }
        guard !attached.isEmpty else { return false }
        return attached.allSatisfy { runtime in
            let now = runtime.clock.now()
            return !runtime.workers.isEmpty && runtime.reports.allSatisfy { report in
                guard let at = report.publishedAt, !report.stopped else { return false }
                return now.nanoseconds &- at.nanoseconds <= maxAge
            }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
public enum MonotonicClock {
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
