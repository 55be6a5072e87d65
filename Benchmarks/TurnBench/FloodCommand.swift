import ArgumentParser
import Foundation
import TurnBenchKit

extension FloodScenario: ExpressibleByArgument {}

struct Flood: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flood",
        abstract: "Floods and exhaustion against a turn-relay this command starts: memory, descriptors, legitimate clients' success.",
        discussion: """
        Scenarios (one or more, each run once per --setting):
          unauth   --sources unauthenticated Allocates, each from its own address/port
                   pair over 127.128.0.0/12 (--addresses distinct addresses), then
                   --one-address-requests from one address; meanwhile legitimate
                   allocations relay and fresh clients allocate: 401s sent and
                   withheld, flood allocations (none), RSS before/after, legitimate
                   loss and allocation success
          nat      --clients clients behind one address each doing the full Allocate
                   (401, then authenticated), all at once, with RFC 8489 retransmission:
                   seconds until half, 90% and all have allocations
          exhaust  --exhaust-ports relay ports: allocate until 508, delete, allocate again
          reload   relaying --seconds without, then --seconds with --reloads SIGHUPs
                   (credentials file re-read): loss of each
          junk     relaying --seconds alone, then with ChannelData on unbound channels,
                   peers without permission, oversize datagrams and a client that never
                   reads: legitimate loss of each, relay drops by reason
          churn    allocate/delete at the highest rate for --seconds, then --settle-seconds
                   idle; RSS, open fds and allocations sampled every second to
                   churn.csv and churn.svg
          soak     --legit-allocations relaying at --legit-pps for --seconds while fresh
                   clients allocate and delete (about 40 a second, the whole time), then
                   --settle-seconds idle; sampled every
                   second to soak.csv and soak.svg (lifetimes raised past 240 s: the
                   generator never refreshes)
          stream-soak  the soak over TURN over TLS: --legit-allocations TLS clients
                   relaying at --legit-pps while fresh clients connect over TLS and TCP
                   in turn, allocate, bind a channel and go (most by closing the
                   connection only; about 20 a second), and TCP allocations (RFC 6062)
                   come and go, each with a peer connection (Connect or the peer's),
                   bytes both ways checked, the peer's connection closed by the relay
                   after (about 10 a second; --tcp-allocation-pause-ms); then the
                   relaying clients close and --settle-seconds idle; allocations and
                   connections must end with their connections; stream-soak.csv and
                   stream-soak.svg

        Every load goes to loopback and is bounded by --seconds (nat by --nat-deadline).
        Files in --output: flood.json, flood.md, churn*/soak*/stream-soak*.csv/svg, the relay's log.
        """
    )

    @Argument(help: "Scenarios: \(FloodScenario.allCases.map(\.rawValue).joined(separator: ", ")).")
    var scenarios: [FloodScenario]

    @Option(help: "Relay arguments for one run of every scenario, written --setting=\"--challenge-burst-per-source 10\" (with '=': the value starts with --); repeatable; 'defaults' for none. Default: one run with the defaults.")
    var setting: [String] = []

    @Option(help: "turn-relay executable (default: next to turn-bench).")
    var relay: String?

    @Option(help: "Directory for flood.json, flood.md, the churn CSV and SVG and the logs.")
    var output: String = "flood-results"

    @Option(help: "TURN port on 127.0.0.1 (metrics on +4).")
    var port: UInt16 = 31_478

    @Option(help: "Relay workers.")
    var workers: Int = 1

    @Option(help: "Length of each flood or load phase, and of churn, seconds.")
    var seconds: Double = 5

    @Option(help: "unauth: distinct source address/port pairs.")
    var sources: Int = 100_000

    @Option(help: "unauth: distinct source addresses they come from.")
    var addresses: Int = 100_000

    @Option(help: "unauth: Allocates from one address after the distinct ones.")
    var oneAddressRequests: Int = 20_000

    @Option(help: "unauth: Allocates per second in both floods (0: flat out).")
    var floodRate: Double = 0

    @Option(help: "nat: clients behind one address.")
    var clients: Int = 1_000

    @Option(help: "nat: seconds to wait for all clients.")
    var natDeadline: Double = 300

    @Option(help: "nat: retransmission waits scaled by a random factor 1 ± this (0: all clients in lockstep; at most 0.9).")
    var natJitter: Double = 0

    @Option(help: "exhaust: relay ports.")
    var exhaustPorts: Int = 50

    @Option(help: "reload: SIGHUPs in the second phase.")
    var reloads: Int = 100

    @Option(help: "Legitimate allocations relaying during unauth, reload and junk.")
    var legitAllocations: Int = 8

    @Option(help: "Their packets per second in all (0: flat out).")
    var legitPPS: Double = 4_000

    @Flag(help: "junk: leave out the oversize datagrams.")
    var noOversize = false

    @Option(help: "churn: allocations in flight.")
    var churnWindow: Int = 32

    @Option(help: "churn: idle seconds sampled after it.")
    var settleSeconds: Double = 10

    @Option(help: "stream-soak: milliseconds between one TCP allocation (RFC 6062) and the next (0: back to back).")
    var tcpAllocationPauseMs: Int = 100

    @Flag(help: "No live progress on stderr.")
    var quiet = false

    func validate() throws {
        guard !scenarios.isEmpty else { throw ValidationError("name at least one scenario") }
        guard seconds > 0 && seconds <= 3_600 else { throw ValidationError("--seconds must be in (0, 3600]") }
        guard (1...1_000_000).contains(sources), (1...(1 << 20)).contains(addresses) else {
            throw ValidationError("--sources must be 1...1000000 and --addresses 1...1048576")
        }
        guard floodRate >= 0, (0...1_000_000).contains(oneAddressRequests) else { throw ValidationError("--flood-rate must be ≥ 0, --one-address-requests 0...1000000") }
        guard (1...20_000).contains(clients) else { throw ValidationError("--clients must be 1...20000") }
        guard natDeadline > 0 && natDeadline <= 1_800 else { throw ValidationError("--nat-deadline must be in (0, 1800]") }
        guard (0...0.9).contains(natJitter) else { throw ValidationError("--nat-jitter must be 0...0.9") }
        guard (1...1_000).contains(exhaustPorts) else { throw ValidationError("--exhaust-ports must be 1...1000") }
        guard (0...10_000).contains(reloads) else { throw ValidationError("--reloads must be 0...10000") }
        guard (1...1_000).contains(legitAllocations) else { throw ValidationError("--legit-allocations must be 1...1000") }
        guard legitPPS >= 0, (1...1_024).contains(churnWindow), (1...64).contains(workers) else {
            throw ValidationError("--legit-pps must be ≥ 0, --churn-window 1...1024, --workers 1...64")
        }
        guard settleSeconds >= 0 && settleSeconds <= 600 else { throw ValidationError("--settle-seconds must be 0...600") }
        guard (0...10_000).contains(tcpAllocationPauseMs) else { throw ValidationError("--tcp-allocation-pause-ms must be 0...10000") }
    }

    /// The configuration these options describe.
    func floodConfiguration(outputPath: String) -> FloodConfiguration {
        var c = FloodConfiguration(relayExecutable: relay ?? siblingExecutable("turn-relay"), outputDirectory: outputPath)
        c.port = port
        c.workers = workers
        c.seconds = seconds
        c.sources = sources
        c.addresses = addresses
        c.oneAddressRequests = oneAddressRequests
        c.floodPerSecond = floodRate
        c.clients = clients
        c.natDeadlineSeconds = natDeadline
        c.natJitter = natJitter
        c.exhaustPorts = exhaustPorts
        c.reloads = reloads
        c.legitAllocations = legitAllocations
        c.legitPPS = legitPPS
        c.churnWindow = churnWindow
        c.junkOversize = !noOversize
        c.settleSeconds = settleSeconds
        c.tcpAllocationPauseNanoseconds = UInt64(tcpAllocationPauseMs) * 1_000_000
        c.showProgress = !quiet
        return c
    }

    func run() throws {
        raiseOpenFileLimit()
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        let outPath = URL(fileURLWithPath: output).standardizedFileURL.path
        let c = floodConfiguration(outputPath: outPath)
        guard FileManager.default.isExecutableFile(atPath: c.relayExecutable) else { throw ValidationError("turn-relay not found at \(c.relayExecutable)") }
        let settings = FloodRelay.settings(setting)
        var results: [FloodResult] = []
        var errors: [String] = []
        for scenario in scenarios {
            for s in settings {
                do {
                    let r = try FloodRunner.run(scenario, c, setting: s)
                    results.append(r)
                    print(r.render() + "\n")
                    if let what = scenario.sampledActivity {
                        let name = scenario.rawValue + (settings.count > 1 ? "-\(results.count)" : "")
                        try Data(r.csv().utf8).write(to: URL(fileURLWithPath: "\(outPath)/\(name).csv"), options: .atomic)
                        let chart = r.chart(title: "turn-relay under \(what) (\(fixed(r["seconds"] ?? 0, 0)) s, then idle)")
                        try Data(chart.render().utf8).write(to: URL(fileURLWithPath: "\(outPath)/\(name).svg"), options: .atomic)
                    }
                } catch {
                    errors.append("\(scenario.rawValue) \(s.joined(separator: " ")): \(error)")
                    writeStandardError("\(scenario.rawValue): \(error)\n")
                }
            }
        }
        let report = FloodReport(machine: Machine.current(), command: CommandLine.arguments.joined(separator: " "), results: results, errors: errors)
        try JSONResults.encode(report).write(to: URL(fileURLWithPath: outPath + "/flood.json"), options: .atomic)
        try Data(report.render().utf8).write(to: URL(fileURLWithPath: outPath + "/flood.md"), options: .atomic)
        print("wrote \(outPath)/{flood.json,flood.md}")
        if !errors.isEmpty { throw ExitCode(1) }
    }
}
