import ArgumentParser
import Foundation
import RelayIO
import TurnBenchKit

struct Streams: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "streams",
        abstract: "TURN over UDP, TCP and TLS: turn-relay and coturn side by side at fixed loads; CPU per relayed packet.",
        discussion: """
        Makes a self-signed P-256 certificate (openssl req -x509) in --out, starts
        turn-relay and coturn's turnserver with it (TURN over TCP on the listen
        port, TLS on its own port, loopback peers allowed, --threads threads),
        then for every round, client transport (--transports) and rate (--rates)
        runs the same load against each server in turn (A B A B ...). Round 1 is
        a warm-up, left out of the table.

        One load: --clients clients, each with its own connection (TCP, TLS with
        ALPN stun.turn) or UDP socket, its own allocation and a channel to one
        UDP peer that echoes every datagram back. Each client sends paced
        ChannelData (--payload bytes, padded to 4 over streams, one write and one
        TLS record per packet) so that client sends + peer echoes = the rate;
        0 = flat out: each client keeps --window packets in flight.

        Figures (medians over the kept rounds, per transport and rate):
          delivered pps   packets the peer received + echoes the clients received
          loss            1 − delivered / (client sends + peer echoes)
          CPU µs/pkt      relay user+system CPU (schedstat of all its threads)
                          over the window ÷ relayed packets delivered
          ratio           turn-relay / coturn
          p99 µs          round trip client → peer → client
        Files in --out: results.json (every run), table.md, cert.pem/key.pem and
        the servers' logs.
        """
    )

    @Option(help: "turn-relay executable (default: next to turn-bench). 'none' to leave it out.")
    var relay: String?

    @Option(help: "More turn-relay arguments, space-separated (e.g. '--receive-buffers 256').")
    var relayExtra: String = ""

    @Option(help: "coturn's turnserver executable. 'none' to leave it out.")
    var coturn: String = "/usr/bin/turnserver"

    @Option(help: "Client transports, comma-separated: udp, tcp, tls.")
    var transports: String = "udp,tcp,tls"

    @Option(help: "Offered relayed packets per second (both directions together), comma-separated; 0 = flat out.")
    var rates: String = "5000,20000,0"

    @Option(help: "Rounds including the discarded warm-up (at least 2).")
    var rounds: Int = 3

    @Option(help: "Clients, each with its own connection, allocation and channel.")
    var clients: Int = 16

    @Option(help: "Payload bytes per packet (at least 24).")
    var payload: Int = 100

    @Option(help: "Sending time per run, seconds (at most 60).")
    var seconds: Double = 2

    @Option(help: "Flat out: packets each client keeps in flight.")
    var window: Int = 32

    @Option(help: "Highest TLS version the clients offer: 1.3 (each server picks its best; coturn 4.6.1 picks 1.2) or 1.2 (both 1.2).")
    var tlsMax: String = "1.3"

    @Option(help: "Worker threads for turn-relay (--workers) and relay threads for coturn (--relay-threads).")
    var threads: Int = 1

    @Option(help: "First port: turn-relay gets it (and +2 for TLS), coturn the next one (and +2 for TLS).")
    var port: UInt16 = 34_890

    @Option(help: "Directory for results.json, table.md, the certificate and the server logs.")
    var out: String = "streams-results"

    @Flag(help: "No live progress on stderr.")
    var quiet = false

    func validate() throws {
        guard (2...20).contains(rounds) else { throw ValidationError("--rounds must be 2...20") }
        guard (1...1000).contains(clients) else { throw ValidationError("--clients must be 1...1000") }
        guard (24...1400).contains(payload) else { throw ValidationError("--payload must be 24...1400") }
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be in (0, 60]") }
        guard (1...1024).contains(window) else { throw ValidationError("--window must be 1...1024") }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1...64") }
        guard !parsedRates.isEmpty else { throw ValidationError("--rates: give comma-separated numbers") }
        guard let t = parsedTransports, !t.isEmpty else { throw ValidationError("--transports: udp, tcp, tls") }
        guard tlsMax == "1.2" || tlsMax == "1.3" else { throw ValidationError("--tls-max: 1.2 or 1.3") }
    }

    var parsedRates: [Double] { StreamsArguments.rates(rates) }
    var parsedTransports: [ClientTransport]? { StreamsArguments.transports(transports) }

    func run() throws {
        raiseOpenFileLimit()
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let outPath = URL(fileURLWithPath: out).standardizedFileURL.path
        let cert = try makeBenchCertificate(in: outPath)
        let common = ServerSpec.Common(secret: "bench-\(UInt32.random(in: 0...UInt32.max))", realm: "bench", threads: threads, logDirectory: outPath)
        var servers: [ServerSpec] = []
        let relayPath = relay ?? siblingExecutable("turn-relay")
        if relayPath != "none" {
            guard FileManager.default.isExecutableFile(atPath: relayPath) else { throw ValidationError("turn-relay not found at \(relayPath); build it or pass --relay none") }
            let template = ServerSpec.defaultTurnRelayTemplate + relayExtra.split(separator: " ").map(String.init)
            servers.append(ServerSpec.turnRelay(executable: relayPath, template: template, port: port,
                                                ports: 20000...24999, common: common)
                .setting("--max-connections-per-source", String(max(100, clients * 2)))
                .withTLS(port: port + 2, certificate: cert.certificate, key: cert.key))
        }
        if coturn != "none" {
            if FileManager.default.isExecutableFile(atPath: coturn) {
                servers.append(ServerSpec.coturn(executable: coturn, port: port + 1, ports: 10000...19999, common: common)
                    .withTLS(port: port + 3, certificate: cert.certificate, key: cert.key))
            } else {
                writeStandardError("coturn not found at \(coturn) (Debian package 'coturn'); measuring turn-relay alone\n")
            }
        }
        guard !servers.isEmpty else { throw ValidationError("nothing to measure") }
        var c = StreamsConfiguration(servers: servers, rates: parsedRates, secret: common.secret, outputDirectory: outPath)
        c.transports = parsedTransports ?? ClientTransport.allCases
        c.rounds = rounds
        c.clients = clients
        c.payloadBytes = payload
        c.seconds = seconds
        c.window = window
        c.tlsMaximumVersion = tlsMax == "1.2" ? .tls12 : .tls13
        c.showProgress = !quiet
        c.command = CommandLine.arguments.joined(separator: " ")
        let report = try StreamsRunner.run(c)
        print(try StreamsRunner.write(report, to: outPath))
        print("wrote \(outPath)/{results.json,table.md}")
    }
}
