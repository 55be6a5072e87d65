import CUDP
import Foundation
import Glibc
import RelayIO
import SocketAddressing
import STUN

public struct TLSIdleConfiguration: Sendable {
    /// A server with `tlsListen` set.
    public var server: ServerSpec
    public var connections = 10_000
    /// Source addresses 127.0.0.2 ... 127.0.0.(1 + sources), connections spread round robin.
    public var sources = 254
    /// One Binding request on each connection once its handshake is done.
    public var binding = true
    public var holdSeconds = 5.0
    /// Metrics address of a turn-relay (GET /metrics), nil for none.
    public var metrics: TransportAddress?
    public var outputDirectory: String
    public var showProgress = true

    public init(server: ServerSpec, outputDirectory: String) {
        self.server = server
        self.outputDirectory = outputDirectory
    }
}

/// What `tls-idle` measured for one server.
public struct TLSIdleResult: Codable, Sendable, Equatable {
    public var server: String
    public var requested: Int
    /// Connections whose handshake (and Binding, when asked) completed.
    public var established: Int
    public var failed: Int
    public var firstFailure: String?
    public var bindingChecked: Bool
    public var connectSeconds: Double
    public var rssBeforeBytes: UInt64
    /// Right after the last connection was established (and 1 s of settling).
    public var rssAfterBytes: UInt64
    /// At the end of the hold, connections still open.
    public var rssAfterHoldBytes: UInt64
    public var holdSeconds: Double
    /// Connections the server had not closed at the end of the hold.
    public var stillOpenAfterHold: Int
    /// relay_stream_connections_open{transport="tls"} at the end of the hold (turn-relay only).
    public var metricsOpenTLS: Double?
    /// relay_tls_handshakes_total{result="ok"} (or whatever success label the relay uses).
    public var metricsHandshakes: [String: Double]
    public var relayCPUSeconds: Double?

    /// Resident bytes per held connection: (RSS at the end of the hold − RSS before) ÷ established.
    public var bytesPerConnection: Double? {
        guard established > 0 else { return nil }
        return (Double(rssAfterHoldBytes) - Double(rssBeforeBytes)) / Double(established)
    }
}

public enum TLSIdleRunner {
    /// Starts the server, opens the connections, holds them, reports, closes them and stops it.
    public static func run(_ c: TLSIdleConfiguration) throws -> TLSIdleResult {
        let progress = ProgressLine(enabled: c.showProgress)
        guard let tlsAddress = c.server.tlsListen else { throw LoadError.setupFailed("\(c.server.name) serves no TLS") }
        let tls = try TLSContext(clientALPN: "stun.turn")
        let p = try ServerProcess.startReady(c.server, logDirectory: c.outputDirectory)
        defer { p.stop() }
        sleepNanoseconds(500_000_000)
        let rssBefore = ProcessStats.residentBytes(pid: p.pid) ?? 0
        let cpu0 = ProcessStats.preciseCPUSeconds(pid: p.pid)
        if c.showProgress { progress.log("\(c.server.name), PID \(p.pid): RSS before \(rssBefore / 1024) KiB; opening \(c.connections) TLS connections to \(tlsAddress)") }
        var held: [Int32] = []
        held.reserveCapacity(c.connections)
        defer { for fd in held { close(fd) } }
        var failed = 0
        var firstFailure: String?
        let start = monotonicNanoseconds()
        // Bounded: at most 10 minutes for the whole connect phase.
        let deadline = start + 600_000_000_000
        for i in 0..<c.connections {
            guard monotonicNanoseconds() < deadline, p.process.isRunning else {
                failed += c.connections - i
                firstFailure = firstFailure ?? (p.process.isRunning ? "connect phase over 10 minutes" : "server exited")
                break
            }
            let source = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, UInt8(2 + i % max(1, min(c.sources, 254))))), port: 0)
            do {
                let connection = try StreamClient(transport: .tls, server: tlsAddress, source: source, tls: tls)
                if c.binding {
                    let client = StreamTURNClient(connection: connection, username: "", password: "")
                    try client.request(.binding)
                }
                // Keep only the descriptor: the bench's own TLS state is not what is measured.
                let fd = dup(connection.fd)
                guard fd >= 0 else { throw StreamClient.Failure("dup: \(String(cString: strerror(errno)))") }
                held.append(fd)
            } catch {
                failed += 1
                if firstFailure == nil { firstFailure = "connection \(i): \(error)" }
                // A limit or an exhausted resource: more of the same will not help.
                if failed >= 100 { firstFailure! += " (stopped after 100 failures)"; failed += c.connections - i - 1; break }
            }
            if i % 500 == 499 { progress.update("\(c.server.name): \(held.count) held, \(failed) failed") }
        }
        progress.finish()
        let connectSeconds = Double(monotonicNanoseconds() - start) / 1e9
        sleepNanoseconds(1_000_000_000)
        let rssAfter = ProcessStats.residentBytes(pid: p.pid) ?? 0
        if c.showProgress { progress.log("\(c.server.name): \(held.count) held, \(failed) failed in \(fixed(connectSeconds, 1)) s; RSS \(rssAfter / 1024) KiB; holding \(fixed(c.holdSeconds, 0)) s") }
        sleepNanoseconds(UInt64(c.holdSeconds * 1e9))
        let rssHold = ProcessStats.residentBytes(pid: p.pid) ?? 0
        let cpu1 = ProcessStats.preciseCPUSeconds(pid: p.pid)
        var metricsOpen: Double?
        var handshakes: [String: Double] = [:]
        if let m = c.metrics, let text = httpGet(m, path: "/metrics") {
            metricsOpen = PrometheusText.value(text, name: "relay_stream_connections_open", labels: ["transport": "tls"])
            for (labels, v) in PrometheusText.samples(text, name: "relay_tls_handshakes_total") {
                handshakes[labels["result"] ?? "-"] = v
            }
        }
        let open = stillOpen(held)
        var cpu: Double?
        if let a = cpu0, let b = cpu1 { cpu = b - a }
        return TLSIdleResult(server: c.server.name, requested: c.connections, established: held.count, failed: failed,
                             firstFailure: firstFailure, bindingChecked: c.binding, connectSeconds: connectSeconds,
                             rssBeforeBytes: rssBefore, rssAfterBytes: rssAfter, rssAfterHoldBytes: rssHold,
                             holdSeconds: c.holdSeconds, stillOpenAfterHold: open, metricsOpenTLS: metricsOpen,
                             metricsHandshakes: handshakes, relayCPUSeconds: cpu)
    }

    /// How many of `fds` the server has not closed (no POLLHUP/POLLRDHUP, nothing to read).
    static func stillOpen(_ fds: [Int32]) -> Int {
        var p = fds.map { pollfd(fd: $0, events: Int16(POLLIN) | 0x2000 /* POLLRDHUP */, revents: 0) }
        _ = poll(&p, nfds_t(p.count), 0)
        return p.filter { $0.revents == 0 }.count
    }

    /// Markdown table of results, one line per server.
    public static func render(_ results: [TLSIdleResult]) -> String {
        var out = ["| server | connections held | failed | connect s | RSS before KiB | RSS after KiB | RSS after hold KiB | bytes/connection | KiB/connection | open at end | relay_stream_connections_open{tls} |",
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results {
            let per = r.bytesPerConnection
            out.append("| \(r.server) | \(r.established) | \(r.failed) | \(fixed(r.connectSeconds, 1)) | \(r.rssBeforeBytes / 1024) | \(r.rssAfterBytes / 1024) | \(r.rssAfterHoldBytes / 1024) | \(per.map { fixed($0, 0) } ?? "-") | \(per.map { fixed($0 / 1024, 2) } ?? "-") | \(r.stillOpenAfterHold) | \(r.metricsOpenTLS.map { fixed($0, 0) } ?? "-") |")
        }
        return out.joined(separator: "\n")
    }
}

/// A blocking HTTP/1.0 GET on loopback (bounded: 2 s); the body, nil on failure.
public func httpGet(_ address: TransportAddress, path: String) -> String? {
    guard address.ip.isLoopback else { return nil }
    let a = cu_addr(address)
    let fd = socket(Int32(a.sa.sa_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: 2, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    guard a.withSockaddr({ connect(fd, $0, $1) }) == 0 else { return nil }
    let request = Array("GET \(path) HTTP/1.0\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while response.count < 16 << 20 {
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n <= 0 { break }
        response += chunk[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return nil }
    return String(text[split.upperBound...])
}

/// Reading the Prometheus text format (what the relay's /metrics serves).
public enum PrometheusText {
    /// Every sample of `name`: its labels and value.
    public static func samples(_ text: String, name: String) -> [([String: String], Double)] {
        var out: [([String: String], Double)] = []
        for line in text.split(separator: "\n") where line.hasPrefix(name) && !line.hasPrefix("#") {
            let rest = line.dropFirst(name.count)
            var labels: [String: String] = [:]
            var valuePart = rest
            if rest.first == "{" {
                guard let close = rest.firstIndex(of: "}") else { continue }
                for pair in rest[rest.index(after: rest.startIndex)..<close].split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2 else { continue }
                    labels[String(kv[0]).trimmingCharacters(in: .whitespaces)] = String(kv[1]).trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
                }
                valuePart = rest[rest.index(after: close)...]
            } else if rest.first != " " {
                continue // another metric whose name starts with `name`
            }
            guard let v = valuePart.split(separator: " ").first.flatMap({ Double($0) }) else { continue }
            out.append((labels, v))
        }
        return out
    }

    /// The sum of the samples of `name` whose labels include `labels` (nil when there is none):
    /// `relay_relayed_packets_total{direction="client_to_peer"}` is one series per `datapath`, and
    /// the first of them alone was 0 whenever the `xdp` one came first.
    public static func value(_ text: String, name: String, labels: [String: String] = [:]) -> Double? {
        let matching = samples(text, name: name).filter { s in labels.allSatisfy { s.0[$0.key] == $0.value } }
        return matching.isEmpty ? nil : matching.reduce(0) { $0 + $1.1 }
    }
}

/// Everything `tls-idle` measured, as written to tls-idle.json.
public struct TLSIdleReport: Codable, Sendable, Equatable {
    public var machine: Machine
    public var command: String
    public var results: [TLSIdleResult]
    public var errors: [String]

    public init(machine: Machine, command: String, results: [TLSIdleResult], errors: [String]) {
        self.machine = machine
        self.command = command
        self.results = results
        self.errors = errors
    }

    public func render() -> String {
        var out = ["Machine: \(machine.summary)", "", "Command: `\(command)`", "", TLSIdleRunner.render(results)]
        for r in results {
            if let f = r.firstFailure { out.append(""); out.append("\(r.server): first failure: \(f)") }
            if !r.metricsHandshakes.isEmpty {
                out.append("")
                out.append("\(r.server): relay_tls_handshakes_total " + r.metricsHandshakes.sorted { $0.key < $1.key }.map { "\($0.key)=\(fixed($0.value, 0))" }.joined(separator: ", "))
            }
            if let m = r.metricsOpenTLS, Int(m) != r.established {
                out.append("")
                out.append("\(r.server): relay_stream_connections_open{transport=\"tls\"} = \(fixed(m, 0)) ≠ \(r.established) held")
            }
        }
        if !errors.isEmpty { out.append(""); out.append("Errors:"); out += errors.map { "- " + $0 } }
        return out.joined(separator: "\n") + "\n"
    }
}
