import ArgumentParser
import Foundation
import Glibc
import TurnBenchKit

struct AllocRate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alloc-rate",
        abstract: "Allocations set up and torn down per second, and memory per allocation.",
        discussion: """
        Two phases against one TURN server on loopback (--server, or fresh
        servers with --start):
          concurrent  --concurrent sockets (default 16,384, one address family)
                      each Allocate once, --window in flight, and hold; then
                      all are deleted. Runs first, so the relay's memory growth
                      is these allocations' alone.
                      Figures: set-up and deletion rates; Allocate latency
                      (request -> success, including the 401 round trip); relay
                      RSS before and with the allocations held (/proc/PID/status
                      VmRSS; kernel socket memory is not in RSS) and the
                      difference per allocation; relay CPU µs per allocation.
          churn       for --churn-seconds, --churn-window at a time: Allocate
                      then Refresh LIFETIME 0 (delete), each from a fresh
                      5-tuple (so each answers a 401 first).
                      Figure: allocations set up and deleted per second.
        With --start turn-relay,coturn and --rounds N, fresh servers alternate
        and a table of medians and ratios follows.
        """
    )

    @OptionGroup var server: ServerOptions

    @Option(help: "Churn phase length, seconds (at most 60).")
    var churnSeconds: Double = 5

    @Option(help: "Sockets churning in parallel.")
    var churnWindow: Int = 32

    @Option(help: "Allocations held at once in the concurrent phase (one socket each; needs that many file descriptors).")
    var concurrent: Int = 16_384

    @Option(help: "Requests in flight in the concurrent phase.")
    var window: Int = 64

    @Option(help: "Label for the server in the output.")
    var label: String = "server"

    @Option(help: "Start fresh servers and stop them after, comma-separated: turn-relay (next to turn-bench) and/or coturn (/usr/bin/turnserver); one relay thread, relay ports 10000-29999. Replaces --server/--secret/--relay-pid. Two servers: alternated per round, with a table of medians and ratios.")
    var start: String?

    @Option(help: "Rounds with --start (each server started fresh every round).")
    var rounds: Int = 1

    @Option(help: "Port for the server --start launches.")
    var port: UInt16 = 34_795

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    func validate() throws {
        guard churnSeconds >= 0 && churnSeconds <= 60 else { throw ValidationError("--churn-seconds must be 0...60") }
        guard (1...1024).contains(churnWindow) else { throw ValidationError("--churn-window must be 1...1024") }
        guard (0...60_000).contains(concurrent) else { throw ValidationError("--concurrent must be 0...60000") }
        guard (1...4096).contains(window) else { throw ValidationError("--window must be 1...4096") }
    }

    func run() throws {
        let limit = raiseOpenFileLimit()
        guard UInt64(concurrent + churnWindow + 64) <= limit else {
            throw ValidationError("--concurrent \(concurrent) needs more file descriptors than the limit \(limit)")
        }
        var results: [AllocationRateResult] = []
        if let start {
            // Fresh servers, in alternation: A B A B ...
            let names = start.split(separator: ",").map(String.init)
            for round in 0..<rounds {
                for name in names {
                    let r = try runFresh(name)
                    if !server.quiet { writeStandardError("round \(round + 1)/\(rounds), \(name): done\n") }
                    print(Report.allocationRate(r))
                    results.append(r)
                }
            }
            if names.count == 2 {
                print("")
                print(Report.allocationRateComparison(results, serverA: names[0], serverB: names[1]))
            }
        } else {
            var c = AllocationRateConfiguration(label: label, server: try server.address(), credentials: try server.credentials())
            c.relayPID = server.relayPID
            let r = try AllocationRate.run(configure(c))
            print(Report.allocationRate(r))
            results.append(r)
        }
        if let json {
            try JSONResults.encode(results).write(to: URL(fileURLWithPath: json), options: .atomic)
        }
    }

    func configure(_ base: AllocationRateConfiguration) -> AllocationRateConfiguration {
        var c = base
        c.churnSeconds = churnSeconds
        c.churnWindow = churnWindow
        c.concurrent = concurrent
        c.window = window
        c.showProgress = !server.quiet
        return c
    }

    /// Starts `name` fresh, measures it, stops it by PID.
    func runFresh(_ name: String) throws -> AllocationRateResult {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("turn-bench-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let common = ServerSpec.Common(secret: "bench-\(UInt32.random(in: 0...UInt32.max))", realm: "bench", threads: 1, logDirectory: dir)
        let spec: ServerSpec
        switch name {
        case "turn-relay":
            spec = .turnRelay(executable: siblingExecutable("turn-relay"), template: ServerSpec.defaultTurnRelayTemplate,
                              port: port, ports: 10000...29999, common: common)
        case "coturn":
            spec = .coturn(executable: "/usr/bin/turnserver", port: port, ports: 10000...29999, common: common)
        default:
            throw ValidationError("--start takes turn-relay and/or coturn")
        }
        let p = try ServerProcess(spec: spec, logDirectory: dir)
        defer { p.stop() }
        guard p.waitReady(seconds: 10) else { throw ValidationError("\(name) did not answer on \(spec.listen); see \(dir)") }
        var c = AllocationRateConfiguration(label: name, server: spec.listen, credentials: .restSecret(common.secret))
        c.relayPID = p.pid
        return try AllocationRate.run(configure(c))
    }
}
