import ArgumentParser
import Foundation
import TurnBenchKit

struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Drive ChannelData through N allocations of a TURN server and measure delivery.",
        discussion: """
        Setup: per allocation one client socket and one peer socket on loopback;
        Allocate (answering the 401 challenge with long-term credentials), then
        ChannelBind 0x4000 to the peer (which also installs the permission).
        Then one thread sends for --seconds (sendmmsg, --batch per call, round-
        robin over flows, paced to --rate or flat out) while another receives
        (epoll + recvmmsg); it drains for 0.3 s and deletes the allocations
        (Refresh LIFETIME 0). Each payload carries flow, sequence number and
        send time.

        Figures, per direction and in total:
          offered pps    datagrams the kernel accepted from the generator, per
                         second of sending
          delivered pps  unique datagrams that arrived at the far end, per
                         second of sending
          loss           (sent - unique received) / sent
          duplicates     datagrams that arrived more than once
          reordered      arrivals after a higher sequence number (same flow)
          latency        one-way, send time in the payload -> arrival, µs
                         (p50 p90 p99 p99.9 max; same clock both ends)
          bench CPU      this process's user+system CPU during the run
                         (getrusage), and its heap allocations in that time
          relay CPU      the relay's user+system CPU during the run
                         (/proc/PID/stat, 10 ms ticks; needs --relay-pid), and
                         µs per relayed packet = relay CPU / unique delivered
        """
    )

    @OptionGroup var server: ServerOptions
    @OptionGroup var load: LoadOptions

    @Option(help: "Target total packets/s over all directions; omit for flat out.")
    var rate: Double?

    @Option(help: "Write the result as JSON to this file.")
    var json: String?

    @Option(help: "Label for the server in the output.")
    var label: String = "server"

    func run() throws {
        raiseOpenFileLimit()
        var c = LoadConfiguration(label: label, server: try server.address(), credentials: try server.credentials())
        c.allocations = load.allocations
        c.payloadBytes = load.payload
        c.seconds = load.seconds
        c.directions = load.direction.directions
        c.batch = load.batch
        c.targetPPS = rate
        c.relayPID = server.relayPID
        c.showProgress = !server.quiet
        let generator = try LoadGenerator(configuration: c)
        try generator.setUp()
        writeStandardError("set up \(c.allocations) allocations with channels in \(fixed(generator.setupSeconds, 3)) s\n")
        let result = generator.run()
        generator.tearDown()
        print(Report.load(result))
        if let json {
            try JSONResults.encode(result).write(to: URL(fileURLWithPath: json), options: .atomic)
        }
    }
}
