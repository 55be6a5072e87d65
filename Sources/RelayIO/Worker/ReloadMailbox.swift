import Synchronization

/// The one way configuration reaches running workers (SIGHUP's credentials and peer policy, the
/// portal's credentials): the poster stores the update under a lock, bumps a generation number
/// and wakes every subscribed worker; each worker, at the top of its loop and on its own thread,
/// compares that number with the last one it applied (one atomic load) and hands a newer update
/// to its processor (`DatagramProcessor.apply`). Latest wins: a worker that was busy while two
/// updates were posted applies only the second. The update is an immutable value, so every
/// worker gets the same one and nothing is shared mutably.
public final class ReloadMailbox<Value: Sendable>: Sendable {
    public struct Update: Sendable {
        public var generation: UInt64
        public var value: Value
    }

    /// The generation last posted; shared with every receiver as a plain object so that a worker
    /// can check it without the mailbox's generic type (`Receiver.posted`).
    private let generation = ReloadGeneration()
    private let latest = Mutex<Update?>(nil)
    private let applied = Mutex<[Int: UInt64]>([:])
    private let wakers = Mutex<[@Sendable () -> Void]>([])

    public init() {}

    /// Posts an update and wakes the workers; returns its generation.
    @discardableResult
    public func post(_ value: Value) -> UInt64 {
        let next = latest.withLock { slot in
            let next = (slot?.generation ?? 0) &+ 1
            slot = Update(generation: next, value: value)
            generation.value.store(next, ordering: .releasing)
            return next
        }
        for wake in wakers.withLock({ $0 }) { wake() }
        return next
    }

    public var currentGeneration: UInt64 { generation.current }

    /// A worker's view; starts having seen everything posted so far (the worker is built with the
    /// current configuration). `wake` is called on every later post (a worker's eventfd).
    public func receiver(worker: Int, wake: (@Sendable () -> Void)? = nil) -> Receiver {
        if let wake { wakers.withLock { $0.append(wake) } }
        return Receiver(mailbox: self, worker: worker, seen: currentGeneration)
    }

    /// The generation each worker has applied (for logging "reloaded on all workers" and tests).
    public func appliedGenerations() -> [Int: UInt64] { applied.withLock { $0 } }

    fileprivate func take(after seen: UInt64) -> Update? {
        guard generation.current != seen else { return nil }
        return latest.withLock { $0 }
    }

    fileprivate func acknowledge(worker: Int, generation: UInt64) {
        applied.withLock { $0[worker] = generation }
    }

    /// Owned by one worker thread.
    public struct Receiver: Sendable {
        let mailbox: ReloadMailbox
        public let worker: Int
        public private(set) var seen: UInt64

        /// The mailbox's posted generation, to compare with `seen` before `poll`: a caller that
        /// holds the receiver under an unspecialized generic type (a worker generic over its
        /// processor) pays, in `poll`, for looking up the metadata of the update's type; this
        /// check is one atomic load whatever the type.
        public var posted: ReloadGeneration { mailbox.generation }

        /// The update to apply, if one was posted since the last call; one atomic load when
        /// there is none.
        @inline(__always)
        public mutating func poll() -> Update? {
            guard let update = mailbox.take(after: seen) else { return nil }
            seen = update.generation
            return update
        }

        public func acknowledge(_ update: Update) {
            mailbox.acknowledge(worker: worker, generation: update.generation)
        }
    }
}

/// The generation a `ReloadMailbox` has posted, readable without the mailbox's generic type.
public final class ReloadGeneration: Sendable {
    fileprivate let value = Atomic<UInt64>(0)

    /// One atomic load.
    @inline(__always) public var current: UInt64 { value.load(ordering: .acquiring) }
}
