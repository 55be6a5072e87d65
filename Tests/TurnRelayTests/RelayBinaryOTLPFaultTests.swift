import Foundation
import Glibc
import RelayIO
import STUN
import Testing
import TestSupport
import TURNTestClient
@testable import OperationsTestSupport

/// The `turn-relay` binary exporting OTLP/gRPC to a collector that fails: one that accepts the
/// connection and never answers a call (`otlp_faulty_collector.py hang`: a real gRPC server), one
/// that never even completes the HTTP/2 preface (`silent`: a TCP listener that never reads), and a
/// closed port. Exports every 250 ms with a 150 ms timeout (`OTEL_METRIC_EXPORT_INTERVAL`,
/// `OTEL_METRIC_EXPORT_TIMEOUT`; the answering collector gets the default 5 s timeout): relaying and /metrics keep working, memory stays bounded over
/// dozens of failed exports, each is counted (`relay_otlp_export_failures_total`), and SIGTERM
/// still stops the relay promptly. A collector that answers (`otlp_receiver.py`) counts none.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryOTLPFaultTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    /// A collector child process (or, for `closed`, a port nobody listens on).
    final class Collector {
        let process: Process?
        let port: UInt16
        let output: URL?

        init(_ mode: String) throws {
            let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            let python = ProcessInfo.processInfo.environment["PYTHON"] ?? "python3"
            var arguments: [String]
            var output: URL?
            switch mode {
            case "closed":
                // A port that was free a moment ago: nothing listens there.
                let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, length) } }
                _ = withUnsafeMutablePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &length) }
                }
                close(probe)
                port = UInt16(bigEndian: address.sin_port)
                process = nil
                self.output = nil
                return
            case "answering":
                let file = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-\(UUID().uuidString).jsonl")
                FileManager.default.createFile(atPath: file.path, contents: nil)
                output = file
                arguments = [here.deletingLastPathComponent().appendingPathComponent("RelayOTelTests/otlp_receiver.py").path,
                             "--output", file.path, "--seconds", "120"]
            default:
                arguments = [here.appendingPathComponent("otlp_faulty_collector.py").path, mode, "--seconds", "120"]
            }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python] + arguments
            let stdout = Pipe()
            process.standardOutput = stdout
            process.standardError = FileHandle.nullDevice
            try process.run()
            // The first line is "PORT <n>"; a missing grpcio/opentelemetry-proto ends the process instead.
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = stdout.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("PORT "), let port = UInt16(text.dropFirst(5).prefix { $0.isNumber }) else {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                Issue.record("the \(mode) collector did not start (run `make test` to install grpcio and opentelemetry-proto): \(text)")
                throw CancellationError()
            }
            self.process = process
            self.port = port
            self.output = output
        }

        /// Export requests the answering collector received.
        var received: Int {
            guard let output, let data = try? Data(contentsOf: output) else { return 0 }
            return data.split(separator: UInt8(ascii: "\n")).count
        }

        deinit {
            if let process, process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            if let output { try? FileManager.default.removeItem(at: output) }
        }
    }

    /// VmRSS of `pid` in KiB.
    static func residentKiB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return Int(line.split(separator: " ").dropFirst().first ?? "")
    }

    @Test(.timeLimit(.minutes(2)), arguments: ["hang", "silent", "closed", "answering"])
    func aCollectorThatNeverAnswersCostsNothingButCountedFailures(collector mode: String) async throws {
        let collector = try Collector(mode)
        let port = try ListenPortClaims.freePort()
        let relay = try Relay(port: port, arguments: [
            "serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
            "--min-port", "50580", "--max-port", "50590", "--workers", "1", "--realm", "example.org",
            "--user", "alice:alice-pw", "--allow-peer", "127.0.0.0/8", "--health-check-addr", "none",
            "--metrics-addr", "127.0.0.1:0", "--drain-seconds", "0", "--otlp-grpc-endpoint", "127.0.0.1:\(collector.port)",
        ], environment: ["OTEL_METRIC_EXPORT_INTERVAL": "250"]
            // The short timeout makes a failing collector fail fast; the answering one keeps the
            // default (5 s): under ThreadSanitizer's slowdown an export to it took longer than
            // 150 ms and was counted as a failure, which says nothing about the collector.
            .merging(mode == "answering" ? [:] : ["OTEL_METRIC_EXPORT_TIMEOUT": "150"]) { $1 })
        var found: TransportAddress?
        _ = await eventually(.seconds(20)) {
            found = RelayBinaryReloadTests.address(after: "metrics=", in: relay.log)
            return found != nil
        }
        let metrics = try #require(found, "no endpoints line in the relay's log:\n\(relay.log)")
        func failures() -> Double? { (try? scrapeMetrics(metrics))?["relay_otlp_export_failures_total"] }

        let client = try TestTURNClient(server: TransportAddress(ip: .v4(.loopback), port: port),
                                        username: "alice", password: "alice-pw")
        let relayed = try #require(client.allocate()?.xorRelayedAddresses.first, "\(relay.log)")
        let peer = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        #expect(client.createPermission(peer: peer.localAddress)?.errorCode == nil)
        func relays(_ round: Int) -> Bool {
            let payload = Array("round \(round)".utf8)
            client.sendIndication(to: peer.localAddress, payload: payload)
            guard let (got, _) = peer.receive(timeoutMilliseconds: 2000), got == payload else { return false }
            peer.send(payload, to: relayed)
            return client.receive() == .dataIndication(peer: peer.localAddress, payload: payload)
        }

        if mode == "answering" {
            #expect(await eventually(.seconds(20)) { collector.received >= 8 }, "\(relay.log)")
            #expect(relays(1))
            #expect(failures() == 0, "\(relay.log)")
        } else {
            // Warmed up: a few exports have failed already (and the first traffic touched its buffers).
            #expect(await eventually(.seconds(20)) { (failures() ?? 0) >= 3 }, "\(relay.log)")
            let (before, rssBefore) = (failures() ?? 0, Self.residentKiB(relay.process.processIdentifier) ?? 0)
            // Eight seconds: 32 export intervals, each export given up after 150 ms.
            for round in 1...8 {
                #expect(relays(round), "round \(round)")
                #expect(failures() != nil, "/metrics did not answer")
                try await Task.sleep(for: .seconds(1))
            }
            let (after, rssAfter) = (failures() ?? 0, Self.residentKiB(relay.process.processIdentifier) ?? 0)
            #expect(after - before >= 10, "failed exports \(before) → \(after)")
            // Nothing queued per failed export: a generous bound (the relay's RSS is about 40 MiB).
            // Not under AddressSanitizer (`make test-sanitizers`): its quarantine keeps freed memory
            // resident (256 MiB by default), so RSS grows with any allocation churn.
            if ProcessInfo.processInfo.environment["ASAN_OPTIONS"] != nil {
                print("otlp \(mode): RSS bound not checked: the relay runs under AddressSanitizer (ASAN_OPTIONS is set)")
            } else {
                #expect(rssAfter - rssBefore < 16 * 1024, "VmRSS \(rssBefore) → \(rssAfter) KiB")
            }
            #expect(relay.log.contains("Failed to export metrics."))
            print("otlp \(mode): failed exports \(before) → \(after) over 8 s, VmRSS \(rssBefore) → \(rssAfter) KiB")
        }

        let stopping = ContinuousClock.now
        kill(relay.process.processIdentifier, SIGTERM)
        #expect(await relay.exited(within: .seconds(5)), "still running 5 s after SIGTERM:\n\(relay.log)")
        #expect(relay.process.terminationStatus == 0)
        print("otlp \(mode): stopped \(ContinuousClock.now - stopping) after SIGTERM")
    }
}
