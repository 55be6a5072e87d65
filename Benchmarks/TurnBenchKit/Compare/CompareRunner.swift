import Foundation
import STUN

public struct CompareConfiguration: Sendable {
    public var servers: [ServerSpec]
    /// Target total packet rates; 0 = flat out.
    public var rates: [Double]
    /// Rounds; round 0 is a warm-up and is discarded from the table.
    public var rounds: Int = 4
    public var allocations = 64
    public var payloadBytes = 100
    public var seconds = 3.0
    public var directions: [Direction] = Direction.allCases
    public var batch = 32
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

public struct CompareRun: Codable, Sendable, Equatable {
    public var round: Int
    public var result: LoadResult
}

/// Everything `compare` measured, as written to results.json.
public struct CompareReport: Codable, Sendable, Equatable {
    public var machine: Machine
    public var command: String
    public var servers: [String]
    public var runs: [CompareRun]
    public var errors: [String]

    public var rows: [RunRow] { runs.map { $0.result.row(round: $0.round) } }
}

/// Starts the servers, runs the same load against each in alternation, round after round.
public enum CompareRunner {
    public static func run(_ c: CompareConfiguration) throws -> CompareReport {
        let progress = ProgressLine(enabled: c.showProgress)
        var report = CompareReport(machine: Machine.current(), command: c.command, servers: c.servers.map(\.name), runs: [], errors: [])
        var processes: [ServerProcess] = []
        defer { for p in processes { p.stop() } }
        for spec in c.servers {
            let p = try ServerProcess.startReady(spec, logDirectory: c.outputDirectory)
            processes.append(p)
            progress.log("started \(spec.name), PID \(p.pid), on \(spec.listen)")
        }
        for round in 0..<c.rounds {
            for rate in c.rates {
                for p in processes {
                    guard p.process.isRunning else {
                        report.errors.append("round \(round) rate \(Int(rate)): \(p.spec.name) is no longer running")
                        continue
                    }
                    var lc = LoadConfiguration(label: p.spec.name, server: p.spec.listen, credentials: .restSecret(c.secret))
                    lc.allocations = c.allocations
                    lc.payloadBytes = c.payloadBytes
                    lc.seconds = c.seconds
                    lc.directions = c.directions
                    lc.batch = c.batch
                    lc.targetPPS = rate > 0 ? rate : nil
                    lc.relayPID = p.pid
                    lc.showProgress = c.showProgress
                    let rateText = rate > 0 ? "\(Int(rate)) pps" : "flat out"
                    progress.update("round \(round + 1)/\(c.rounds), \(rateText), \(p.spec.name): setting up")
                    do {
                        let g = try LoadGenerator(configuration: lc)
                        try g.setUp()
                        let r = g.run()
                        g.tearDown()
                        report.runs.append(CompareRun(round: round, result: r))
                        progress.log("round \(round)\(round == 0 ? " (warm-up)" : ""), \(rateText), \(p.spec.name): delivered \(Int(r.deliveredPPS)) pps of \(Int(r.offeredPPS)), loss \(fixed(r.lossRatio * 100, 2))%, relay \(r.relayCPUMicrosPerPacket.map { fixed($0, 2) } ?? "-") µs/pkt, p99 \(fixed(r.p99Micros, 0)) µs")
                    } catch {
                        report.errors.append("round \(round) \(rateText) \(p.spec.name): \(error)")
                        progress.log("round \(round) \(rateText) \(p.spec.name): \(error)")
                    }
                    // Let queues drain and timers settle before the other server's turn.
                    sleepNanoseconds(300_000_000)
                }
            }
        }
        return report
    }

    /// Writes results.json, results.csv, table.md and chart.svg into `directory`; returns the table.
    public static func write(_ report: CompareReport, to directory: String) throws -> ComparisonTable {
        let a = report.servers.first ?? "A"
        let b = report.servers.count > 1 ? report.servers[1] : "-"
        let table = ComparisonTable(runs: report.rows, serverA: a, serverB: b)
        let dir = URL(fileURLWithPath: directory)
        try JSONResults.encode(report).write(to: dir.appendingPathComponent("results.json"), options: .atomic)
        try Data(RunRow.csv(report.rows).utf8).write(to: dir.appendingPathComponent("results.csv"), options: .atomic)
        var md = "Machine: \(report.machine.summary)\n\nCommand: `\(report.command)`\n\n" + table.render() + "\n"
        if !report.errors.isEmpty { md += "\nErrors:\n" + report.errors.map { "- " + $0 }.joined(separator: "\n") + "\n" }
        try Data(md.utf8).write(to: dir.appendingPathComponent("table.md"), options: .atomic)
        try Data(SVGChart.comparison(table).render().utf8).write(to: dir.appendingPathComponent("chart.svg"), options: .atomic)
        return table
    }
}
