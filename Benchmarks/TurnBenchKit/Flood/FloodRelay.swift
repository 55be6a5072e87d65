import Foundation
import Glibc
import STUN

/// One reading of the relay under test: resident memory, open descriptors and the /metrics
/// counters the flood scenarios look at.
public struct FloodSample: Codable, Sendable, Equatable {
    /// Seconds since the scenario started.
    public var seconds: Double
    public var rssKiB: UInt64
    public var fds: Int
    /// Selected counters and gauges by short name (`FloodRelay.counters`).
    public var metrics: [String: Double]

    public init(seconds: Double, rssKiB: UInt64, fds: Int, metrics: [String: Double]) {
        self.seconds = seconds
        self.rssKiB = rssKiB
        self.fds = fds
        self.metrics = metrics
    }

    public func metric(_ name: String) -> Double { metrics[name] ?? 0 }
}

/// A turn-relay the flood scenarios start themselves (through `ServerProcess`), with /metrics on
/// loopback, and read from /proc and /metrics.
public final class FloodRelay {
    public let process: ServerProcess
    public let listen: TransportAddress
    public let metricsAddress: TransportAddress
    public let credentials: CredentialSource
    /// The relay port range it was given.
    public let ports: ClosedRange<UInt16>
    public let start = monotonicNanoseconds()
    public var pid: Int32 { process.pid }

    /// `extra` is appended to the default template; an option already there (`--min-port 1`)
    /// has its value replaced.
    public init(_ c: FloodConfiguration, extra: [String], ports: ClosedRange<UInt16>? = nil) throws {
        let secret = "flood-\(UInt32.random(in: 0...UInt32.max))"
        credentials = .restSecret(secret)
        let common = ServerSpec.Common(secret: secret, realm: "flood", threads: c.workers, logDirectory: c.outputDirectory)
        metricsAddress = TransportAddress(ip: .v4(.loopback), port: c.port + 4)
        self.ports = ports ?? c.relayPorts
        var spec = ServerSpec.turnRelay(executable: c.relayExecutable, template: ServerSpec.defaultTurnRelayTemplate,
                                        port: c.port, ports: self.ports, common: common)
            .setting("--metrics-addr", metricsAddress.description)
            .setting("--max-allocations", "100000").setting("--max-allocations-per-user", "100000")
        spec = Self.adding(extra, to: spec)
        listen = spec.listen
        process = try ServerProcess.startReady(spec, logDirectory: c.outputDirectory)
    }

    public func stop() { process.stop() }

    /// `spec` with `extra` added: an option followed by a value replaces that option's value
    /// when the spec has it (`--min-port 1`), anything else is appended.
    public static func adding(_ extra: [String], to spec: ServerSpec) -> ServerSpec {
        var spec = spec
        var i = 0
        while i < extra.count {
            if i + 1 < extra.count, !extra[i + 1].hasPrefix("--") {
                spec = spec.setting(extra[i], extra[i + 1])
                i += 2
            } else {
                spec.arguments.append(extra[i])
                i += 1
            }
        }
        return spec
    }

    /// `--setting` texts as argument lists ("defaults" or "" for none); none given means one run
    /// with the defaults.
    public static func settings(_ texts: [String]) -> [[String]] {
        texts.isEmpty ? [[]] : texts.map { $0 == "defaults" ? [] : $0.split(separator: " ").map(String.init) }
    }

    /// The counters of /metrics the scenarios report, by short name: `allocations` (active, all
    /// families), `created`, `success`, `401`, `438`, `508`, `rate_limited`, `c2p`, `p2c`
    /// (relay_relayed_packets_total: the core's count, which leaves out what the workers forward
    /// on channel routes), `io_sent` (datagrams the workers sent, all of them), `sockets`
    /// (allocation sockets open), `streams_open` (client TCP and TLS connections open),
    /// `tcp_peers_open` (RFC 6062 peer connections open), and
    /// `drop_<reason>` for each relay_drops_total reason.
    public static func counters(_ text: String) -> [String: Double] {
        var m: [String: Double] = [:]
        m["allocations"] = PrometheusText.samples(text, name: "relay_allocations_active").reduce(0) { $0 + $1.1 }
        m["created"] = PrometheusText.value(text, name: "relay_allocations_created_total")
        m["success"] = PrometheusText.value(text, name: "relay_responses_total", labels: ["class": "success"])
        for code in ["400", "401", "403", "438", "486", "508"] {
            m[code] = PrometheusText.value(text, name: "relay_responses_total", labels: ["code": code])
        }
        m["rate_limited"] = PrometheusText.value(text, name: "relay_challenges_rate_limited_total")
        m["c2p"] = PrometheusText.value(text, name: "relay_relayed_packets_total", labels: ["direction": "client_to_peer"])
        m["p2c"] = PrometheusText.value(text, name: "relay_relayed_packets_total", labels: ["direction": "peer_to_client"])
        m["sockets"] = PrometheusText.samples(text, name: "relay_io_allocation_sockets_open").reduce(0) { $0 + $1.1 }
        m["io_sent"] = PrometheusText.samples(text, name: "relay_io_datagrams_sent_total").reduce(0) { $0 + $1.1 }
        m["streams_open"] = PrometheusText.samples(text, name: "relay_stream_connections_open").reduce(0) { $0 + $1.1 }
        m["tcp_peers_open"] = PrometheusText.samples(text, name: "relay_tcp_peer_connections_open").reduce(0) { $0 + $1.1 }
        for (labels, v) in PrometheusText.samples(text, name: "relay_drops_total") {
            if let r = labels["reason"] { m["drop_" + r, default: 0] += v }
        }
        return m.compactMapValues { $0 }
    }

    /// A sample taken 1.5 s from now: each worker publishes its counters to /metrics about once
    /// a second, so what happened until now is then counted.
    public func settledSample() -> FloodSample {
        sleepNanoseconds(1_500_000_000)
        return sample()
    }

    public func sample() -> FloodSample {
        let metrics = httpGet(metricsAddress, path: "/metrics").map(Self.counters) ?? [:]
        return FloodSample(seconds: Double(monotonicNanoseconds() - start) / 1e9,
                           rssKiB: (ProcessStats.residentBytes(pid: pid) ?? 0) / 1024,
                           fds: ProcessStats.openFileDescriptors(pid: pid) ?? 0, metrics: metrics)
    }
}

/// Samples a relay every `interval` on a thread of its own until stopped.
final class FloodSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var collected: [FloodSample] = []
    private var stopping = false
    private var thread: BenchThread?

    init(relay: FloodRelay, intervalNanoseconds: UInt64 = 1_000_000_000, maxSeconds: Double) {
        let end = monotonicNanoseconds() + UInt64(maxSeconds * 1e9)
        nonisolated(unsafe) let relay = relay
        thread = BenchThread { [self] in
            var next = monotonicNanoseconds()
            while monotonicNanoseconds() < end {
                var s = relay.sample()
                // Only what the CSV and the chart show: a sample a second for minutes adds up.
                s.metrics = s.metrics.filter { ["allocations", "created", "sockets", "streams_open", "tcp_peers_open"].contains($0.key) }
                lock.withLock { collected.append(s) }
                next += intervalNanoseconds
                while monotonicNanoseconds() < next {
                    if lock.withLock({ stopping }) { return }
                    sleepNanoseconds(min(50_000_000, next - min(next, monotonicNanoseconds())))
                }
            }
        }
    }

    func stop() -> [FloodSample] {
        lock.withLock { stopping = true }
        thread?.join()
        thread = nil
        return lock.withLock { collected }
    }
}
