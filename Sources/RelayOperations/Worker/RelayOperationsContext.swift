import CoreMetrics
import RelayCore
import RelayIO
import Synchronization

/// Everything the operations side shares with the workers of one relay process: the metric slots,
/// the exporter, readiness, and the reload mailbox. The executable makes one, builds each worker's
/// processor through `makeProcessor`; each processor publishes its server's and its worker's
/// counters into its slot of `board`.
public final class RelayOperationsContext: Sendable {
    public let board: MetricsBoard
    public let metrics: RelayMetrics
    public let readiness = Readiness()
    public let reloads = ReloadMailbox()
    /// A worker that has not published for this long is considered stuck (not ready).
    public let stalenessLimit: UInt64
    private let publishInterval: UInt64
    private let heartbeat: UInt64
    private let draining = DrainFlag()

    public init(workers: Int, additionalFactories: [any MetricsFactory] = [],
                publishIntervalNanoseconds: UInt64 = 250_000_000, heartbeatNanoseconds: UInt64 = 1_000_000_000) {
        board = MetricsBoard(workers: workers)
        metrics = RelayMetrics(additionalFactories: additionalFactories)
        publishInterval = publishIntervalNanoseconds
        heartbeat = heartbeatNanoseconds
        stalenessLimit = max(5_000_000_000, heartbeatNanoseconds * 5)
        metrics.addSource(board)
        readiness.set("workers") { [board, stalenessLimit] in board.allWorkersAlive(maxAge: stalenessLimit) }
        readiness.set("not draining") { [draining] in !draining.isSet }
    }

    /// The processor for worker `index`, wrapping its `Server`. Call on the worker's thread.
    public func makeProcessor(worker index: Int, server: Server) -> InstrumentedServer {
        let slot = board.slots[min(max(0, index), board.slots.count - 1)]
        return InstrumentedServer(
            server: server,
            publisher: SnapshotPublisher(slot: slot, intervalNanoseconds: publishInterval, heartbeatNanoseconds: heartbeat),
            reloads: reloads.receiver(worker: index))
    }

    /// From now on `/readyz` answers 503: a load balancer or orchestrator stops sending new
    /// clients while existing allocations drain.
    public func markDraining() { draining.set() }
}

private final class DrainFlag: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
