import Foundation
@testable import InteropTestSupport
@testable import OperationsTestSupport
import TestSupport
import RelayCore
import STUN

#if canImport(Glibc)
import Glibc
#endif

/// The turn-relay binary under test, running in a lab's relay namespace: listening on
/// 198.18.0.1 and 2001:db8::1 port 3478, relaying from ports 50000-50999 there, peers in the
/// lab's range allowed, /metrics and /readyz on 127.0.0.1 inside its namespace, a credentials
/// file for SIGHUP reloads, and --xdp-interface on the lab's interface when the datapath is XDP.
final class LabRelay: @unchecked Sendable {
    let lab: NetnsLab
    let datapath: Datapath
    let port: UInt16 = 3478
    let relayPorts: ClosedRange<UInt16> = 50000...50999
    let realm = "xdp-e2e.test"
    let secret = "xdp-e2e-secret-\(UInt32.random(in: 0...UInt32.max))"
    let credentialsFile: URL
    let metricsAddress = TransportAddress(ip: .v4(.loopback), port: 9464)
    let healthAddress = TransportAddress(ip: .v4(.loopback), port: 8080)
    private let process: ChildProcess

    var output: String { process.output }
    var isRunning: Bool { process.isRunning }
    var pid: pid_t { process.pid }

    struct NotReady: Error, CustomStringConvertible {
        let output: String
        var description: String { "turn-relay did not answer a STUN Binding request in the lab. Its output:\n\(output)" }
    }

    /// `credentials`: the initial content of the credentials file (e.g. `deny-peer = ...` lines).
    /// `extraArguments` come last (they win).
    init(lab: NetnsLab, datapath: Datapath, credentials: String = "", extraArguments: [String] = []) throws {
        self.lab = lab
        self.datapath = datapath
        credentialsFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("xdp-e2e-\(getpid())-\(lab.name)-credentials.conf")
        try Self.write(credentials, to: credentialsFile)
        var arguments = [
            "serve",
            "--listen-port", "\(port)",
            "--bind-ip4", lab.relayIPv4,
            "--bind-ip6", lab.relayIPv6,
            "--min-port", "\(relayPorts.lowerBound)",
            "--max-port", "\(relayPorts.upperBound)",
            "--realm", realm,
            "--auth-secret", secret,
            "--credentials-file", credentialsFile.path,
            // The lab's addresses are in the benchmarking and documentation ranges, which the
            // built-in peer policy denies.
            "--allow-peer", "198.18.0.0/15",
            "--allow-peer", "2001:db8::/32",
            // turnutils_uclient draws channel numbers from RFC 5766's 0x4000-0x7FFF.
            "--rfc5766-channel-numbers",
            "--metrics-addr", "127.0.0.1:\(metricsAddress.port)",
            "--health-check-addr", "127.0.0.1:\(healthAddress.port)",
            "--drain-seconds", "0",
        ]
        if case .xdp(let mode) = datapath {
            arguments += ["--xdp-interface", lab.relayInterface, "--xdp-mode", mode]
            // The lab's clients and peers are addresses of one host on the relay's link (the out
            // namespace's end of the veth): the MAC swap is right for them, and `auto` would leave
            // their channels on the io_uring path. A test that chooses the next hop, or attaches
            // to more interfaces (where swap is refused), says so itself.
            if !extraArguments.contains("--xdp-next-hop") && !extraArguments.contains("--xdp-interface") {
                arguments += ["--xdp-next-hop", "swap"]
            }
        }
        arguments += extraArguments
        let started = ContinuousClock.now
        // Only PATH: turn-relay reads its options from environment variables too (REALM, USERS,
        // XDP_INTERFACE, ...), and a stray one must not change the relay under test.
        // With a sanitizer run's variables (`make test-sanitizers`).
        let environment = SanitizerEnvironment.passedOn(
            to: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"])
        let process = try lab.process(in: lab.relayNamespace, try TurnServerUnderTest.turnRelayBinary(), arguments,
                                      name: "turn-relay", environment: environment)
        self.process = process
        let answered = try lab.inOut {
            StunBindingProbe.waitUntilAnswering(host: lab.relayIPv4, port: port, timeout: .seconds(20),
                                                isAlive: { process.isRunning })
        }
        guard answered else {
            let output = process.output
            process.kill()
            throw NotReady(output: output)
        }
        // The operations listener may start a moment after the TURN sockets: wait for it too.
        let httpDeadline = ContinuousClock.now + .seconds(10)
        while (try? lab.inRelay({ try HTTPTestClient.get(healthAddress, "/readyz") })) == nil {
            guard ContinuousClock.now < httpDeadline, process.isRunning else {
                let output = process.output
                process.kill()
                throw NotReady(output: "no /readyz on \(healthAddress) inside \(lab.relayNamespace):\n" + output)
            }
            usleep(50_000)
        }
        print("xdp-e2e[\(datapath)]: turn-relay in \(lab.relayNamespace) answered a Binding request "
            + "\(ContinuousClock.now - started) after start")
    }

    deinit {
        process.kill()
        try? FileManager.default.removeItem(at: credentialsFile)
    }

    /// SIGTERM; the exit status when it left by itself (nil when it had to be killed).
    @discardableResult
    func stop() -> Int32? { process.stop(grace: .seconds(5)) }

    // MARK: - Credentials file and SIGHUP

    /// Rewrites the credentials file, sends SIGHUP and waits for the relay to log the reload
    /// (README: "A reload reaches every worker on its own thread within one loop (≤ 1 s)"; the
    /// caller checks the behaviour that follows, not the time).
    func reload(credentials: String) throws -> Bool {
        let before = reloadsLogged
        try Self.write(credentials, to: credentialsFile)
        guard kill(pid, SIGHUP) == 0 else { return false }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if reloadsLogged > before { return true }
            usleep(20_000)
        }
        return false
    }

    private var reloadsLogged: Int { output.components(separatedBy: "SIGHUP: reloaded").count - 1 }

    private static func write(_ text: String, to url: URL) throws {
        try Data(text.utf8).write(to: url)
    }

    // MARK: - Operations endpoints (inside the relay's namespace)

    func metrics() throws -> RelayMetrics {
        let response = try lab.inRelay { try HTTPTestClient.get(metricsAddress, "/metrics") }
        guard response.status == 200 else { throw RelayMetrics.Failure(description: "/metrics answered \(response.status)") }
        return RelayMetrics(try Exposition(response.body))
    }

    func readiness() throws -> HTTPTestClient.Response {
        try lab.inRelay { try HTTPTestClient.get(healthAddress, "/readyz") }
    }

    /// Scrapes until `done` holds for the scrape (counters are published once a second) or
    /// `within` passes; returns the last scrape.
    func metrics(until done: (RelayMetrics) -> Bool, within: Duration = .seconds(10)) throws -> RelayMetrics {
        let deadline = ContinuousClock.now + within
        var last = try metrics()
        while !done(last), ContinuousClock.now < deadline {
            usleep(200_000)
            last = try metrics()
        }
        return last
    }

    // MARK: - Clients in the lab

    /// A TURN REST credential for this relay's secret, valid one hour.
    func credential(id: String) -> (username: String, password: String) {
        let credential = RESTCredential.make(secret: secret, ttlSeconds: 3600, id: id, nowUnixSeconds: UInt64(time(nil)))
        return (credential.username, credential.password)
    }
}
