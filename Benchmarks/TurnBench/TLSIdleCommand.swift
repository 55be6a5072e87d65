import ArgumentParser
import Foundation
import STUN
import TurnBenchKit

struct TLSIdle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-idle",
        abstract: "Hold many idle TURN-over-TLS connections; the relay's resident memory per connection.",
        discussion: """
        Makes a self-signed P-256 certificate in --out, starts turn-relay with
        TLS (and coturn after it, unless --coturn none), and opens --connections
        TLS connections (ALPN stun.turn) from 127.0.0.2 ... 127.0.0.(1+--sources),
        one after another: each completes its handshake and, unless
        --no-binding, one Binding request. Then it holds them idle for
        --hold-seconds and reports the server's VmRSS (/proc/PID/status) before
        connecting, after, and at the end of the hold; bytes per connection =
        (RSS at the end of the hold − RSS before) ÷ connections held; and, for
        turn-relay, relay_stream_connections_open{transport="tls"} from its
        metrics, which should equal the count. The load generator keeps only
        each connection's descriptor (its own TLS state is freed).
        Files in --out: tls-idle.json, tls-idle.md, the certificate, the logs.
        """
    )

    @Option(help: "turn-relay executable (default: next to turn-bench). 'none' to leave it out.")
    var relay: String?

    @Option(help: "coturn's turnserver executable. 'none' to leave it out.")
    var coturn: String = "/usr/bin/turnserver"

    @Option(help: "TLS connections to open and hold.")
    var connections: Int = 10_000

    @Option(help: "Loopback source addresses to spread them over (127.0.0.2 and up, at most 254).")
    var sources: Int = 254

    @Option(help: "Seconds to hold them idle before the final measurement.")
    var holdSeconds: Double = 5

    @Flag(help: "Skip the Binding request on each connection.")
    var noBinding = false

    @Option(help: "TURN port (TLS on +2, turn-relay's metrics on +4).")
    var port: UInt16 = 34_990

    @Option(help: "Directory for tls-idle.json, tls-idle.md, the certificate and the logs.")
    var out: String = "tls-idle-results"

    @Flag(help: "No live progress on stderr.")
    var quiet = false

    func validate() throws {
        guard (1...1_000_000).contains(connections) else { throw ValidationError("--connections must be 1...1000000") }
        guard (1...254).contains(sources) else { throw ValidationError("--sources must be 1...254") }
        guard holdSeconds >= 0 && holdSeconds <= 600 else { throw ValidationError("--hold-seconds must be 0...600") }
    }

    func run() throws {
        let limit = raiseOpenFileLimit()
        if limit < UInt64(connections) + 100 {
            writeStandardError("open-file limit \(limit) is below --connections + 100: expect failures\n")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let outPath = URL(fileURLWithPath: out).standardizedFileURL.path
        let cert = try makeBenchCertificate(in: outPath)
        let common = ServerSpec.Common(secret: "bench-\(UInt32.random(in: 0...UInt32.max))", realm: "bench", threads: 1, logDirectory: outPath)
        var runs: [(ServerSpec, TransportAddress?)] = []
        let relayPath = relay ?? siblingExecutable("turn-relay")
        if relayPath != "none" {
            guard FileManager.default.isExecutableFile(atPath: relayPath) else { throw ValidationError("turn-relay not found at \(relayPath)") }
            let metrics = TransportAddress(ip: .v4(.loopback), port: port + 4)
            let perSource = (connections + sources - 1) / sources
            let spec = ServerSpec.turnRelay(executable: relayPath, template: ServerSpec.defaultTurnRelayTemplate, port: port,
                                            ports: 20000...24999, common: common)
                .setting("--metrics-addr", metrics.description)
                .setting("--max-connections", String(max(10_000, connections + 100)))
                .setting("--max-connections-per-source", String(max(100, perSource + 10)))
                .withTLS(port: port + 2, certificate: cert.certificate, key: cert.key)
            runs.append((spec, metrics))
        }
        if coturn != "none" && FileManager.default.isExecutableFile(atPath: coturn) {
            runs.append((ServerSpec.coturn(executable: coturn, port: port + 1, ports: 10000...19999, common: common)
                .withTLS(port: port + 3, certificate: cert.certificate, key: cert.key), nil))
        }
        guard !runs.isEmpty else { throw ValidationError("nothing to measure") }
        var results: [TLSIdleResult] = []
        var errors: [String] = []
        for (spec, metrics) in runs {
            var c = TLSIdleConfiguration(server: spec, outputDirectory: outPath)
            c.connections = connections
            c.sources = sources
            c.binding = !noBinding
            c.holdSeconds = holdSeconds
            c.metrics = metrics
            c.showProgress = !quiet
            do {
                results.append(try TLSIdleRunner.run(c))
            } catch {
                errors.append("\(spec.name): \(error)")
                writeStandardError("\(spec.name): \(error)\n")
            }
        }
        let report = TLSIdleReport(machine: Machine.current(), command: CommandLine.arguments.joined(separator: " "), results: results, errors: errors)
        try JSONResults.encode(report).write(to: URL(fileURLWithPath: outPath + "/tls-idle.json"), options: .atomic)
        let md = report.render()
        try Data(md.utf8).write(to: URL(fileURLWithPath: outPath + "/tls-idle.md"), options: .atomic)
        print(md)
        print("wrote \(outPath)/{tls-idle.json,tls-idle.md}")
    }
}
