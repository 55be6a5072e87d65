import Foundation
import STUN
import Testing
import TestSupport
@testable import TurnBenchKit

// `streams` and `tls-idle`: arguments, server settings, figures and tables, and a tiny run of
// each against the turn-relay binary (behaviour, not speed).

@Test func streamsArgumentLists() {
    #expect(StreamsArguments.rates("5000, 20000,0") == [5000, 20000, 0])
    #expect(StreamsArguments.rates("5000,fast").isEmpty)
    #expect(StreamsArguments.rates("-1").isEmpty)
    #expect(StreamsArguments.transports("udp,TCP, tls") == [.udp, .tcp, .tls])
    #expect(StreamsArguments.transports("udp,dtls") == nil)
    #expect(StreamsArguments.transports("") == nil)
}

@Test func serversGetTLSWithTheSameCertificate() {
    let common = ServerSpec.Common(secret: "s", realm: "r", threads: 1, logDirectory: "/tmp")
    let coturn = ServerSpec.coturn(executable: "/usr/bin/turnserver", port: 4000, ports: 10000...10010, common: common)
        .withTLS(port: 4003, certificate: "/c.pem", key: "/k.pem")
    #expect(!coturn.arguments.contains("--no-tls"))
    #expect(coturn.arguments.contains("--no-dtls"))
    #expect(coturn.arguments.suffix(6) == ["--tls-listening-port", "4003", "--cert", "/c.pem", "--pkey", "/k.pem"])
    #expect(coturn.tlsListen == TransportAddress("127.0.0.1:4003"))

    let relay = ServerSpec.turnRelay(executable: "/bin/turn-relay", template: ServerSpec.defaultTurnRelayTemplate, port: 4000,
                                     ports: 20000...20010, common: common)
        .setting("--metrics-addr", "127.0.0.1:4004")
        .setting("--max-connections-per-source", "500")
        .withTLS(port: 4002, certificate: "/c.pem", key: "/k.pem")
    let args = relay.arguments
    #expect(args.filter { $0 == "--metrics-addr" }.count == 1)
    #expect(args[args.firstIndex(of: "--metrics-addr")! + 1] == "127.0.0.1:4004")
    #expect(args[args.firstIndex(of: "--max-connections-per-source")! + 1] == "500")
    #expect(args.suffix(6) == ["--tls-listen-port", "4002", "--tls-cert", "/c.pem", "--tls-key", "/k.pem"])
    #expect(relay.tlsListen == TransportAddress("127.0.0.1:4002"))
}

func streamResult(_ server: String, _ transport: ClientTransport, round: Int, target: Double, cpu: Double?) -> StreamLoadResult {
    StreamLoadResult(server: server, transport: transport, round: round, clients: 2, payloadBytes: 100, targetPPS: target,
                     seconds: 2, clientSent: 1000, peerReceived: 990, peerEchoed: 990, clientReceived: 980, clientDropped: 0,
                     relayCPUSeconds: cpu, benchCPUSeconds: 0.1,
                     roundTrip: LatencySummary(count: 980, p50: 50, p90: 70, p99: 90, p999: 100, max: 120))
}

@Test func streamFiguresCountBothDirections() {
    let r = streamResult("turn-relay", .tls, round: 1, target: 1000, cpu: 0.0197)
    #expect(r.offeredPPS == 995)
    #expect(r.deliveredPPS == 985)
    #expect(abs(r.lossRatio - (1 - 1970.0 / 1990.0)) < 1e-12)
    #expect(abs(r.relayCPUMicrosPerPacket! - 10) < 1e-9)
    let row = r.row(server: "A")
    #expect(row.server == "A" && row.targetPPS == 1000 && row.p99Micros == 90)
    #expect(streamResult("x", .udp, round: 0, target: 0, cpu: nil).relayCPUMicrosPerPacket == nil)
    #expect(r.relayWakeUpsPerPacket == nil, "not measured")
    var woken = r
    woken.relayTimesScheduled = 394
    #expect(abs(woken.relayWakeUpsPerPacket! - 0.2) < 1e-12, "394 wake-ups for 1,970 relayed packets")
    #expect(r.relaySystemShare == nil && r.relaySystemMicrosPerPacket == nil, "not measured")
    var split = r
    (split.relayUserTicks, split.relaySystemTicks) = (1, 3)
    #expect(split.relaySystemShare == 0.75)
    #expect(abs(split.relaySystemMicrosPerPacket! - 7.5) < 1e-9, "three quarters of 10 µs")
    split.relayUserTicks = 0
    split.relaySystemTicks = 0
    #expect(split.relaySystemShare == nil, "no tick in the window: no share")
}

@Test func statTextSplitsUserAndSystemTicks() {
    // A command name with a space and a parenthesis; utime (field 14) 120, stime (field 15) 345.
    let text = "4242 (turn relay) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 120 345 0 0 20 0 3 0 100 1000 50"
    let split = ProcessStats.cpuTickSplit(statText: text)
    #expect(split?.user == 120 && split?.system == 345)
    #expect(ProcessStats.cpuTicks(statText: text) == 465)
    #expect(ProcessStats.cpuTickSplit(statText: "4242 (short) S 1") == nil)
}

@Test func streamsReportShowsWakeUpsAndTheMedianRoundTripPerRate() {
    var runs: [StreamLoadResult] = []
    for round in 0..<3 {
        for target in [20000.0, 0, 5000] {
            var relay = streamResult("turn-relay", .tls, round: round, target: target, cpu: 0.01)
            relay.relayTimesScheduled = round == 0 ? 5000 : UInt64(197 * round)  // rounds 1, 2: 0.1, 0.2
            relay.roundTrip.p50 = Double(1000 * round)
            (relay.relayUserTicks, relay.relaySystemTicks) = (1, UInt64(round))  // rounds 1, 2: 50 %, 66.7 %
            runs.append(relay)
            runs.append(streamResult("coturn", .tls, round: round, target: target, cpu: 0.02))
        }
    }
    let machine = Machine(processors: 2, kernel: "Linux", cpuModel: "test", loadAverage: "0 0 0")
    let md = StreamsReport(machine: machine, command: "c", servers: ["turn-relay", "coturn"], runs: runs, errors: []).render()
    let table = md.components(separatedBy: "| target pps | server | wake-ups per relayed packet | RTT p50 µs | kernel share of CPU | kernel µs/pkt |")
    #expect(table.count == 2)
    let rows = table.last!.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("|---") }.prefix(6)
    // turn-relay: 0.01 s of CPU for 1,970 packets = 5.076 µs; kernel shares 1/2 and 2/3: medians 58.3 %, 2.96 µs.
    #expect(Array(rows) == [
        "| 5000 | turn-relay | 0.150 | 1500 | 58.3 % | 2.96 |", "| 5000 | coturn | - | 50 | - | - |",
        "| 20000 | turn-relay | 0.150 | 1500 | 58.3 % | 2.96 |", "| 20000 | coturn | - | 50 | - | - |",
        "| flat out | turn-relay | 0.150 | 1500 | 58.3 % | 2.96 |", "| flat out | coturn | - | 50 | - | - |",
    ], "paced rates ascending, flat out last; the warm-up round left out")
}

@Test func streamsTableHasOneSectionPerTransportAndTheTLSRatio() throws {
    var runs: [StreamLoadResult] = []
    for round in 0..<3 {
        for t in [ClientTransport.udp, .tls] {
            for target in [5000.0, 0] {
                runs.append(streamResult("turn-relay", t, round: round, target: target, cpu: round == 0 ? 1 : 0.00985))
                runs.append(streamResult("coturn", t, round: round, target: target, cpu: round == 0 ? 1 : 0.0394))
            }
        }
    }
    let machine = Machine(processors: 2, kernel: "Linux", cpuModel: "test", loadAverage: "0 0 0")
    let report = StreamsReport(machine: machine, command: "turn-bench streams", servers: ["turn-relay", "coturn"], runs: runs, errors: [])
    let tables = report.tables()
    #expect(tables.map(\.transport) == [.udp, .tls])
    #expect(tables[1].table.rows.map(\.targetPPS) == [5000, 0])
    #expect(tables[1].table.rows[0].a?.rounds == 2) // warm-up left out
    #expect(abs(tables[1].table.rows[0].cpuRatio! - 0.25) < 1e-9)
    let md = report.render()
    #expect(md.contains("### Client transport: udp"))
    #expect(md.contains("### Client transport: tls"))
    #expect(!md.contains("### Client transport: tcp"))
    #expect(md.contains("| 5000 |"))
    #expect(md.contains("| flat out |"))
    #expect(md.contains("(goal ≤ 0.50×): 5000 pps: 0.25×, flat out: 0.25×"))
    let decoded = try JSONResults.decode(StreamsReport.self, from: try JSONResults.encode(report))
    #expect(decoded == report)
}

@Test func prometheusTextSamples() {
    let text = """
    # HELP relay_stream_connections_open Client connections open.
    # TYPE relay_stream_connections_open gauge
    relay_stream_connections_open{transport="tcp"} 3
    relay_stream_connections_open{transport="tls"} 10000
    relay_stream_connections_open_total 7
    relay_tls_handshakes_total{result="ok"} 10001
    relay_tls_handshakes_total{result="failed"} 2
    """
    #expect(PrometheusText.value(text, name: "relay_stream_connections_open", labels: ["transport": "tls"]) == 10000)
    #expect(PrometheusText.value(text, name: "relay_stream_connections_open", labels: ["transport": "udp"]) == nil)
    #expect(PrometheusText.samples(text, name: "relay_stream_connections_open").count == 2)
    #expect(PrometheusText.samples(text, name: "relay_tls_handshakes_total").count == 2)
    // A figure over several series (one per datapath) is their sum, whichever comes first.
    let relayed = """
    relay_relayed_packets_total{datapath="xdp",direction="client_to_peer"} 0
    relay_relayed_packets_total{datapath="userspace",direction="client_to_peer"} 80000
    relay_relayed_packets_total{datapath="userspace",direction="peer_to_client"} 5
    """
    #expect(PrometheusText.value(relayed, name: "relay_relayed_packets_total", labels: ["direction": "client_to_peer"]) == 80000)
    #expect(PrometheusText.value(relayed, name: "relay_relayed_packets_total") == 80005)
}

@Test func tlsIdleTable() {
    let r = TLSIdleResult(server: "turn-relay", requested: 4, established: 4, failed: 0, firstFailure: nil, bindingChecked: true,
                          connectSeconds: 0.5, rssBeforeBytes: 10 << 20, rssAfterBytes: (10 << 20) + 40960,
                          rssAfterHoldBytes: (10 << 20) + 49152, holdSeconds: 1, stillOpenAfterHold: 4, metricsOpenTLS: 4,
                          metricsHandshakes: ["ok": 4], relayCPUSeconds: 0.01)
    #expect(r.bytesPerConnection == 12288)
    let md = TLSIdleRunner.render([r])
    #expect(md.contains("| turn-relay | 4 | 0 | 0.5 | 10240 | 10280 | 10288 | 12288 | 12.00 | 4 | 4 |"))
}

/// The turn-relay binary next to the test bundle (or TURN_RELAY_BINARY).
func benchRelayBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["TURN_RELAY_BINARY"], !path.isEmpty { return path }
    var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    while directory.pathExtension == "xctest" { directory = directory.deletingLastPathComponent() }
    let candidate = directory.appendingPathComponent("turn-relay").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
        Issue.record("no turn-relay binary at \(candidate): build it first (swift build --build-tests)")
        throw CancellationError()
    }
    return candidate
}

func temporaryDirectory(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "turn-bench-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// `count` consecutive ports for a relay under test (`ListenPortClaims.freePorts`).
func freeBenchPorts(_ count: UInt16, in range: ClosedRange<UInt16> = 20000...32000) throws -> UInt16 {
    try ListenPortClaims.freePorts(count, in: range)
}

@Test(.timeLimit(.minutes(1))) func tinyStreamsRunDeliversOverEveryTransport() throws {
    let dir = try temporaryDirectory("streams")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let cert = try makeBenchCertificate(in: dir)
    let common = ServerSpec.Common(secret: "test-secret", realm: "bench", threads: 1, logDirectory: dir)
    let port = try freeBenchPorts(4)
    let spec = ServerSpec.turnRelay(executable: try benchRelayBinary(), template: ServerSpec.defaultTurnRelayTemplate, port: port,
                                    ports: 45000...45999, common: common)
        .withTLS(port: port + 2, certificate: cert.certificate, key: cert.key)
    var c = StreamsConfiguration(servers: [spec], rates: [2000], secret: common.secret, outputDirectory: dir)
    c.rounds = 2
    c.clients = 2
    c.seconds = 1
    c.showProgress = false
    let report = try StreamsRunner.run(c)
    #expect(report.errors.isEmpty, "\(report.errors)")
    #expect(report.runs.count == 6)
    for r in report.runs {
        #expect(r.clients == 2)
        #expect(r.peerReceived > 0, "\(r.transport): nothing reached the peer")
        #expect(r.clientReceived > 0, "\(r.transport): nothing came back to the clients")
        #expect(r.relayCPUSeconds != nil)
    }
    let md = try StreamsRunner.write(report, to: dir)
    for t in ClientTransport.allCases { #expect(md.contains("### Client transport: \(t.rawValue)")) }
    #expect(md.contains("| 2000 |"))
    #expect(FileManager.default.fileExists(atPath: dir + "/results.json"))
}

@Test(.timeLimit(.minutes(1))) func tinyTLSIdleRunHoldsEveryConnection() throws {
    let dir = try temporaryDirectory("tls-idle")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let cert = try makeBenchCertificate(in: dir)
    let common = ServerSpec.Common(secret: "test-secret", realm: "bench", threads: 1, logDirectory: dir)
    let port = try freeBenchPorts(8)
    let metrics = TransportAddress(ip: .v4(.loopback), port: port + 4)
    let spec = ServerSpec.turnRelay(executable: try benchRelayBinary(), template: ServerSpec.defaultTurnRelayTemplate, port: port,
                                    ports: 51000...51999, common: common)
        .setting("--metrics-addr", metrics.description)
        .withTLS(port: port + 2, certificate: cert.certificate, key: cert.key)
    var c = TLSIdleConfiguration(server: spec, outputDirectory: dir)
    c.connections = 20
    c.sources = 3
    c.holdSeconds = 0.2
    c.metrics = metrics
    c.showProgress = false
    let r = try TLSIdleRunner.run(c)
    #expect(r.established == 20, "\(r.firstFailure ?? "")")
    #expect(r.failed == 0)
    #expect(r.stillOpenAfterHold == 20)
    #expect(r.metricsOpenTLS == 20)
    #expect(r.rssBeforeBytes > 0 && r.rssAfterHoldBytes > 0)
}
