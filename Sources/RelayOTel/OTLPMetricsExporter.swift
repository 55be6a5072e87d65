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
///
/// A collector that fails: swift-otel exports one batch per interval, one at a time, each bounded
/// by the export timeout (gRPC retries within it), and drops a batch that fails; it queues nothing.
/// It tells no one but its diagnostic logger ("Failed to export metrics.", a warning), so that
/// logger is wrapped here to count those warnings: `failedExports`. Successes are not reported at all.
public final class OTLPMetricsExporter: Sendable {
    public struct Settings: Sendable {
        /// `host:port` (becomes `http://host:port`) or a full `http://` / `https://` URL.
        public var endpoint: String
        public var serviceInstanceID: String?
        public var exportInterval: Duration = .seconds(10)
        public var exportTimeout: Duration = .seconds(5)

        /// The interval and timeout come from `OTEL_METRIC_EXPORT_INTERVAL` and
        /// `OTEL_METRIC_EXPORT_TIMEOUT` (milliseconds) when set, as swift-otel reads them.
        public init(endpoint: String, serviceInstanceID: String? = nil, environment: [String: String] = [:]) {
            self.endpoint = endpoint
            self.serviceInstanceID = serviceInstanceID
            if let ms = environment["OTEL_METRIC_EXPORT_INTERVAL"].flatMap(Int64.init), ms > 0 {
                exportInterval = .milliseconds(ms)
            }
            if let ms = environment["OTEL_METRIC_EXPORT_TIMEOUT"].flatMap(Int64.init), ms > 0 {
                exportTimeout = .milliseconds(ms)
            }
        }

        var url: String {
            endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") ? endpoint : "http://" + endpoint
        }
    }

    public let factory: any MetricsFactory
    private let service: any Service
    private let settings: Settings
    private let tasks = Mutex<[Task<Void, Never>]>([])
    private let failures = ExportFailures()

    /// Exports that failed or timed out since start.
    public var failedExports: Int { failures.count }

    public init(_ settings: Settings, logger: Logger = Logger(label: "turn-relay.otel")) throws {
        var configuration = OTel.Configuration.default
        configuration.serviceName = "turn-relay"
        if let id = settings.serviceInstanceID { configuration.resourceAttributes["service.instance.id"] = id }
        let failures = self.failures
        configuration.diagnosticLogger = .custom(Logger(label: logger.label) { _ in
            ExportFailureCountingHandler(wrapped: logger.handler, failures: failures)
        })
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

/// The count of failed exports, shared between the exporter and its diagnostic log handler.
final class ExportFailures: Sendable {
    private let value = Atomic<Int>(0)
    var count: Int { value.load(ordering: .relaxed) }
    func add() { value.add(1, ordering: .relaxed) }
}

/// swift-otel's diagnostic log handler: passes every message on to the relay's own handler, and
/// counts the periodic metrics reader's "Failed to export metrics." warning (emitted once per export
/// that threw or timed out, `OTelPeriodicExportingMetricsReader.tick()`).
struct ExportFailureCountingHandler: LogHandler {
    static let failureMessage = "Failed to export metrics."

    var wrapped: any LogHandler
    let failures: ExportFailures

    func log(event: LogEvent) {
        if event.level >= .warning, event.message.description == Self.failureMessage { failures.add() }
        wrapped.log(event: event)
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }
}
