import ArgumentParser
import Foundation
import TurnBenchKit

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Run identical loads against turn-relay and coturn in alternation; table, CSV/JSON and SVG.",
        discussion: """
        Starts each server on loopback with equivalent settings (REST secret,
        realm, loopback peers allowed, --threads worker/relay threads, no TLS),
        waits for it to answer a Binding request, then for every round and every
        --rates value runs `load` against each server in turn (A B A B ...).
        Round 1 is a warm-up, left out of the table. Servers are stopped by PID
        at the end (also on Ctrl-C).

        Table (medians over the kept rounds, per target rate):
          offered/delivered pps, loss  as in `load`, both directions together
          ratio (delivered)   A / B: above 1 means A delivers more
          CPU µs/pkt          relay CPU (user+system, /proc/PID/stat) per
                              delivered packet; ratio below 1: A is cheaper
          p99 µs              worst direction's 99th percentile latency
          highest delivered at < 1% loss
                              best median delivered rate whose median loss
                              is under 1%
        Files in --out: results.json (every run), results.csv (one line per
        run), table.md, chart.svg (delivered vs offered pps and CPU per packet
        vs offered pps, both servers) and the servers' logs.
        """
    )

    @Option(help: "turn-relay executable (default: next to turn-bench). 'none' to leave it out.")
    var relay: String?

    @Option(help: "A second turn-relay executable (e.g. a build of the previous commit), run with the same --relay-backends entry as B beside --relay as A: a before/after comparison of a change in one run.")
    var relayB: String?

    @Option(help: "turn-relay I/O backends to run side by side, comma-separated: io-uring, batched-syscalls (each its own server in the same alternation; the first two servers form the table's A and B). An entry may add turn-relay arguments after a colon, to compare settings of one backend: 'io-uring,io-uring:--batch-wait-us 0'.")
    var relayBackends: String = "io-uring"

    @Option(help: "coturn's turnserver executable. 'none' to leave it out.")
    var coturn: String = "/usr/bin/turnserver"

    @Option(help: "turn-relay's arguments, with {port} {min-port} {max-port} {secret} {realm} {threads} substituted (space-separated).")
    var relayArgs: String = ServerSpec.defaultTurnRelayTemplate.joined(separator: " ")

    @Option(help: "Target total packet rates, comma-separated; 0 = flat out.")
    var rates: String = "20000,50000,100000,0"

    @Option(help: "Rounds including the discarded warm-up (at least 3).")
    var rounds: Int = 4

    @Option(help: "Worker threads for turn-relay (--workers) and relay threads for coturn (--relay-threads).")
    var threads: Int = 1

    @Option(help: "First TURN port; turn-relay gets it, coturn the next one.")
    var port: UInt16 = 34_790

    @Option(help: "Directory for results.json, results.csv, table.md, chart.svg and server logs.")
    var out: String = "compare-results"

    @OptionGroup var load: LoadOptions

    @Flag(help: "No live progress line on stderr.")
    var quiet = false

    func validate() throws {
        guard rounds >= 3 && rounds <= 20 else { throw ValidationError("--rounds must be 3...20") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
        guard !parsedRates.isEmpty else { throw ValidationError("--rates: give comma-separated numbers") }
    }

    var parsedRates: [Double] {
        rates.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 >= 0 }
    }

    func run() throws {
        raiseOpenFileLimit()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let outPath = URL(fileURLWithPath: out).standardizedFileURL.path
        let common = ServerSpec.Common(secret: "bench-\(UInt32.random(in: 0...UInt32.max))", realm: "bench", threads: threads, logDirectory: outPath)
        var servers: [ServerSpec] = []
        let relayPath = relay ?? siblingExecutable("turn-relay")
        if relayPath != "none" {
            guard FileManager.default.isExecutableFile(atPath: relayPath) else { throw ValidationError("turn-relay not found at \(relayPath); build it or pass --relay none") }
            let variants = relayBackends.split(separator: ",").map { RelayVariant(String($0)) }
            if let relayB {
                guard FileManager.default.isExecutableFile(atPath: relayB) else { throw ValidationError("--relay-b: no executable at \(relayB)") }
                guard variants.count == 1 else { throw ValidationError("--relay-b takes one --relay-backends entry (it runs that entry on both executables)") }
            }
            guard !variants.isEmpty, variants.count <= 2,
                  variants.allSatisfy({ $0.backend == "io-uring" || $0.backend == "batched-syscalls" }) else {
                throw ValidationError("--relay-backends: one or two of io-uring, batched-syscalls (each optionally followed by :arguments)")
            }
            let template = relayArgs.split(separator: " ").map(String.init)
            let executables = relayB.map { [(relayPath, "a-"), ($0, "b-")] } ?? variants.map { _ in (relayPath, "") }
            let entries = relayB == nil ? variants : [variants[0], variants[0]]
            for (i, (variant, (executable, prefix))) in zip(entries, executables).enumerated() {
                // Each server its own port and relay port range (20000-24999, 25000-29999).
                let base = UInt16(20000 + i * 5000)
                var spec = ServerSpec.turnRelay(executable: executable,
                                                template: template + ["--io-backend", variant.backend] + variant.arguments,
                                                port: port + UInt16(i) * 2, ports: base...(base + 4999), common: common)
                if entries.count > 1 || variant.backend != "io-uring" || !variant.arguments.isEmpty {
                    spec.name = prefix.isEmpty ? variant.name : "turn-relay-" + prefix + variant.name.dropFirst("turn-relay-".count)
                }
                servers.append(spec)
            }
        }
        if coturn != "none" {
            if FileManager.default.isExecutableFile(atPath: coturn) {
                servers.append(.coturn(executable: coturn, port: port + 1, ports: 10000...19999, common: common))
            } else {
                // "where installed": without coturn the run still measures turn-relay alone.
                writeStandardError("coturn not found at \(coturn) (Debian package 'coturn'); measuring turn-relay alone\n")
            }
        }
        guard !servers.isEmpty else { throw ValidationError("nothing to compare") }
        var c = CompareConfiguration(servers: servers, rates: parsedRates, secret: common.secret, outputDirectory: outPath)
        c.rounds = rounds
        c.allocations = load.allocations
        c.payloadBytes = load.payload
        c.seconds = load.seconds
        c.directions = load.direction.directions
        c.batch = load.batch
        c.showProgress = !quiet
        c.command = CommandLine.arguments.joined(separator: " ")
        let report = try CompareRunner.run(c)
        let table = try CompareRunner.write(report, to: outPath)
        print("Machine: \(report.machine.summary)")
        print(table.render())
        for e in report.errors { print("error: \(e)") }
        print("wrote \(outPath)/{results.json,results.csv,table.md,chart.svg}")
    }
}

/// A file next to this executable (e.g. turn-relay beside turn-bench in .build/release).
func siblingExecutable(_ name: String) -> String {
    let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    return me.deletingLastPathComponent().appendingPathComponent(name).path
}

/// One `--relay-backends` entry: a backend, and optionally turn-relay arguments after a colon.
struct RelayVariant {
    let backend: String
    let arguments: [String]

    init(_ entry: String) {
        let parts = entry.split(separator: ":", maxSplits: 1)
        backend = parts.first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        arguments = parts.count > 1 ? parts[1].split(separator: " ").map(String.init) : []
    }

    /// "turn-relay-<backend>" plus the arguments, usable in file names.
    var name: String {
        let suffix = arguments.joined(separator: "_").map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }
        return "turn-relay-\(backend)" + (suffix.isEmpty ? "" : "-" + String(suffix).trimmingCharacters(in: CharacterSet(charactersIn: "-_")))
    }
}
