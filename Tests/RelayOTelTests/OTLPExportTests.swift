import Foundation
import Glibc
import RelayOperations
import RelayOTel
@testable import OperationsTestSupport
import Testing

/// The metrics reach a real OTLP/gRPC receiver: `otlp_receiver.py` (grpcio + opentelemetry-proto,
/// installed by `make test`) serves the collector's MetricsService and writes every
/// ExportMetricsServiceRequest it gets to a file, which this test reads back.
@Suite(.serialized) struct OTLPExportTests {
    @Test func metricsArriveAtARealOTLPReceiver() async throws {
        let receiver = try ReceiverProcess.start()
        defer { receiver.stop() }

        setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=relay-test", 1)
        unsetenv("OTEL_SERVICE_NAME")
        var settings = OTLPMetricsExporter.Settings(endpoint: "127.0.0.1:\(receiver.port)", serviceInstanceID: "relay-a")
        settings.exportInterval = .milliseconds(300)
        let exporter = try OTLPMetricsExporter(settings)
        let board = SnapshotSlots(count: 2)
        let metrics = RelayMetrics(additionalFactories: [exporter.factory])
        metrics.addSource { board.snapshots() }
        var a = RelaySnapshot(), b = RelaySnapshot()
        a[series("relay_relayed_packets_total", ["direction": "client_to_peer", "datapath": "userspace"])] = 40
        b[series("relay_relayed_packets_total", ["direction": "client_to_peer", "datapath": "userspace"])] = 2
        a[series("relay_allocations_active", ["family": "ipv4"])] = 3
        b[series("relay_drops_total", ["reason": "no_permission"])] = 7
        // The XDP fast path's series go the same way.
        b[series("relay_relayed_packets_total", ["direction": "client_to_peer", "datapath": "xdp"])] = 5
        b[series("relay_xdp_route_map_full_total")] = 4
        board.publish(0, a)
        board.publish(1, b)
        exporter.start(updating: metrics)
        defer { exporter.stop() }

        var found: [String: Double] = [:]
        var resource: [String: String] = [:]
        let arrived = await pollAsync(seconds: 60) {
            (found, resource) = receiver.received()
            return found["relay_relayed_packets_total|datapath=userspace,direction=client_to_peer"] == 42
                && found["relay_allocations_active|family=ipv4"] == 3
                && found["relay_drops_total|reason=no_permission"] == 7
                && found["relay_relayed_packets_total|datapath=xdp,direction=client_to_peer"] == 5
                && found["relay_xdp_route_map_full_total"] == 4
        }
        #expect(arrived, "received: \(found.filter { $0.value != 0 })")
        #expect(resource["service.name"] == "turn-relay")
        #expect(resource["service.instance.id"] == "relay-a")
        #expect(resource["deployment.environment"] == "relay-test")

        // A later snapshot is exported as the new total.
        a[series("relay_relayed_packets_total", ["direction": "client_to_peer", "datapath": "userspace"])] = 100
        board.publish(0, a)
        let updated = await pollAsync(seconds: 60) {
            (found, resource) = receiver.received()
            return found["relay_relayed_packets_total|datapath=userspace,direction=client_to_peer"] == 102
        }
        #expect(updated)
    }
}

func pollAsync(seconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return condition()
}

/// The Python receiver as a child process, bounded by its own --seconds and killed on stop.
final class ReceiverProcess: @unchecked Sendable {
    let process: Process
    let port: Int
    let output: URL

    static func start() throws -> ReceiverProcess {
        let python = ProcessInfo.processInfo.environment["PYTHON"] ?? "python3"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("otlp_receiver.py")
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-\(UUID().uuidString).jsonl")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, script.path, "--output", output.path, "--seconds", "120"]
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // The first line is "PORT <n>"; a missing grpcio/opentelemetry-proto ends the process instead.
        var line = Data()
        let handle = stdout.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5).prefix { $0.isNumber }) else {
            process.terminate()
            let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            Issue.record("the OTLP receiver did not start (run `make test` to install grpcio and opentelemetry-proto): \(errors)")
            throw CancellationError()
        }
        return ReceiverProcess(process: process, port: port, output: output)
    }

    init(process: Process, port: Int, output: URL) {
        self.process = process
        self.port = port
        self.output = output
    }

    func stop() {
        // SIGKILL: grpcio's threads can keep a SIGTERMed Python waiting for its --seconds bound.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: output)
    }

    /// The latest value of every data point received, keyed `name|attr=value,...`, and the
    /// resource attributes.
    func received() -> ([String: Double], [String: String]) {
        var values: [String: Double] = [:]
        var resource: [String: String] = [:]
        guard let data = try? Data(contentsOf: output) else { return (values, resource) }
        for line in data.split(separator: UInt8(ascii: "\n")) {
            guard let request = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { continue }
            for rm in request["resourceMetrics"] as? [[String: Any]] ?? [] {
                let attributes = (rm["resource"] as? [String: Any])?["attributes"] as? [[String: Any]] ?? []
                for attribute in attributes {
                    if let key = attribute["key"] as? String,
                       let value = (attribute["value"] as? [String: Any])?["stringValue"] as? String {
                        resource[key] = value
                    }
                }
                for sm in rm["scopeMetrics"] as? [[String: Any]] ?? [] {
                    for metric in sm["metrics"] as? [[String: Any]] ?? [] {
                        guard let name = metric["name"] as? String else { continue }
                        let body = (metric["sum"] ?? metric["gauge"]) as? [String: Any]
                        for point in body?["dataPoints"] as? [[String: Any]] ?? [] {
                            let labels = (point["attributes"] as? [[String: Any]] ?? []).compactMap { a -> String? in
                                guard let key = a["key"] as? String,
                                      let value = (a["value"] as? [String: Any])?["stringValue"] as? String else { return nil }
                                return "\(key)=\(value)"
                            }.sorted().joined(separator: ",")
                            let value = (point["asInt"] as? String).flatMap(Double.init) ?? point["asDouble"] as? Double
                            if let value { values[labels.isEmpty ? name : "\(name)|\(labels)"] = value }
                        }
                    }
                }
            }
        }
        return (values, resource)
    }
}
