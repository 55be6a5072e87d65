import Glibc
import RelayCore
import Synchronization

/// The only state a worker shares with other threads: stop/drain requests, the eventfd that wakes
/// its loop, and the report it publishes about once a second. Reloads come through a
/// `ReloadMailbox`, whose posts wake the loop through `wake()`.
final class WorkerControl: Sendable {
    static let drainFlag = 1
    static let stopFlag = 2

    let requests = Atomic<Int>(0)
    let wakeFD: Int32
    let published = Mutex(WorkerReport())

    init(wakeFD: Int32) { self.wakeFD = wakeFD }

    deinit { Glibc.close(wakeFD) }

    var flags: Int { requests.load(ordering: .acquiring) }

    func request(_ flag: Int) {
        requests.bitwiseOr(flag, ordering: .releasing)
        wake()
    }

    /// Ends the loop's current wait.
    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    func publish(_ report: WorkerReport) {
        published.withLock { $0 = report }
    }
}
