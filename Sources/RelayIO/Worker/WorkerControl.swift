import Glibc
import RelayCore
import Synchronization

/// The only state a worker shares with other threads: stop/drain requests, the eventfd that wakes
/// its loop, and the statistics it publishes about once a second.
final class WorkerControl: Sendable {
    static let drainFlag = 1
    static let stopFlag = 2
    static let mailFlag = 4

    let requests = Atomic<Int>(0)
    let wakeFD: Int32
    let published = Mutex(WorkerStatistics())
    /// Work another thread asked to run on the worker's thread (configuration reloads and the
    /// like); bounded so a stuck worker cannot make it grow without limit.
    let mailbox = Mutex<[WorkerTask]>([])
    static let mailboxLimit = 64

    init(wakeFD: Int32) { self.wakeFD = wakeFD }

    deinit { Glibc.close(wakeFD) }

    var flags: Int { requests.load(ordering: .acquiring) }

    func request(_ flag: Int) {
        requests.bitwiseOr(flag, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Queues `task`; false when the mailbox is full.
    func post(_ task: @escaping WorkerTask) -> Bool {
        let accepted = mailbox.withLock { tasks -> Bool in
            guard tasks.count < Self.mailboxLimit else { return false }
            tasks.append(task)
            return true
        }
        if accepted { request(Self.mailFlag) }
        return accepted
    }

    func takeMail() -> [WorkerTask] {
        mailbox.withLock { tasks in
            defer { tasks.removeAll() }
            return tasks
        }
    }

    func clear(_ flag: Int) {
        requests.bitwiseAnd(~flag, ordering: .acquiringAndReleasing)
    }

    func publish(_ statistics: WorkerStatistics) {
        published.withLock { $0 = statistics }
    }
}

/// A closure run on a worker's thread with its processor; what it writes into the batch is sent.
public typealias WorkerTask = @Sendable (_ processor: any DatagramProcessor, _ now: RelayCore.Instant, _ out: OutboundBatch) -> Void
