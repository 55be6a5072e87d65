import ArgumentParser
import Foundation
import STUN
import TurnBenchKit

struct TurnBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "turn-bench",
        abstract: "Packet-rate measurements for TURN relays on loopback.",
        discussion: """
        Modes:
          load        drive ChannelData through N allocations of any TURN server and
                      measure it
          alloc-rate  allocations set up and torn down per second; N concurrent
                      allocations' setup rate and the relay's memory per allocation
          compare     start turn-relay and coturn's turnserver with equivalent
                      settings and run the same loads against each in alternation
                      (A B A B ...)
          core        drive RelayCore.Server in process (no sockets): ns per packet,
                      heap allocations per packet, slow-path requests per second
          lab         (root) relays in a network namespace, generator in another,
                      over veth: turn-relay with XDP, io_uring only, coturn;
                      interleaved and bursty traffic, machine CPU per packet
          streams     turn-relay and coturn with clients over UDP, TCP and TLS side by
                      side at fixed loads: delivered pps, loss, CPU per relayed packet
          tls-idle    hold N idle TURN-over-TLS connections; the relay's RSS per
                      connection
          flood       floods and exhaustion against a turn-relay it starts: unauth,
                      nat, exhaust, reload, junk, churn (RSS, fds, legitimate success)

        Traffic goes to loopback only (127.0.0.0/8, ::1), or, for `lab`, to the
        namespaces it creates. Every run is bounded in time. Run `turn-bench help <mode>` for the figures each mode reports.
        """,
        subcommands: [Load.self, AllocRate.self, Compare.self, Core.self, Lab.self, Streams.self, TLSIdle.self, Flood.self]
    )
}

/// Options shared by the modes that talk to a TURN server.
struct ServerOptions: ParsableArguments {
    @Option(help: "TURN server, HOST:PORT on loopback (e.g. 127.0.0.1:3478 or [::1]:3478).")
    var server: String = "127.0.0.1:3478"

    @Option(help: "TURN REST shared secret (username '<expiry>:benchN', password base64(HMAC-SHA1(secret, username))).")
    var secret: String?

    @Option(help: "Static long-term credentials, name:password.")
    var user: String?

    @Option(help: "PID of the relay, to read its CPU time (/proc/PID/stat) and memory (/proc/PID/status).")
    var relayPID: Int32?

    @Flag(help: "No live progress line on stderr.")
    var quiet = false

    func address() throws -> TransportAddress {
        guard let a = TransportAddress(server) else { throw ValidationError("--server: cannot parse '\(server)'") }
        guard a.ip.isLoopback else { throw ValidationError("--server must be a loopback address") }
        return a
    }

    func credentials() throws -> CredentialSource {
        if let secret { return .restSecret(secret) }
        if let user {
            guard let c = CredentialSource.parseUser(user) else { throw ValidationError("--user must be name:password") }
            return c
        }
        throw ValidationError("give --secret or --user")
    }
}

enum DirectionOption: String, ExpressibleByArgument, CaseIterable {
    case both, c2p, p2c
    var directions: [Direction] {
        switch self {
        case .both: return [.clientToPeer, .peerToClient]
        case .c2p: return [.clientToPeer]
        case .p2c: return [.peerToClient]
        }
    }
}

/// Options describing one load.
struct LoadOptions: ParsableArguments {
    @Option(help: "Concurrent allocations, each with one client socket, one peer socket and one channel.")
    var allocations: Int = 64

    @Option(help: "Payload bytes per datagram (at least 24: flow, sequence number, send time).")
    var payload: Int = 100

    @Option(help: "Sending time per run, seconds (at most 120).")
    var seconds: Double = 5

    @Option(help: "Which way: both, c2p (client → peer), p2c (peer → client).")
    var direction: DirectionOption = .both

    @Option(help: "Datagrams per sendmmsg.")
    var batch: Int = 32

    func validate() throws {
        guard (1...20_000).contains(allocations) else { throw ValidationError("--allocations must be 1...20000") }
        guard (BenchPayload.headerLength...1400).contains(payload) else { throw ValidationError("--payload must be 24...1400") }
        guard seconds > 0 && seconds <= 120 else { throw ValidationError("--seconds must be in (0, 120]") }
        guard (1...256).contains(batch) else { throw ValidationError("--batch must be 1...256") }
    }
}
