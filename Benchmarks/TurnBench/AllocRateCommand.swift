import ArgumentParser
import Foundation
import TurnBenchKit

struct AllocRate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alloc-rate",
        abstract: "Allocations set up and torn down per second, and memory per allocation.",
        discussion: """
        Two phases against one TURN server on loopback:
          churn       for --churn-seconds, --churn-window sockets each repeat Allocate then Refresh
                      LIFETIME 0 (delete); the first Allocate on a socket answers the 401 challenge,
                      later ones reuse the nonce. Figure: allocations set up and deleted per second.
          concurrent  --concurrent sockets (default 16,384, one address family) each Allocate once,
                      --window in flight, and hold; then all are deleted.
                      Figures: set-up and deletion rates, Allocate latency (request → success,
                      including the 401 round trip), relay RSS before and with the allocations held
                      (/proc/PID/status VmRSS) and the difference per allocation, relay CPU µs per
                      allocation set up (/proc/PID/stat).
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
        var c = AllocationRateConfiguration(label: label, server: try server.address(), credentials: try server.credentials())
        c.churnSeconds = churnSeconds
        c.churnWindow = churnWindow
        c.concurrent = concurrent
        c.window = window
        c.relayPID = server.relayPID
        c.showProgress = !server.quiet
        let r = try AllocationRate.run(c)
        print(Report.allocationRate(r))
        if let json {
            try JSONResults.encode(r).write(to: URL(fileURLWithPath: json), options: .atomic)
        }
    }
}
