import Foundation
import Testing

/// A task executor with one thread of its own.
///
/// Swift Testing runs every test, synchronous ones included, on Swift's cooperative thread pool,
/// which has one thread per core. A test that blocks (waits for a child process, polls a socket
/// with `usleep`, or computes for tens of seconds) holds one of those threads for as long as it
/// runs; on a 2-core machine two such tests leave nothing for the async work of the others (an
/// OTLP export loop, an HTTP client), which then stalls for as long as they block. Tests given
/// the `.dedicatedThread` trait run on a thread of their own instead.
public final class DedicatedThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` and `stopping` are only touched with `condition` locked.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false

    public init() {
        let thread = Thread { [self] in run() }
        thread.stackSize = 8 << 20
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Lets the thread end once the jobs already queued have run.
    public func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        pthread_setspecific(dedicatedThreadKey, UnsafeRawPointer(bitPattern: 1))
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

/// Runs each test case of the test or suite it is given to on a `DedicatedThreadExecutor`.
/// The test stays the same task, so its expectations and issues are recorded as usual.
public struct DedicatedThreadTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else { return try await function() }
        let executor = DedicatedThreadExecutor()
        defer { executor.shutdown() }
        try await withTaskExecutorPreference(executor) { try await function() }
    }
}

extension Trait where Self == DedicatedThreadTrait {
    /// Run on a thread of its own, not on the cooperative pool (for tests that block or compute
    /// for seconds).
    public static var dedicatedThread: Self { DedicatedThreadTrait() }
}

/// Marks the threads of `DedicatedThreadExecutor`s (a thread-specific value; a thread's name would
/// not do: Linux threads inherit their creator's).
private let dedicatedThreadKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
}()

/// Whether the caller runs on a `DedicatedThreadExecutor`'s thread (not on the cooperative pool).
public func isOnDedicatedThread() -> Bool { pthread_getspecific(dedicatedThreadKey) != nil }
