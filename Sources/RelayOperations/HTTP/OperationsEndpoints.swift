import STUN

/// The routes of the operations HTTP listeners.
///
/// - `GET /healthz`: 200 while the process is alive (the HTTP thread answering is the proof).
/// - `GET /readyz`: 200 when every `Readiness` check passes, else 503 naming the failing checks;
///   then the readiness notes (e.g. `xdp: attached on eth0 (native mode)`).
/// - `GET /metrics`: the Prometheus text exposition of `RelayMetrics` (when this listener serves it).
public enum OperationsEndpoints {
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    public static func handler(metrics: RelayMetrics?, readiness: Readiness?, version: String)
        -> HTTPEndpointServer.Handler {
        return { request in
            switch request.path {
            case "/healthz":
                return HTTPResponse(status: 200, body: "ok\n")
            case "/readyz":
                guard let readiness else { break }
                let failing = readiness.failing()
                let notes = readiness.noteLines
                if failing.isEmpty { return HTTPResponse(status: 200, body: "ready \(version)\n" + notes) }
                return HTTPResponse(status: 503, body: "not ready: \(failing.joined(separator: ", "))\n" + notes)
            case "/metrics":
                guard let metrics else { break }
                return HTTPResponse(status: 200, contentType: prometheusContentType, body: metrics.prometheusText())
            default:
                break
            }
            return HTTPResponse(status: 404, body: "not found\n")
        }
    }
}

/// The health listener and the metrics listener, started together. When the metrics address is nil
/// or the same as the health address (with a fixed port), one listener serves all three paths;
/// `servesMetrics: false` leaves `/metrics` out entirely.
public final class OperationsServer: Sendable {
    public static let defaultHealthAddress = TransportAddress(ip: .v4(.loopback), port: 8080)
    public static let defaultMetricsAddress = TransportAddress(ip: .v4(.loopback), port: 9464)

    public let health: HTTPEndpointServer
    /// Nil when metrics share the health listener, or when their own listener could not bind.
    public let metricsListener: HTTPEndpointServer?
    /// Why the separate metrics listener is not serving: its address could not be bound. Health
    /// and readiness keep serving (an orchestrator must not restart a relay over its metrics port).
    public let metricsFailure: HTTPServerError?

    public init(healthAddress: TransportAddress = defaultHealthAddress,
                metricsAddress: TransportAddress? = defaultMetricsAddress,
                metrics: RelayMetrics, readiness: Readiness, version: String = "dev", servesMetrics: Bool = true,
                limits: HTTPEndpointServer.Limits = .init()) throws(HTTPServerError) {
        let shared = servesMetrics && (metricsAddress == nil || (metricsAddress == healthAddress && healthAddress.port != 0))
        health = try HTTPEndpointServer(
            address: healthAddress, limits: limits,
            handler: OperationsEndpoints.handler(metrics: shared ? metrics : nil, readiness: readiness, version: version))
        if servesMetrics, !shared, let metricsAddress {
            do throws(HTTPServerError) {
                metricsListener = try HTTPEndpointServer(
                    address: metricsAddress, limits: limits,
                    handler: OperationsEndpoints.handler(metrics: metrics, readiness: nil, version: version))
                metricsFailure = nil
            } catch {
                metricsListener = nil
                metricsFailure = error
            }
        } else {
            metricsListener = nil
            metricsFailure = nil
        }
    }

    /// Where /metrics is served, or nil when nowhere (`metricsFailure`).
    public var metricsAddress: TransportAddress? {
        if let metricsListener { return metricsListener.boundAddress }
        return metricsFailure == nil ? health.boundAddress : nil
    }

    public func stop() {
        health.stop()
        metricsListener?.stop()
    }
}
