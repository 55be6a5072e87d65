import Glibc
import Synchronization

/// The only state a worker shares with other threads: stop/drain requests, the eventfd that wakes
/// its loop, and the statistics it publishes about once a second.
final class WorkerControl: Sendable {
    static let drainFlag = 1
    static let stopFlag = 2

    let requests = Atomic<Int>(0)
    let wakeFD: Int32
    let published = Mutex(WorkerStatistics())

    init(wakeFD: Int32) { self.wakeFD = wakeFD }

    deinit { Glibc.close(wakeFD) }

    var flags: Int { requests.load(ordering: .acquiring) }

    func request(_ flag: Int) {
        requests.bitwiseOr(flag, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    func publish(_ statistics: WorkerStatistics) {
        published.withLock { $0 = statistics }
    }
}
