import CoreMetrics
import RelayCore
import RelayIO
import RelayPortal
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
    /// Whether the portal is connected and what its channel counted, once a portal link
    /// registers (`attachPortal`).
    private let portalConnected = Registered<(isConnected: @Sendable () -> Bool, statistics: @Sendable () -> PortalStatistics)>()
    /// The OTLP exporter's failed exports, once it registers (`attachOTLP`).
    private let otlpFailures = Registered<@Sendable () -> Int>()

    /// - Parameter statisticsIntervalNanoseconds: the workers' `WorkerConfiguration.statisticsIntervalNanoseconds`;
    ///   a worker silent for five intervals (at least 5 s) is not ready.
    public init(additionalFactories: [any MetricsFactory] = [], statisticsIntervalNanoseconds: UInt64 = 1_000_000_000) {
        metrics = RelayMetrics(additionalFactories: additionalFactories)
        stalenessLimit = max(5_000_000_000, statisticsIntervalNanoseconds * 5)
        metrics.addSource(board)
        metrics.addSource { [board, stalenessLimit, portalConnected, otlpFailures] in
            let portal = portalConnected.check
            return [RelaySnapshot(ProcessHealth(
                workersNotPublishing: board.workersNotPublishing(maxAge: stalenessLimit),
                portalConfigured: portal == nil ? 0 : 1, portalConnected: portal?.isConnected() == true ? 1 : 0,
                portal: portal?.statistics() ?? PortalStatistics(), otlpExportFailures: otlpFailures.check?() ?? 0))]
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
    /// (`relay_portal_configured`, `relay_portal_connected`, and what its channel counted:
    /// `relay_portal_connection_losses_total`, `relay_portal_frames_discarded_total`).
    public func attachPortal(isConnected: @escaping @Sendable () -> Bool,
                             statistics: @escaping @Sendable () -> PortalStatistics) {
        portalConnected.check = (isConnected, statistics)
        readiness.set("portal", isConnected)
    }

    /// An OTLP exporter: `/metrics` (and OTLP) report its failed exports (`relay_otlp_export_failures_total`).
    public func attachOTLP(failedExports: @escaping @Sendable () -> Int) {
        otlpFailures.check = failedExports
    }

    /// /readyz's `xdp:` line when the fast path is off or failed (e.g. "off", "failed: ...").
    public func noteXDP(_ status: String) { readiness.note("xdp", status) }

    /// From now on `/readyz` answers 503: a load balancer or orchestrator stops sending new
    /// clients while existing allocations drain.
    public func markDraining() { draining.set() }
}

/// A reader registered once the component it reads exists (the portal link, the OTLP exporter).
private final class Registered<Reader: Sendable>: Sendable {
    private let value = Mutex<Reader?>(nil)
    var check: Reader? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

private final class DrainFlag: Sendable {
    private let value = Atomic(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}
