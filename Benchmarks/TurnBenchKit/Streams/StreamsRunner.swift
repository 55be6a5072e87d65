import Foundation
import Glibc
import RelayIO
import STUN

public struct StreamsConfiguration: Sendable {
    /// Servers with `tlsListen` set (they serve UDP and TCP on `listen`, TLS on `tlsListen`).
    public var servers: [ServerSpec]
    public var transports: [ClientTransport] = ClientTransport.allCases
    /// Offered relayed packets per second (both directions); 0 = flat out.
    public var rates: [Double]
    /// Rounds; round 0 is a warm-up left out of the table.
    public var rounds = 3
    public var clients = 16
    public var payloadBytes = 100
    public var seconds = 2.0
    public var window = 32
    /// The highest TLS version the clients offer (1.3: each server picks its best; 1.2: both
    /// run TLS 1.2, as coturn 4.6.1 does anyway).
    public var tlsMaximumVersion: TLSVersion = .tls13
    public var secret: String
    public var outputDirectory: String
    public var showProgress = true
    public var command = ""

    public init(servers: [ServerSpec], rates: [Double], secret: String, outputDirectory: String) {
        self.servers = servers
        self.rates = rates
        self.secret = secret
        self.outputDirectory = outputDirectory
    }
}

/// Everything `streams` measured, as written to results.json.
public struct StreamsReport: Codable, Sendable, Equatable {
    public var machine: Machine
    public var command: String
    public var servers: [String]
    public var runs: [StreamLoadResult]
    public var errors: [String]

    public init(machine: Machine, command: String, servers: [String], runs: [StreamLoadResult], errors: [String]) {
        self.machine = machine
        self.command = command
        self.servers = servers
        self.runs = runs
        self.errors = errors
    }

    /// One `compare`-style table per client transport (medians over the kept rounds).
    public func tables(firstKeptRound: Int = 1) -> [(transport: ClientTransport, table: ComparisonTable)] {
        let a = servers.first ?? "A", b = servers.count > 1 ? servers[1] : "-"
        return ClientTransport.allCases.compactMap { t in
            let rows = runs.filter { $0.transport == t }.map { $0.row(server: $0.server) }
            guard !rows.isEmpty else { return nil }
            return (t, ComparisonTable(runs: rows, serverA: a, serverB: b, firstKeptRound: firstKeptRound))
        }
    }

    /// The Markdown report: per transport, delivered pps, loss, relay CPU per relayed packet and
    /// A/B ratios; then the issue's figure (TLS CPU per packet ratio against 0.5).
    public func render(firstKeptRound: Int = 1) -> String {
        var out = ["Machine: \(machine.summary)", "", "Command: `\(command)`", ""]
        out.append("Relayed packets are counted at both ends (client → relay → UDP peer, and the peer's echo → relay → client); offered = client sends + peer echoes; CPU µs/pkt = relay user+system CPU over the window ÷ relayed packets delivered; p99 µs = round trip client → peer → client. Medians over rounds \(firstKeptRound + 1)…; round 1 was a warm-up.")
        for (t, table) in tables(firstKeptRound: firstKeptRound) {
            out.append("")
            out.append("### Client transport: \(t.rawValue)")
            out.append("")
            out.append(table.render())
            out.append("")
            out.append(wakeUpTable(t, firstKeptRound: firstKeptRound))
        }
        if let tls = tables(firstKeptRound: firstKeptRound).first(where: { $0.transport == .tls })?.table {
            out.append("")
            let ratios = tls.rows.map { row in
                "\(row.targetPPS == 0 ? "flat out" : String(Int(row.targetPPS)) + " pps"): \(row.cpuRatio.map { fixed($0, 2) + "×" } ?? "-")"
            }
            out.append("TLS, relay CPU per relayed packet \(tls.serverA)/\(tls.serverB) (goal ≤ 0.50×): " + ratios.joined(separator: ", "))
        }
        if !errors.isEmpty {
            out.append("")
            out.append("Errors:")
            out += errors.map { "- " + $0 }
        }
        return out.joined(separator: "\n") + "\n"
    }
}

extension StreamsReport {
    /// Per rate and server (medians over the kept rounds): the relay's wake-ups per relayed
    /// packet (times its threads were put on a CPU, schedstat) and the round trip's median, the
    /// two sides of waiting to batch (`--batch-wait-us`); and how its CPU divides between the
    /// kernel and user space (/proc/PID/stat's stime and utime ticks), the kernel's part as µs per
    /// relayed packet: what no change in user space takes away.
    func wakeUpTable(_ transport: ClientTransport, firstKeptRound: Int) -> String {
        let kept = runs.filter { $0.transport == transport && $0.round >= firstKeptRound }
        var lines = ["| target pps | server | wake-ups per relayed packet | RTT p50 µs | kernel share of CPU | kernel µs/pkt |",
                     "|---:|---|---:|---:|---:|---:|"]
        // Paced rates ascending, flat out (0) last.
        func order(_ rate: Double) -> Double { rate == 0 ? Double.infinity : rate }
        let rates: [Double] = Set(kept.map { $0.targetPPS }).sorted { order($0) < order($1) }
        for rate in rates {
            for server in servers {
                let these = kept.filter { $0.targetPPS == rate && $0.server == server }
                guard !these.isEmpty else { continue }
                let wakeUps = Summary.median(these.compactMap { $0.relayWakeUpsPerPacket }).map { fixed($0, 3) } ?? "-"
                let p50 = Summary.median(these.map { $0.roundTrip.p50 }).map { fixed($0, 0) } ?? "-"
                let share = Summary.median(these.compactMap { $0.relaySystemShare }).map { fixed($0 * 100, 1) + " %" } ?? "-"
                let kernel = Summary.median(these.compactMap { $0.relaySystemMicrosPerPacket }).map { fixed($0, 2) } ?? "-"
                lines.append("| \(rate == 0 ? "flat out" : String(Int(rate))) | \(server) | \(wakeUps) | \(p50) | \(share) | \(kernel) |")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// Starts the servers (with TLS), then for every round, transport and rate runs the same load
/// against each server in turn (A B A B ...).
public enum StreamsRunner {
    nonisolated(unsafe) static var generation = 0

    public static func run(_ c: StreamsConfiguration) throws -> StreamsReport {
        let progress = ProgressLine(enabled: c.showProgress)
        var report = StreamsReport(machine: Machine.current(), command: c.command, servers: c.servers.map(\.name), runs: [], errors: [])
        let tls = try TLSContext(clientALPN: "stun.turn", maximumVersion: c.tlsMaximumVersion)
        var processes: [ServerProcess] = []
        defer { for p in processes { p.stop() } }
        for spec in c.servers {
            let p = try ServerProcess.startReady(spec, logDirectory: c.outputDirectory)
            processes.append(p)
            if c.showProgress { progress.log("started \(spec.name), PID \(p.pid), on \(spec.listen) (TLS on \(spec.tlsListen.map { "\($0)" } ?? "-"))") }
        }
        for round in 0..<c.rounds {
            for transport in c.transports {
                for rate in c.rates {
                    for p in processes {
                        guard p.process.isRunning else {
                            report.errors.append("round \(round) \(transport) rate \(Int(rate)): \(p.spec.name) is no longer running")
                            continue
                        }
                        let rateText = rate > 0 ? "\(Int(rate)) pps" : "flat out"
                        let what = "round \(round)\(round == 0 ? " (warm-up)" : ""), \(transport.rawValue), \(rateText), \(p.spec.name)"
                        do {
                            let r = try runOne(c, server: p, transport: transport, rate: rate, round: round, tls: tls)
                            report.runs.append(r)
                            if c.showProgress { progress.log("\(what): delivered \(Int(r.deliveredPPS)) of \(Int(r.offeredPPS)) pps, loss \(fixed(r.lossRatio * 100, 2))%, relay \(r.relayCPUMicrosPerPacket.map { fixed($0, 2) } ?? "-") µs/pkt, \(r.relayWakeUpsPerPacket.map { fixed($0, 2) } ?? "-") wake-ups/pkt, RTT p99 \(fixed(r.roundTrip.p99, 0)) µs") }
                        } catch {
                            report.errors.append("\(what): \(error)")
                            if c.showProgress { progress.log("\(what): \(error)") }
                        }
                        // Let queues drain and timers settle before the other server's turn.
                        sleepNanoseconds(300_000_000)
                    }
                }
            }
        }
        return report
    }

    static func runOne(_ c: StreamsConfiguration, server p: ServerProcess, transport: ClientTransport, rate: Double,
                       round: Int, tls: TLSContext) throws -> StreamLoadResult {
        let address = transport == .tls ? p.spec.tlsListen : p.spec.listen
        guard let address else { throw LoadError.setupFailed("\(p.spec.name) serves no TLS") }
        var lc = StreamLoadConfiguration(label: p.spec.name, transport: transport, server: address, credentials: .restSecret(c.secret))
        lc.clients = c.clients
        lc.payloadBytes = c.payloadBytes
        lc.seconds = c.seconds
        lc.window = c.window
        lc.targetPPS = rate > 0 ? rate : nil
        lc.relayPID = p.pid
        generation += 1
        lc.sourceSubnet = UInt8(110 + generation % 100)
        let load = try StreamLoad(configuration: lc, tls: tls)
        defer { load.tearDown() }
        try load.setUp()
        return load.run(round: round)
    }

    /// Writes results.json and table.md into `directory`; returns the Markdown.
    @discardableResult
    public static func write(_ report: StreamsReport, to directory: String) throws -> String {
        let dir = URL(fileURLWithPath: directory)
        try JSONResults.encode(report).write(to: dir.appendingPathComponent("results.json"), options: .atomic)
        let md = report.render()
        try Data(md.utf8).write(to: dir.appendingPathComponent("table.md"), options: .atomic)
        return md
    }
}

/// A self-signed P-256 certificate for the benchmark (`openssl req -x509`), written into
/// `directory` as cert.pem and key.pem; returns their paths.
public func makeBenchCertificate(in directory: String, openssl: String = "/usr/bin/openssl") throws -> (certificate: String, key: String) {
    let cert = directory + "/cert.pem", key = directory + "/key.pem"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: openssl)
    p.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                   "-subj", "/CN=turn.bench", "-keyout", key, "-out", cert]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw LoadError.setupFailed("openssl req -x509 failed (\(p.terminationStatus))") }
    return (cert, key)
}

/// The `streams` command's list arguments.
public enum StreamsArguments {
    /// "5000,20000,0": comma-separated rates; nil when any part is not a non-negative number.
    public static func rates(_ text: String) -> [Double] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let values = parts.compactMap(Double.init).filter { $0 >= 0 && $0.isFinite }
        return values.count == parts.count ? values : []
    }

    /// "udp,tcp,tls": nil when any part is not a transport.
    public static func transports(_ text: String) -> [ClientTransport]? {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        let t = parts.compactMap(ClientTransport.init(rawValue:))
        return t.count == parts.count && !t.isEmpty ? t : nil
    }
}
