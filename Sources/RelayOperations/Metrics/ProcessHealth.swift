import RelayCore

/// What the process knows about itself that no worker counts: workers that stopped publishing
/// (stuck or dead: each publishes every statistics interval even when idle) and the portal
/// connection. Read at every scrape and export, like the workers' snapshots.
public struct ProcessHealth: Sendable, Equatable {
    /// Workers whose last report is older than the staleness limit, or that stopped.
    public var workersNotPublishing = 0
    /// 1 when a portal token is configured (`--token`), else 0.
    public var portalConfigured = 0
    /// 1 while the portal channel is connected, joined and initialised, else 0.
    public var portalConnected = 0

    public init(workersNotPublishing: Int = 0, portalConfigured: Int = 0, portalConnected: Int = 0) {
        self.workersNotPublishing = workersNotPublishing
        self.portalConfigured = portalConfigured
        self.portalConnected = portalConnected
    }
}

extension MetricFamily {
    static let workersNotPublishing = MetricFamily(
        "relay_workers_not_publishing", .gauge,
        help: "Workers that have not published their counters within the staleness limit (5 statistics intervals, at least 5 s) or have stopped: stuck or dead (/readyz says not ready).")
    static let portalConfigured = MetricFamily(
        "relay_portal_configured", .gauge, help: "1 when a portal token is configured (Firezone-compatible portal mode), else 0.")
    static let portalConnected = MetricFamily(
        "relay_portal_connected", .gauge,
        help: "1 while the portal channel is connected, joined and initialised, else 0 (with relay_portal_configured: the portal is down).")
}

extension ProcessHealth {
    /// Every series the process itself exports, in export order.
    public static let metrics: [MetricSeries<ProcessHealth>] = {
        typealias F = MetricFamily
        return [
            F.workersNotPublishing.series(value: { $0.workersNotPublishing }),
            F.portalConfigured.series(value: { $0.portalConfigured }),
            F.portalConnected.series(value: { $0.portalConnected }),
        ]
    }()
}
