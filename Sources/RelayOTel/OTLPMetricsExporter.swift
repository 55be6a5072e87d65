import CoreMetrics
import Logging
import OTel
import RelayOperations
import ServiceLifecycle
import Synchronization

/// OTLP/gRPC export of the relay's metrics through swift-otel.
///
/// swift-otel's metrics backend is a swift-metrics factory plus a background service that reads
/// and exports periodically. `RelayMetrics` is given the factory (beside Prometheus), so the same
/// instruments feed both; this exporter runs the service and calls `RelayMetrics.update()` on a
/// schedule, so the workers' latest snapshots reach the OTel instruments before each export.
///
/// Resource attributes: `service.name` defaults to `turn-relay`; `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` override and extend it (swift-otel applies the environment after
/// this configuration); `serviceInstanceID` adds `service.instance.id`.
public final class OTLPMetricsExporter: Sendable {
    public struct Settings: Sendable {
        /// `host:port` (becomes `http://host:port`) or a full `http://` / `https://` URL.
        public var endpoint: String
        public var serviceInstanceID: String?
        public var exportInterval: Duration = .seconds(10)
        public var exportTimeout: Duration = .seconds(5)

        public init(endpoint: String, serviceInstanceID: String? = nil) {
            self.endpoint = endpoint
            self.serviceInstanceID = serviceInstanceID
        }

        var url: String {
            endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") ? endpoint : "http://" + endpoint
        }
    }

    public let factory: any MetricsFactory
    private let service: any Service
    private let settings: Settings
    private let tasks = Mutex<[Task<Void, Never>]>([])

    public init(_ settings: Settings, logger: Logger = Logger(label: "turn-relay.otel")) throws {
        var configuration = OTel.Configuration.default
        configuration.serviceName = "turn-relay"
        if let id = settings.serviceInstanceID { configuration.resourceAttributes["service.instance.id"] = id }
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.traces.enabled = false
        configuration.logs.enabled = false
        configuration.metrics.enabled = true
        configuration.metrics.exporter = .otlp
        configuration.metrics.exportInterval = settings.exportInterval
        configuration.metrics.exportTimeout = settings.exportTimeout
        configuration.metrics.otlpExporter.protocol = .grpc
        configuration.metrics.otlpExporter.endpoint = settings.url
        let backend = try OTel.makeMetricsBackend(configuration: configuration)
        factory = backend.factory
        service = backend.service
        self.settings = settings
    }

    /// Starts exporting: the swift-otel service, and a loop that refreshes `metrics` a little more
    /// often than the export interval.
    public func start(updating metrics: RelayMetrics) {
        let service = self.service
        let refresh = settings.exportInterval / 2
        let exporting = Task {
            do { try await service.run() } catch {}
        }
        let updating = Task {
            while !Task.isCancelled {
                metrics.update()
                try? await Task.sleep(for: refresh)
            }
        }
        tasks.withLock { $0 += [exporting, updating] }
    }

    /// Stops exporting.
    public func stop() {
        let running = tasks.withLock { tasks -> [Task<Void, Never>] in
            defer { tasks = [] }
            return tasks
        }
        for task in running { task.cancel() }
    }
}
