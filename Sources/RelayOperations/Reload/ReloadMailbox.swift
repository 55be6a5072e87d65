import RelayCore
import Synchronization

/// Carries a new set of credentials and peer policy (SIGHUP) from the thread that read them to
/// every worker, without stopping anything: the poster stores the update under a lock and bumps
/// a generation number; each worker, on its own thread, compares that number with the last one
/// it applied (one atomic load per loop) and takes the update when it changed. The update is an
/// immutable value, so every worker gets the same one and nothing is shared mutably.
public final class ReloadMailbox: Sendable {
    public struct Update: Sendable {
        public var generation: UInt64
        public var credentials: CredentialStore
        public var peerPolicy: PeerPolicy
    }

    private let generation = Atomic<UInt64>(0)
    private let latest = Mutex<Update?>(nil)
    private let applied: Mutex<[Int: UInt64]>

    public init() {
        applied = Mutex([:])
    }

    /// Posts an update; returns its generation.
    @discardableResult
    public func post(credentials: CredentialStore, peerPolicy: PeerPolicy) -> UInt64 {
        latest.withLock { slot in
            let next = (slot?.generation ?? 0) &+ 1
            slot = Update(generation: next, credentials: credentials, peerPolicy: peerPolicy)
            generation.store(next, ordering: .releasing)
            return next
        }
    }

    public var currentGeneration: UInt64 { generation.load(ordering: .acquiring) }

    /// A worker's view; starts having seen everything posted so far (the worker was built with
    /// the current configuration).
    public func receiver(worker: Int) -> Receiver {
        Receiver(mailbox: self, worker: worker, seen: currentGeneration)
    }

    /// The generation each worker has applied (for logging "reloaded on all workers" and tests).
    public func appliedGenerations() -> [Int: UInt64] { applied.withLock { $0 } }

    fileprivate func take(after seen: UInt64) -> Update? {
        guard generation.load(ordering: .acquiring) != seen else { return nil }
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

        /// The update to apply, if one was posted since the last call; at most one atomic load
        /// when there is none.
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
