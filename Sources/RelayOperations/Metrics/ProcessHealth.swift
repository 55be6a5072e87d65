import RelayCore
import RelayPortal

/// What the process knows about itself that no worker counts: workers that stopped publishing
/// (stuck or dead: each publishes every statistics interval even when idle), the portal
/// connection (its state and what its channel counted) and the OTLP export. Read at every scrape
/// and export, like the workers' snapshots.
public struct ProcessHealth: Sendable, Equatable {
    /// Workers whose last report is older than the staleness limit, or that stopped.
    public var workersNotPublishing = 0
    /// 1 when a portal token is configured (`--token`), else 0.
    public var portalConfigured = 0
    /// 1 while the portal channel is connected, joined and initialised, else 0.
    public var portalConnected = 0
    /// Portal connections lost and portal frames discarded, as the sans-IO channel counted them.
    public var portal = PortalStatistics()
    /// OTLP exports that failed (swift-otel's "Failed to export metrics." warnings).
    public var otlpExportFailures = 0

    public init(workersNotPublishing: Int = 0, portalConfigured: Int = 0, portalConnected: Int = 0,
                portal: PortalStatistics = PortalStatistics(), otlpExportFailures: Int = 0) {
        self.workersNotPublishing = workersNotPublishing
        self.portalConfigured = portalConfigured
        self.portalConnected = portalConnected
        self.portal = portal
        self.otlpExportFailures = otlpExportFailures
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
    static let portalConnectionLosses = MetricFamily(
        "relay_portal_connection_losses_total", .counter, labels: ["reason"],
        help: "Portal connections (or attempts) lost, by reason: connect_failed (never became a WebSocket), closed (by the portal or the network), frame_rejected (the WebSocket layer refused a frame, e.g. over 64 KiB, and closed), join_timeout, heartbeat_timeout (the portal stopped answering), channel_error (phx_error/phx_close). Each is followed by a reconnect.")
    static let portalFramesDiscarded = MetricFamily(
        "relay_portal_frames_discarded_total", .counter, labels: ["reason"],
        help: "Frames from the portal the relay did not act on: malformed (not a Phoenix v2 frame), ignored (an unknown topic or event, a reply to nothing asked), binary.")
    static let otlpExportFailures = MetricFamily(
        "relay_otlp_export_failures_total", .counter,
        help: "OTLP metric exports that failed or timed out (counted from swift-otel's diagnostic warnings; successes are not observable).")
}

extension ProcessHealth {
    /// Every series the process itself exports, in export order.
    public static let metrics: [MetricSeries<ProcessHealth>] = {
        typealias F = MetricFamily
        var series: [MetricSeries<ProcessHealth>] = [
            F.workersNotPublishing.series(value: { $0.workersNotPublishing }),
            F.portalConfigured.series(value: { $0.portalConfigured }),
            F.portalConnected.series(value: { $0.portalConnected }),
        ]
        for loss in PortalStatistics.Loss.allCases {
            series.append(F.portalConnectionLosses.series(loss.rawValue, value: { $0.portal[loss] }))
        }
        for kind in PortalStatistics.Discard.allCases {
            series.append(F.portalFramesDiscarded.series(kind.rawValue, value: { $0.portal[kind] }))
        }
        series.append(F.otlpExportFailures.series(value: { $0.otlpExportFailures }))
        return series
    }()
}
