import ArgumentParser
import RelayOperations
import STUN

/// The operations options: health/metrics listeners, the reloadable credentials file, OTLP export.
struct OperationsSettings {
    var healthAddress: TransportAddress?
    var metricsAddress: TransportAddress?
    var credentialsPath: String?
    /// The file's content as last read (at start-up, then on each SIGHUP).
    var credentialsFile: CredentialsFile?
    var otlpEndpoint: String?
    var serviceInstanceID: String?

    init(_ o: ServeCommand) throws {
        healthAddress = try Self.address(o.healthCheckAddr ?? Environment.string("HEALTH_CHECK_ADDR"),
                                         default: OperationsServer.defaultHealthAddress, option: "--health-check-addr")
        metricsAddress = try Self.address(o.metricsAddr ?? Environment.string("METRICS_ADDR"),
                                          default: OperationsServer.defaultMetricsAddress, option: "--metrics-addr")
        credentialsPath = o.credentialsFile ?? Environment.string("CREDENTIALS_FILE")
        if let path = credentialsPath {
            do throws(CredentialsFile.ParseError) {
                credentialsFile = try CredentialsFile.load(path: path)
            } catch {
                throw ValidationError("--credentials-file \(path): \(error)")
            }
        }
        otlpEndpoint = o.otlpGrpcEndpoint ?? Environment.string("OTLP_GRPC_ENDPOINT")
        serviceInstanceID = o.serviceInstanceId ?? Environment.string("SERVICE_INSTANCE_ID")
    }

    static func address(_ text: String?, default value: TransportAddress, option: String) throws -> TransportAddress? {
        guard let text else { return value }
        if text.lowercased() == "none" { return nil }
        guard let address = TransportAddress(text) else {
            throw ValidationError("\(option) \(text) is not an address:port (e.g. 127.0.0.1:8080 or [::1]:8080)")
        }
        return address
    }
}
