import Foundation
import Glibc
import RelayIO
import SocketAddressing
import STUN
import Synchronization

// MARK: stream-soak

extension FloodRunner {
    /// The relay's TLS listener for `streamSoak` (port + 2) with a certificate made in the output
    /// directory (`makeBenchCertificate`).
    static func streamSoakArguments(_ c: FloodConfiguration) throws -> [String] {
        let (certificate, key) = try makeBenchCertificate(in: c.outputDirectory)
        return ["--tls-listen-port", "\(c.port + 2)", "--tls-cert", certificate, "--tls-key", key]
    }

    /// TURN over TLS for a long time: `legitAllocations` TLS clients relaying ChannelData at
    /// `legitPPS` through their allocations to a UDP peer that echoes (`StreamLoad`), while fresh
    /// clients come and go (`StreamChurn`, about 20 a second); then the relaying clients close
    /// and `settleSeconds` idle. RSS, open fds, allocations and stream connections sampled every
    /// second; allocations and connections must be back to 0 at the end. TCP allocations (RFC 6062)
    /// come and go beside them (`TCPAllocationChurn`, about 8 a second).
    static func streamSoak(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine,
                           lifetimes: String?) throws -> FloodResult {
        let tlsAddress = TransportAddress(ip: relay.listen.ip, port: c.port + 2)
        let tls = try TLSContext(clientALPN: "stun.turn")
        var lc = StreamLoadConfiguration(label: "legit-tls", transport: .tls, server: tlsAddress, credentials: relay.credentials)
        lc.clients = c.legitAllocations
        lc.targetPPS = c.legitPPS > 0 ? c.legitPPS : nil
        lc.seconds = c.seconds
        lc.relayPID = relay.pid
        lc.sourceSubnet = 121
        let load = try StreamLoad(configuration: lc, tls: tls)
        try load.setUp()
        let sampler = FloodSampler(relay: relay, maxSeconds: c.seconds + c.settleSeconds + 120)
        let start = monotonicNanoseconds()
        final class Outcome: @unchecked Sendable { var result: StreamLoadResult? }
        let outcome = Outcome()
        nonisolated(unsafe) let running = load
        let relaying = BenchThread { outcome.result = running.run() }
        let churn = StreamChurn(relay: relay, tlsAddress: tlsAddress, tls: tls, peer: load.peer.address,
                                endNanoseconds: start + UInt64((c.seconds + 60) * 1e9))
        let tcpAllocations = try TCPAllocationChurn(server: relay.listen, tlsServer: tlsAddress, tls: tls, credentials: relay.credentials,
                                                    endNanoseconds: start + UInt64((c.seconds + 60) * 1e9),
                                                    pauseNanoseconds: c.tcpAllocationPauseNanoseconds)
        let end = start + UInt64(c.seconds * 1e9)
        while monotonicNanoseconds() < end {
            progress.update("stream-soak \(fixed(Double(monotonicNanoseconds() - start) / 1e9, 0))/\(fixed(c.seconds, 0)) s, \(churn.tried) churning clients, \(tcpAllocations.tried) TCP allocations")
            sleepNanoseconds(min(1_000_000_000, end - min(end, monotonicNanoseconds())))
        }
        relaying.join()
        let churned = churn.finish()
        let (tcpTried, tcp) = tcpAllocations.finish()
        // The relaying clients' connections close: their allocations must end with them.
        load.tearDown()
        let soakSeconds = Double(monotonicNanoseconds() - start) / 1e9
        let (samples, after, peak) = settle("stream-soak", c, relay, sampler, progress)
        var f = [FloodFigure("seconds", "soak seconds", soakSeconds, digits: 1)]
        if let r = outcome.result {
            f += [
                FloodFigure("legit_sent", "TLS relaying: packets offered (\(r.clients) connections, client sends + peer echoes)", Double(r.clientSent + r.peerEchoed)),
                FloodFigure("legit_delivered", "TLS relaying: packets delivered (peer received + clients received)", Double(r.peerReceived + r.clientReceived)),
                FloodFigure("legit_loss_percent", "TLS relaying: loss, %", r.lossRatio * 100, digits: 3),
                FloodFigure("legit_client_dropped", "TLS relaying: messages the clients could not write (full socket)", Double(r.clientDropped)),
                FloodFigure("legit_rtt_p50_us", "TLS relaying: round trip p50, µs", r.roundTrip.p50, digits: 0),
                FloodFigure("legit_rtt_p99_us", "TLS relaying: round trip p99, µs", r.roundTrip.p99, digits: 0),
            ]
        }
        let tried = churned.tried, ok = churned.ok
        f += [
            FloodFigure("churn_tried", "clients that connected (TLS and TCP in turn), allocated, bound a channel and went", Double(tried)),
            FloodFigure("churn_success_percent", "of them, succeeded, %", tried == 0 ? .nan : Double(ok) * 100 / Double(tried), digits: 1),
            FloodFigure("churn_closed_without_delete", "of them, left by closing the connection only", Double(churned.closedOnly)),
        ]
        let tcpSuccess = tcpTried == 0 ? Double.nan : Double(tcp.ok) * 100 / Double(tcpTried)
        f += [
            FloodFigure("tcp_allocations_tried", "TCP allocations (RFC 6062, TCP and TLS in turn): one peer connection each, bytes both ways, then gone", Double(tcpTried)),
            FloodFigure("tcp_allocations_success_percent", "of them, succeeded (bytes intact, the peer connection closed by the relay after), %",
                        tcpSuccess, digits: 1),
            FloodFigure("tcp_allocations_peer_initiated", "of the successful, peer connections the peer opened (ConnectionAttempt)", Double(tcp.peerInitiated)),
            FloodFigure("tcp_allocations_closed_without_delete", "of the successful, left by closing the connections only", Double(tcp.closedOnly)),
            FloodFigure("tcp_allocations_bytes_checked", "bytes relayed over the peer connections and compared", Double(tcp.bytesChecked)),
        ]
        let maxStreams: Double = samples.map { $0.metric("streams_open") }.max() ?? 0
        let maxPeers: Double = samples.map { $0.metric("tcp_peers_open") }.max() ?? 0
        f += [
            FloodFigure("max_streams_open", "relay stream connections open, highest sample", maxStreams),
            FloodFigure("max_tcp_peers_open", "relay peer connections open (RFC 6062), highest sample", maxPeers),
            FloodFigure("allocations_after", "relay allocations active after the clients closed", after.metric("allocations")),
            FloodFigure("streams_open_after", "relay stream connections open after the clients closed", after.metric("streams_open")),
            FloodFigure("tcp_peers_open_after", "relay peer connections open after the clients closed", after.metric("tcp_peers_open")),
        ]
        f += soakFigures(c, samples: samples, before: before, peak: peak, after: after, soakSeconds: soakSeconds)
        var notes = lifetimeNotes(lifetimes)
        if !churned.failures.isEmpty {
            notes.append("churn failures: " + churned.failures.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        }
        if !tcp.failures.isEmpty {
            notes.append("TCP allocation failures: " + tcp.failures.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        }
        return FloodResult(scenario: .streamSoak, setting: "", figures: f, before: before, peak: peak, after: after, samples: samples, notes: notes)
    }
}

/// Fresh stream clients, one after another on a thread of its own until `finish` (or its end):
/// TLS and TCP in turn, each from its own address in 127.62.0.0/16, Allocate, ChannelBind to
/// `peer`, then gone. One client pair (TLS, TCP) in four sends Refresh 0 first; all others only
/// close the connection, which must end the allocation (it belongs to the connection's 5-tuple).
final class StreamChurn: @unchecked Sendable {
    private let stopping = Atomic<Bool>(false)
    private let attempts = Atomic<Int>(0)
    private var thread: BenchThread?
    private var result = (ok: 0, closedOnly: 0, failures: [String: Int]())

    var tried: Int { attempts.load(ordering: .relaxed) }

    /// Whether client `i` deletes its allocation before closing: pairs, so that both transports do.
    static func deletes(_ i: Int) -> Bool { (i / 2) % 4 == 3 }

    init(relay: FloodRelay, tlsAddress: TransportAddress, tls: TLSContext, peer: TransportAddress, endNanoseconds: UInt64) {
        nonisolated(unsafe) let relay = relay
        nonisolated(unsafe) let tls = tls
        thread = BenchThread { [self] in
            var i = 0
            while !stopping.load(ordering: .relaxed) && monotonicNanoseconds() < endNanoseconds {
                let transport: ClientTransport = i % 2 == 0 ? .tls : .tcp
                let source = TransportAddress(ip: .v4(IPv4Address(127 << 24 | 62 << 16 | UInt32(i & 0xFFFF))), port: 0)
                let delete = Self.deletes(i)
                do {
                    let connection = try StreamClient(transport: transport, server: transport == .tls ? tlsAddress : relay.listen,
                                                      source: source, tls: tls)
                    let cr = relay.credentials.credentials(index: 200_000 + i, nowUnixSeconds: unixSeconds())
                    let client = StreamTURNClient(connection: connection, username: cr.username, password: cr.password)
                    try client.request(.allocate(family: nil))
                    try client.request(.channelBind(channel: 0x4001, peer: peer))
                    if delete { try client.request(.refresh(lifetime: 0)) }
                    result.ok += 1
                    if !delete { result.closedOnly += 1 }
                } catch {
                    result.failures["\(transport.rawValue): \(error)".prefix(120).description, default: 0] += 1
                }
                // The client and its connection end here (the socket closes).
                i += 1
                attempts.store(i, ordering: .relaxed)
                sleepNanoseconds(50_000_000)
            }
        }
    }

    /// Stops the churn and waits for the client in flight; what it did.
    func finish() -> (tried: Int, ok: Int, closedOnly: Int, failures: [String: Int]) {
        stopping.store(true, ordering: .relaxed)
        thread?.join()
        thread = nil
        return (tried, result.ok, result.closedOnly, result.failures)
    }
}
