import Foundation
import Glibc
import STUN

/// How to start one TURN server for `compare`.
public struct ServerSpec: Sendable {
    public var name: String
    public var executable: String
    public var arguments: [String]
    public var listen: TransportAddress
    /// Where it serves TURN over TLS, when it does (`withTLS`).
    public var tlsListen: TransportAddress?
    public var kind: Kind = .other

    public enum Kind: Sendable {
        case coturn, turnRelay, other
    }

    public init(name: String, executable: String, arguments: [String], listen: TransportAddress) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.listen = listen
    }

    /// Settings both servers share in a comparison.
    public struct Common: Sendable {
        public var secret: String
        public var realm: String
        public var threads: Int
        public var logDirectory: String
        public init(secret: String, realm: String, threads: Int, logDirectory: String) {
            self.secret = secret
            self.realm = realm
            self.threads = threads
            self.logDirectory = logDirectory
        }
    }

    /// coturn's turnserver on 127.0.0.1:`port`, relay ports `ports`, REST secret, loopback peers
    /// allowed, no TLS/DTLS/CLI, `threads` relay threads.
    public static func coturn(executable: String, port: UInt16, ports: ClosedRange<UInt16>, common: Common) -> ServerSpec {
        var spec = ServerSpec(name: "coturn", executable: executable, arguments: [
            "-n", "--listening-ip", "127.0.0.1", "--listening-port", String(port), "--relay-ip", "127.0.0.1",
            "--min-port", String(ports.lowerBound), "--max-port", String(ports.upperBound),
            "--use-auth-secret", "--static-auth-secret", common.secret, "--realm", common.realm,
            "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--no-rfc5780",
            "--relay-threads", String(common.threads), "--no-software-attribute",
            "--log-file", common.logDirectory + "/coturn.log", "--simple-log",
        ], listen: TransportAddress(ip: .v4(.loopback), port: port))
        spec.kind = .coturn
        return spec
    }

    /// The same server also serving TURN over TLS on 127.0.0.1:`port` with this PEM certificate
    /// and key (TCP is on by default for both on the listen port).
    public func withTLS(port: UInt16, certificate: String, key: String) -> ServerSpec {
        var spec = self
        switch kind {
        case .coturn:
            spec.arguments = arguments.filter { $0 != "--no-tls" }
                + ["--tls-listening-port", String(port), "--cert", certificate, "--pkey", key]
        case .turnRelay, .other:
            spec.arguments += ["--tls-listen-port", String(port), "--tls-cert", certificate, "--tls-key", key]
        }
        spec.tlsListen = TransportAddress(ip: listen.ip, port: port)
        return spec
    }

    /// `arguments` with the value after `option` replaced (or the pair appended).
    public func setting(_ option: String, _ value: String) -> ServerSpec {
        var spec = self
        if let i = arguments.firstIndex(of: option), i + 1 < arguments.count {
            spec.arguments[i + 1] = value
        } else {
            spec.arguments += [option, value]
        }
        return spec
    }

    /// turn-relay with the same settings. `template` is its argument list with {port}, {min-port},
    /// {max-port}, {secret}, {realm}, {threads} substituted.
    public static func turnRelay(executable: String, template: [String], port: UInt16, ports: ClosedRange<UInt16>, common: Common) -> ServerSpec {
        let values = ["{port}": String(port), "{min-port}": String(ports.lowerBound), "{max-port}": String(ports.upperBound),
                      "{secret}": common.secret, "{realm}": common.realm, "{threads}": String(common.threads)]
        let args = template.map { arg in values.reduce(arg) { $0.replacingOccurrences(of: $1.key, with: $1.value) } }
        var spec = ServerSpec(name: "turn-relay", executable: executable, arguments: args,
                              listen: TransportAddress(ip: .v4(.loopback), port: port))
        spec.kind = .turnRelay
        return spec
    }

    public static let defaultTurnRelayTemplate = [
        "serve", "--listen-port", "{port}", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
        "--min-port", "{min-port}", "--max-port", "{max-port}", "--workers", "{threads}", "--realm", "{realm}",
        "--auth-secret", "{secret}", "--allow-peer", "127.0.0.0/8", "--max-allocations", "20000",
        "--max-allocations-per-user", "20000", "--drain-seconds", "0", "--log-level", "notice",
        "--health-check-addr", "none", "--metrics-addr", "none",
    ]
}

/// A server process `compare` started; stopped by its PID (SIGTERM, then SIGKILL).
public final class ServerProcess {
    public let spec: ServerSpec
    public let process: Process
    public var pid: Int32 { process.processIdentifier }

    public init(spec: ServerSpec, logDirectory: String) throws {
        self.spec = spec
        process = Process()
        process.executableURL = URL(fileURLWithPath: spec.executable)
        process.arguments = spec.arguments
        let logPath = logDirectory + "/\(spec.name).out"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        ChildProcesses.register(process.processIdentifier)
    }

    /// Starts `spec` and waits up to `seconds` for it to answer a Binding request; a server that
    /// does not is stopped (by PID) and the error names its log.
    public static func startReady(_ spec: ServerSpec, logDirectory: String, seconds: Double = 10) throws -> ServerProcess {
        let p = try ServerProcess(spec: spec, logDirectory: logDirectory)
        guard p.waitReady(seconds: seconds) else {
            p.stop()
            throw LoadError.setupFailed("\(spec.name) (\(spec.executable)) did not answer a Binding request on \(spec.listen); see \(logDirectory)/\(spec.name).out")
        }
        return p
    }

    /// Waits until the server answers a Binding request sent from `source` (default: the
    /// server's own address, port 0), up to `seconds`.
    public func waitReady(seconds: Double, from source: IPAddress? = nil) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        guard let fd = try? openUDPSocket(bindTo: TransportAddress(ip: source ?? spec.listen.ip, port: 0), bufferBytes: 64 << 10) else { return false }
        defer { close(fd) }
        let client = ControlClient(index: 0, fd: fd, username: "", password: "")
        while monotonicNanoseconds() < deadline {
            guard process.isRunning else { return false }
            let p = ControlPipeline(server: spec.listen)
            p.retransmitNanoseconds = 100_000_000
            p.maxAttempts = 2
            var given = false
            p.run(window: 1, deadline: monotonicNanoseconds() + 1_000_000_000) {
                if given { return nil }
                given = true
                return ControlJob(client: client, steps: [.binding])
            }
            if p.completedJobs == 1 { return true }
            sleepNanoseconds(100_000_000)
        }
        return false
    }

    public func stop() {
        defer { ChildProcesses.unregister(pid) }
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = monotonicNanoseconds() + 3_000_000_000
        while process.isRunning && monotonicNanoseconds() < deadline { sleepNanoseconds(20_000_000) }
        if process.isRunning { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}
