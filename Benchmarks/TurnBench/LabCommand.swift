import ArgumentParser
import Foundation
import Glibc
import TurnBenchKit

struct Lab: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Relays in a network namespace, the generator in another, over veth: XDP vs io_uring vs coturn (root).",
        discussion: """
        Creates the lab of `scripts/netns-lab up NAME` (relay in NAME-relay on
        198.18.0.1, peers on 198.18.0.3 in NAME-out) and adds 200 client addresses
        198.18.0.10-209 (relays limit 401 challenges per source address); replaces
        xdp_pass on the generator's veth with BPF/bench_sink.bpf.c (counts and drops
        the benchmark's datagrams in XDP, passes STUN answers), runs its NAPI thread at
        real-time priority (XDP_TX into a veth ring has no back-pressure: a waiting
        sink would drop), turns on GRO and threaded NAPI on both ends, and switches
        kernel.bpf_stats_enabled on (restored at the end). Then, round after round, each relay in turn: started in
        NAME-relay, --allocations allocations made with real Allocate/ChannelBind
        requests from sockets in NAME-out, then per workload one trial at --cpu-rate
        and a search for the highest rate at < 1% loss (flat out first, then
        bisection; at most --search-trials trials), then stopped. Before each round
        the generator runs alone flat out (the sink dropping at the relay's end): its
        ceiling and its CPU per datagram.

        Relays: turn-relay-xdp (turn-relay --xdp-interface NAMEr; reported as "xdp
        unavailable: <reason>" when turn-relay attaches no program), turn-relay-io-uring,
        coturn (Debian's turnserver, equivalent settings).
        Workloads: interleaved (consecutive datagrams belong to different flows and
        allocations, directions alternate), bursty-N (N datagrams per flow in a row).

        The generator: one frame per flow built once (the control sockets' 5-tuples,
        complete checksums), sent through one AF_PACKET socket with sendmmsg, --batch
        frames per call, paced to the target rate. Arrivals are counted by the sink.

        Per relayed packet (medians over rounds): the relay process's CPU (schedstat
        of its threads), the relay plus its veth's NAPI thread, the whole machine
        (/proc/stat busy) minus the generator process, the sink side's NAPI thread
        and the background of an idle 0.5 s before the trial (left out when other
        work filled >= 20 % of the machine), the relay's XDP program run time
        (bpf_stats), the generator's CPU per
        datagram, and the drop counters that grew (both veths' ethtool -S and link
        counters, the relay namespace's UDP counters). Files in --out: results.json,
        results.csv (one line per trial),
        table.md, chart.svg and the servers' logs. The lab is taken down at the end
        and on SIGINT/SIGTERM.
        """
    )

    @Option(help: "Lab name (1-8 letters or digits): namespaces NAME-relay and NAME-out, interfaces NAMEr and NAMEo.")
    var name: String = "bench"

    @Option(help: "turn-relay executable (default: next to turn-bench).")
    var relay: String?

    @Option(help: "The XDP object turn-relay-xdp loads (default: REPOSITORY/.build-bpf/turn_router.bpf.o, built by scripts/build-bpf).")
    var xdpObject: String?

    @Option(help: "coturn's turnserver executable.")
    var coturn: String = "/usr/bin/turnserver"

    @Option(help: "Relays, comma-separated: turn-relay-xdp, turn-relay-io-uring, coturn.")
    var relays: String = LabRelayKind.allCases.map(\.rawValue).joined(separator: ",")

    @Option(help: "Workloads, comma-separated: interleaved, bursty-N.")
    var workloads: String = "interleaved,bursty-64"

    @Option(help: "Allocations, each with a channel to its own peer (at least 1,000 for the issue's figures).")
    var allocations: Int = 1000

    @Option(help: "Payload bytes per datagram (24...1400, a multiple of 4).")
    var payload: Int = 100

    @Option(help: "Rounds (every relay once per round).")
    var rounds: Int = 3

    @Option(help: "Sending time per trial, seconds.")
    var seconds: Double = 2

    @Option(help: "Offered rate (packets/s, both directions) of the CPU-per-packet trial.")
    var cpuRate: Double = 50_000

    @Option(help: "Trials of the loss search per relay, workload and round (flat out counts).")
    var searchTrials: Int = 6

    @Option(help: "Frames per sendmmsg.")
    var batch: Int = 64

    @Option(help: "Repository root (scripts/netns-lab, .build-bpf/bench_sink.bpf.o).")
    var repository: String = FileManager.default.currentDirectoryPath

    @Option(help: "Directory for results.json, results.csv, table.md, chart.svg and logs.")
    var out: String = "Benchmarks/results/lab"

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    func validate() throws {
        guard getuid() == 0 else { throw ValidationError("lab needs root (network namespaces, XDP, AF_PACKET)") }
        // The relays under test allocate from ports 20000-29999, and the generator's frames use
        // 30000 + i, 40000 + i and 50000 + i for allocation i: 10,000 at most.
        guard (1...10_000).contains(allocations) else { throw ValidationError("--allocations must be 1...10000 (the relays' port range 20000-29999)") }
        guard (24...1400).contains(payload) && payload % 4 == 0 else { throw ValidationError("--payload must be 24...1400, a multiple of 4") }
        guard (1...20).contains(rounds) else { throw ValidationError("--rounds must be 1...20") }
        guard seconds > 0 && seconds <= 30 else { throw ValidationError("--seconds must be in (0, 30]") }
        guard cpuRate > 0 && cpuRate <= 10_000_000 else { throw ValidationError("--cpu-rate must be in (0, 10M]") }
        guard (1...12).contains(searchTrials) else { throw ValidationError("--search-trials must be 1...12") }
        guard (1...1024).contains(batch) else { throw ValidationError("--batch must be 1...1024") }
        guard parsedRelays != nil else { throw ValidationError("--relays: turn-relay-xdp, turn-relay-io-uring, coturn") }
        guard parsedWorkloads != nil else { throw ValidationError("--workloads: interleaved, bursty-N (2...1024)") }
    }

    var parsedRelays: [LabRelayKind]? {
        let r = relays.split(separator: ",").map { LabRelayKind(rawValue: $0.trimmingCharacters(in: .whitespaces)) }
        return r.isEmpty || r.contains(nil) ? nil : r.compactMap { $0 }
    }

    var parsedWorkloads: [LabWorkload]? {
        let w = workloads.split(separator: ",").map { LabWorkload($0.trimmingCharacters(in: .whitespaces)) }
        return w.isEmpty || w.contains(nil) ? nil : w.compactMap { $0 }
    }

    func run() throws {
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let outPath = URL(fileURLWithPath: out).standardizedFileURL.path
        let relayPath = relay ?? siblingExecutable("turn-relay")
        var kinds = parsedRelays ?? []
        if kinds.contains(where: { $0 != .coturn }) && !FileManager.default.isExecutableFile(atPath: relayPath) {
            throw ValidationError("turn-relay not found at \(relayPath); build it or pass --relay")
        }
        if kinds.contains(.coturn) && !FileManager.default.isExecutableFile(atPath: coturn) {
            writeStandardError("coturn not found at \(coturn) (Debian package 'coturn'); measuring turn-relay alone\n")
            kinds.removeAll { $0 == .coturn }
        }
        var c = LabConfiguration(repositoryRoot: URL(fileURLWithPath: repository).standardizedFileURL.path,
                                 relayExecutable: URL(fileURLWithPath: relayPath).standardizedFileURL.path,
                                 coturnExecutable: coturn, outputDirectory: outPath)
        c.name = name
        if let xdpObject { c.xdpObject = URL(fileURLWithPath: xdpObject).standardizedFileURL.path }
        c.relays = kinds
        c.workloads = parsedWorkloads ?? []
        c.allocations = allocations
        c.payloadBytes = payload
        c.rounds = rounds
        c.seconds = seconds
        c.cpuRate = cpuRate
        c.searchTrials = searchTrials
        c.batch = batch
        c.showProgress = !quiet
        c.command = CommandLine.arguments.joined(separator: " ")
        let report = try LabRunner(c).run()
        let table = try LabTable.write(report, to: outPath)
        print("Machine: \(report.machine.summary)")
        print(table.render())
        for n in LabTable.notes(report) { print("- " + n) }
        for e in report.errors { print("error: \(e)") }
        print("wrote \(outPath)/{results.json,results.csv,table.md,chart.svg}")
    }
}
