import Foundation
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A TURN server process on loopback for one test: this project's `turn-relay`, or coturn's
/// `turnserver` as a comparison. Chosen by the environment variable INTEROP_SERVER
/// (`turn-relay` or `coturn`).
final class TurnServerUnderTest: @unchecked Sendable {
    enum Implementation: String, CustomStringConvertible {
        case turnRelay = "turn-relay"
        case coturn

        var description: String { rawValue }

        static let defaultForInterop: Implementation = .turnRelay

        static var selected: Implementation {
            get throws {
                guard let value = ProcessInfo.processInfo.environment["INTEROP_SERVER"], !value.isEmpty else {
                    return defaultForInterop
                }
                guard let implementation = Implementation(rawValue: value) else {
                    throw UnknownImplementation(value: value)
                }
                return implementation
            }
        }
    }

    struct UnknownImplementation: Error, CustomStringConvertible {
        let value: String
        var description: String { "INTEROP_SERVER=\(value): expected turn-relay or coturn" }
    }

    struct NotReady: Error, CustomStringConvertible {
        let implementation: Implementation
        let exited: Bool
        let output: String
        var description: String {
            "\(implementation) did not answer a STUN Binding request on loopback"
                + (exited ? " (it exited)" : " within 15 s") + ". Its output:\n\(output)"
        }
    }

    let implementation: Implementation
    let host = "127.0.0.1"
    let port: UInt16
    /// TURN over TLS (turns:) on this port with `TestCertificate`'s certificate; nil when no
    /// certificate could be made (`TestCertificate.missing` says why).
    let tlsPort: UInt16?
    let relayPorts: ClosedRange<UInt16>
    let secret: String
    let realm = "interop.test"
    private let process: ChildProcess

    var output: String { process.output }
    var isRunning: Bool { process.isRunning }

    /// Starts the server on a free loopback port (IPv4, and ::1 too when it exists) and waits
    /// until it answers a STUN Binding request. `rfc5766ChannelNumbers` starts turn-relay with
    /// --rfc5766-channel-numbers (coturn accepts RFC 5766's channel range anyway).
    ///
    /// turn-relay runs on the I/O backend named by INTEROP_IO_BACKEND (`io-uring`,
    /// `batched-syscalls` or `auto`; unset: the relay's default, auto), or `ioBackend` when given.
    /// `launcher`, when given, is exec'd with the server's path and arguments after it (the
    /// io_uring-refusing seccomp launcher of the fallback test).
    /// `allowLoopbackPeers: false` keeps turn-relay's default peer policy (loopback denied);
    /// `extraArguments` are appended to turn-relay's (they win over the ones set here).
    init(_ implementation: Implementation, relayPortCount: Int = 200, rfc5766ChannelNumbers: Bool = false,
         ioBackend: String? = nil, launcher: URL? = nil, allowLoopbackPeers: Bool = true,
         extraArguments: [String] = []) throws {
        self.implementation = implementation
        port = try ListenPortClaims.freePort()
        let certificate = TestCertificate.files
        var tls: UInt16?
        if certificate != nil {
            var candidate = try ListenPortClaims.freePort()
            while candidate == port { candidate = try ListenPortClaims.freePort() }
            tls = candidate
        }
        tlsPort = tls
        relayPorts = try LoopbackPorts.relayPortRange(count: relayPortCount)
        secret = "interop-secret-\(UInt32.random(in: 0...UInt32.max))"

        var executable: URL
        var arguments: [String]
        switch implementation {
        case .turnRelay:
            executable = try Self.turnRelayBinary()
            arguments = Self.turnRelayArguments(port: port, relayPorts: relayPorts, realm: realm, secret: secret,
                                                allowLoopbackPeers: allowLoopbackPeers)
            if let certificate, let tls {
                arguments += ["--tls-listen-port", "\(tls)", "--tls-cert", certificate.certificate, "--tls-key", certificate.key]
            }
            arguments += (rfc5766ChannelNumbers ? ["--rfc5766-channel-numbers"] : []) + extraArguments
            if let backend = ioBackend ?? Self.selectedIOBackend { arguments += ["--io-backend", backend] }
        case .coturn:
            executable = try ExternalTool.locate("turnserver")
            arguments = Self.coturnArguments(port: port, relayPorts: relayPorts, realm: realm, secret: secret)
            if let certificate, let tls {
                arguments += ["--tls-listening-port", "\(tls)", "--cert", certificate.certificate, "--pkey", certificate.key]
            } else {
                arguments += ["--no-tls"]
            }
        }
        if let launcher {
            arguments = [executable.path] + arguments
            executable = launcher
        }
        let started = ContinuousClock.now
        // Only PATH from the test's environment: turn-relay reads its options from environment
        // variables too (REALM, USERS, ...), and a stray one must not change the server under test.
        // The sanitizers' options too, so that a sanitizer build's reports (`make test-sanitizers`)
        // go where the run asked for them.
        let environment = SanitizerEnvironment.passedOn(
            to: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"])
        let process = try ChildProcess(
            executable: executable, arguments: arguments, name: implementation.rawValue, environment: environment)
        self.process = process
        guard StunBindingProbe.waitUntilAnswering(port: port, timeout: .seconds(15), isAlive: { process.isRunning })
        else {
            let exited = !process.isRunning
            let output = process.output
            process.kill()
            throw NotReady(implementation: implementation, exited: exited, output: output)
        }
        if implementation == .turnRelay {
            // The backend it was asked for is the one it runs: INTEROP_IO_BACKEND reaches it, and a
            // second interop run on the other backend cannot silently test the first one again.
            let line = try Self.ioBackendLine(in: process.output, requested: ioBackend ?? Self.selectedIOBackend,
                                              process: process)
            print("interop[\(implementation)]: logged `\(line)`")
        }
        print("interop[\(implementation)]: answered a Binding request \(ContinuousClock.now - started) after start")
    }

    convenience init(rfc5766ChannelNumbers: Bool = false) throws {
        try self.init(try Implementation.selected, rfc5766ChannelNumbers: rfc5766ChannelNumbers)
    }

    deinit { stop() }

    /// Stops the server. turn-relay gets SIGTERM (it is started with --drain-seconds 0) and the
    /// result says whether it then exited with status 0 by itself; coturn is killed.
    @discardableResult
    func stop() -> StopOutcome {
        guard process.isRunning else { return .alreadyExited }
        let started = ContinuousClock.now
        let outcome: StopOutcome
        switch implementation {
        case .turnRelay:
            outcome = process.stop(grace: .seconds(5)).map { .exited(status: $0) } ?? .killedAfterGrace
        case .coturn:
            // coturn's turnserver does not reliably exit on SIGTERM; its shutdown is not under test.
            process.kill()
            outcome = .killed
        }
        print("interop[\(implementation)]: server stopped (\(outcome)) after \(ContinuousClock.now - started)")
        return outcome
    }

    enum StopOutcome: Equatable, CustomStringConvertible {
        case exited(status: Int32)
        case killedAfterGrace
        case killed
        case alreadyExited

        var description: String {
            switch self {
            case .exited(let status): "exited with status \(status) on SIGTERM"
            case .killedAfterGrace: "killed: still running 5 s after SIGTERM"
            case .killed: "killed"
            case .alreadyExited: "had already exited"
            }
        }

        /// What a test expects of a server that ran through it: turn-relay leaves cleanly on SIGTERM.
        var isClean: Bool {
            switch self {
            case .exited(let status): status == 0
            case .killed: true
            case .killedAfterGrace, .alreadyExited: false
            }
        }
    }

    struct WrongIOBackend: Error, CustomStringConvertible {
        let expected: String
        let output: String
        var description: String {
            "turn-relay did not log `\(expected)` at start-up (the backend it was asked for). Its output:\n\(output)"
        }
    }

    /// The relay's start-up line naming its I/O backend (`io backend io-uring`, `io backend
    /// batched-syscalls`, or `io backend batched-syscalls (epoll + ...): <why auto fell back>`),
    /// checked against `requested` (`auto` or nil: either backend). Kills the server and throws
    /// when the line is missing or names another backend.
    private static func ioBackendLine(in output: String, requested: String?, process: ChildProcess) throws -> String {
        let expected: [String] = switch requested {
        case nil, "auto"?: ["io backend io-uring", "io backend batched-syscalls"]
        case let backend?: ["io backend \(backend)"]
        }
        for line in output.split(separator: "\n") {
            guard let range = line.range(of: "io backend ") else { continue }
            let logged = String(line[range.lowerBound...])
            if expected.contains(where: { logged == $0 || logged.hasPrefix($0 + " ") }) { return logged }
        }
        process.kill()
        throw WrongIOBackend(expected: expected.joined(separator: "` or `"), output: output)
    }

    /// INTEROP_IO_BACKEND, passed to turn-relay as --io-backend (CI runs the interop suite once per backend).
    static var selectedIOBackend: String? {
        guard let value = ProcessInfo.processInfo.environment["INTEROP_IO_BACKEND"], !value.isEmpty else { return nil }
        return value
    }

    private static var listenAddresses: [String] {
        LoopbackPorts.ipv6Available ? ["127.0.0.1", "::1"] : ["127.0.0.1"]
    }

    private static func turnRelayArguments(
        port: UInt16, relayPorts: ClosedRange<UInt16>, realm: String, secret: String, allowLoopbackPeers: Bool
    ) -> [String] {
        var arguments = [
            "serve",
            "--listen-port", "\(port)",
            "--bind-ip4", "127.0.0.1",
            "--bind-ip6", LoopbackPorts.ipv6Available ? "::1" : "none",
            "--min-port", "\(relayPorts.lowerBound)",
            "--max-port", "\(relayPorts.upperBound)",
            "--realm", realm,
            "--auth-secret", secret,
            // No --max-allocations-per-user: turnutils_uclient gives all its clients (-m 50) one REST
            // username, and the defaults (no per-user bound, on every core's worker) must serve it.
            "--drain-seconds", "0",
        ]
        if allowLoopbackPeers {
            // The peers in these tests are on loopback, which the relay refuses by default.
            arguments += ["--allow-peer", "127.0.0.0/8", "--allow-peer", "::1/128"]
        }
        return arguments
    }

    private static func coturnArguments(
        port: UInt16, relayPorts: ClosedRange<UInt16>, realm: String, secret: String
    ) -> [String] {
        var arguments = [
            "-n",  // no configuration file
            "--listening-port", "\(port)",
            "--min-port", "\(relayPorts.lowerBound)",
            "--max-port", "\(relayPorts.upperBound)",
            "--use-auth-secret", "--static-auth-secret", secret,
            "--realm", realm,
            "--allow-loopback-peers",
            "--no-cli", "--no-dtls", "--no-rfc5780",
            "--log-file", "stdout",
        ]
        for address in listenAddresses {
            arguments += ["--listening-ip", address, "--relay-ip", address]
        }
        return arguments
    }

    struct BinaryMissing: Error, CustomStringConvertible {
        let path: String
        var description: String {
            "turn-relay was not found at \(path). Run `make test` (or `.ci/run`), which builds every product "
                + "(swift build --build-tests) before running the tests, or set TURN_RELAY_BINARY."
        }
    }

    /// The `turn-relay` binary built into the same directory as the running test bundle
    /// (or $TURN_RELAY_BINARY).
    static func turnRelayBinary() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["TURN_RELAY_BINARY"], !path.isEmpty {
            guard FileManager.default.isExecutableFile(atPath: path) else { throw BinaryMissing(path: path) }
            return URL(fileURLWithPath: path)
        }
        let testExecutable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var directory = testExecutable.deletingLastPathComponent()
        // On Linux the test bundle is an executable file `<package>PackageTests.xctest` in the build
        // directory; walk up out of any bundle directory layout just in case.
        while directory.pathExtension == "xctest" || directory.lastPathComponent == "MacOS"
            || directory.lastPathComponent == "Contents"
        {
            directory = directory.deletingLastPathComponent()
        }
        let candidate = directory.appendingPathComponent("turn-relay")
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            throw BinaryMissing(path: candidate.path)
        }
        return candidate
    }
}

/// coturn's `turnutils_peer`: a UDP echo peer on 127.0.0.2 (and ::1 when present). It binds `port`
/// and `port + 1` (the RTCP peer that `turnutils_uclient` sends to without `-c`), so both are
/// claimed: another test handed `port + 1` would take the RTCP flow's peer away.
final class TurnutilsPeer: @unchecked Sendable {
    let port: UInt16
    private let process: ChildProcess

    init() throws {
        port = try ListenPortClaims.freePorts(2)
        var arguments = ["-p", "\(port)", "-L", LoopbackPorts.peerIPv4]
        if LoopbackPorts.ipv6Available { arguments += ["-L", "::1"] }
        process = try ChildProcess(
            executable: try ExternalTool.locate("turnutils_peer"), arguments: arguments, name: "turnutils_peer")
        // Ready once both ports are taken (a bind by us then fails).
        let deadline = ContinuousClock.now + .seconds(5)
        while [port, port + 1].contains(where: { LoopbackPorts.canBind(ipv6: false, port: $0, ipv4Address: LoopbackPorts.peerIPv4) }),
            ContinuousClock.now < deadline
        {
            usleep(20_000)
        }
    }

    deinit { process.kill() }
    var isRunning: Bool { process.isRunning }
    var output: String { process.output }
}
