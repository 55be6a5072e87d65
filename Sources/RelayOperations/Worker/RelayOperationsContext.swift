import CoreMetrics
import RelayCore
import RelayIO
import Synchronization

/// Everything the operations side shares with the workers of one relay process: the board that
/// reads their reports, the exporter, readiness, and the reload mailbox. The executable makes
/// one, builds each worker's processor through `makeProcessor`, starts the runtime with
/// `reloads`, and `attach`es it.
public final class RelayOperationsContext: Sendable {
    public let board = MetricsBoard()
    public let metrics: RelayMetrics
    public let readiness = Readiness()
    /// Updates for every worker's `Server` (SIGHUP, the portal); pass it to `RelayRuntime.start`.
    public let reloads = ReloadMailbox<TURNReload>()
    /// A worker that has not published for this long is considered stuck (not ready).
    public let stalenessLimit: UInt64
    private let draining = DrainFlag()
    /// Whether the portal is connected, once a portal link registers (`attachPortal`).
    private let portalConnected = PortalCheck()

    /// - Parameter statisticsIntervalNanoseconds: the workers' `WorkerConfiguration.statisticsIntervalNanoseconds`;
    ///   a worker silent for five intervals (at least 5 s) is not ready.
    public init(additionalFactories: [any MetricsFactory] = [], statisticsIntervalNanoseconds: UInt64 = 1_000_000_000) {
        metrics = RelayMetrics(additionalFactories: additionalFactories)
        stalenessLimit = max(5_000_000_000, statisticsIntervalNanoseconds * 5)
        metrics.addSource(board)
        metrics.addSource { [board, stalenessLimit, portalConnected] in
            let portal = portalConnected.check
            return [RelaySnapshot(ProcessHealth(
                workersNotPublishing: board.workersNotPublishing(maxAge: stalenessLimit),
                portalConfigured: portal == nil ? 0 : 1, portalConnected: portal?() == true ? 1 : 0))]
        }
        readiness.set("workers") { [board, stalenessLimit] in board.allWorkersAlive(maxAge: stalenessLimit) }
        readiness.set("not draining") { [draining] in !draining.isSet }
    }

    /// The processor for a worker, wrapping its `Server`. Call on the worker's thread.
    public func makeProcessor(worker index: Int, server: Server) -> InstrumentedServer {
        InstrumentedServer(server: server)
    }

    /// The runtime's workers are summed for /metrics and watched by /readyz from now on.
    public func attach(_ runtime: RelayRuntime) { board.attach(runtime) }

    /// The XDP fast path's counters are summed for /metrics from now on, and /readyz says where
    /// it is attached.
    public func attach(xdp: XDPFastPath) {
        metrics.addSource { [RelaySnapshot(xdp.counters)] }
        readiness.note("xdp", xdp.status)
    }

    /// A portal link: `/readyz` checks it ("portal") and `/metrics` reports it
    /// (`relay_portal_configured`, `relay_portal_connected`).
    public func attachPortal(isConnected: @escaping @Sendable () -> Bool) {
        portalConnected.check = isConnected
        readiness.set("portal", isConnected)
    }

    /// /readyz's `xdp:` line when the fast path is off or failed (e.g. "off", "failed: ...").
    public func noteXDP(_ status: String) { readiness.note("xdp", status) }

    /// From now on `/readyz` answers 503: a load balancer or orchestrator stops sending new
    /// clients while existing allocations drain.
    public func markDraining() { draining.set() }
}

private final class PortalCheck: Sendable {
    private let value = Mutex<(@Sendable () -> Bool)?>(nil)
    var check: (@Sendable () -> Bool)? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

private final class DrainFlag: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
