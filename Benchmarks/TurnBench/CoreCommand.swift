import ArgumentParser
import Foundation
import TurnBenchKit

struct Core: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Drive RelayCore.Server in process (no sockets): fast-path ns/packet and heap allocations, slow-path rates.",
        discussion: """
        Sets up allocations by feeding the core real STUN requests through
        process() (Allocate -> 401 -> authenticated Allocate, socket open
        answered at once, ChannelBind 0x4000), with a fixed clock. Then for each
        --allocations count and direction, times process() on batches of
        --batch prepared datagrams cycling over all allocations (after an
        untimed warm-up pass):
          CPU ns/packet       thread CPU time (CLOCK_THREAD_CPUTIME_ID) of the
                              timed loop / packets; not inflated by other load
          wall ns/packet      wall time of the same loop / packets
          packets/s (CPU)     1e9 / CPU ns/packet: one core's worth
          heap allocs/packet  malloc, calloc, realloc, memalign calls in the
                              timed loop / packets, counted by the malloc
                              interposer linked into turn-bench (must be 0)
          A case whose outputs differ from its inputs is reported as an error.
        Slow path, --requests each from distinct client addresses, in batches:
          Allocate -> 401     unauthenticated Allocate answered with a challenge
          Allocate            authenticated, including the socketOpened answer
          ChannelBind         authenticated, new channel and peer
          Refresh             authenticated, LIFETIME 600
          requests/s per CPU second, CPU and wall µs/request, heap allocs/request
        """
    )

    @Option(help: "Allocation counts, comma-separated.")
    var allocations: String = "1,1000,10000"

    @Option(help: "Datagrams per process() call.")
    var batch: Int = 64

    @Option(help: "Payload bytes.")
    var payload: Int = 100

    @Option(help: "Timed seconds per fast-path case (at most 30).")
    var seconds: Double = 1

    @Option(help: "Requests per slow-path case.")
    var requests: Int = 4000

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Flag(help: "No live progress line on stderr.")
    var quiet = false

    func validate() throws {
        guard (1...1024).contains(batch) else { throw ValidationError("--batch must be 1...1024") }
        guard (1...1400).contains(payload) else { throw ValidationError("--payload must be 1...1400") }
        guard seconds > 0 && seconds <= 30 else { throw ValidationError("--seconds must be in (0, 30]") }
        guard (1...15_000).contains(requests) else { throw ValidationError("--requests must be 1...15000") }
        guard !counts.isEmpty, counts.allSatisfy({ (1...15_000).contains($0) }) else { throw ValidationError("--allocations: counts in 1...15000") }
    }

    var counts: [Int] { allocations.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        var c = CoreConfiguration()
        c.allocationCounts = counts
        c.batch = batch
        c.payloadBytes = payload
        c.seconds = seconds
        c.slowPathRequests = requests
        c.showProgress = !quiet
        let r = CoreBench.run(c)
        print(Report.core(r))
        if let json {
            try JSONResults.encode(r).write(to: URL(fileURLWithPath: json), options: .atomic)
        }
    }
}
