import Foundation
import Glibc
import RelayIO
import RelayOperations
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

/// The `turn-relay` binary itself: SIGHUP re-reads `--credentials-file` without dropping the
/// allocation made before it, and the health and metrics endpoints answer over HTTP.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryReloadTests {
    @Test func sighupSwitchesCredentialsAndKeepsAllocations() throws {
        let binary = try Self.turnRelayBinary()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("relay-reload-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let credentials = directory.appendingPathComponent("credentials.conf")
        try "user = alice:alice-pw\n".write(to: credentials, atomically: true, encoding: .utf8)
        let logURL = directory.appendingPathComponent("relay.log")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)

        let port = try ListenPortClaims.freePort()
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
                             "--min-port", "50400", "--max-port", "50420", "--workers", "1", "--realm", "example.org",
                             "--health-check-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
                             "--credentials-file", credentials.path, "--drain-seconds", "0"]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        defer {
            if process.isRunning {
                kill(process.processIdentifier, SIGTERM)
                usleep(100_000)
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
        }
        func logText() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

        var health: TransportAddress?
        var metricsAddress: TransportAddress?
        _ = poll(seconds: 10) {
            let text = logText()
            health = Self.address(after: "health=", in: text)
            metricsAddress = Self.address(after: "metrics=", in: text)
            return health != nil && metricsAddress != nil
        }
        let healthAddress = try #require(health, "no endpoints line in the relay's log:\n\(logText())")
        let metrics = try #require(metricsAddress)
        #expect(try poll(seconds: 5) { try HTTPTestClient.get(healthAddress, "/readyz").status == 200 })
        #expect(try HTTPTestClient.get(healthAddress, "/healthz").status == 200)

        let relay = TransportAddress(ip: .v4(.loopback), port: port)
        #expect(try Self.allocate(relay, user: "alice", password: "alice-pw", id: 1) == 0)
        #expect(try Self.allocate(relay, user: "bob", password: "bob-pw", id: 3) == 401)

        try "user = bob:bob-pw\n".write(to: credentials, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        #expect(poll(seconds: 5) { logText().contains("SIGHUP: reloaded") }, "\(logText())")
        // Applied by the worker within one loop.
        #expect(try poll(seconds: 5) { try Self.allocate(relay, user: "bob", password: "bob-pw", id: 5) == 0 })
        #expect(try Self.allocate(relay, user: "alice", password: "alice-pw", id: 9) == 401)

        // Alice's allocation from before the reload is still there (two active allocations).
        #expect(try poll(seconds: 5) {
            try scrapeMetrics(metrics)[#"relay_allocations_active{family="ipv4"}"#] == 2
        })

        // A file that does not parse keeps the previous credentials.
        try "this is not a credentials file\n".write(to: credentials, atomically: true, encoding: .utf8)
        kill(process.processIdentifier, SIGHUP)
        #expect(poll(seconds: 5) { logText().contains("not reloaded, keeping the previous credentials") })
        #expect(try Self.allocate(relay, user: "bob", password: "bob-pw", id: 11) == 0)

        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
    }

    /// Allocate from a fresh client socket: 0 on success, else the error code (-1: no answer).
    static func allocate(_ relay: TransportAddress, user: String, password: String, id: UInt8) throws -> Int {
        let client = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        client.send(CoreDriver.message(.allocate, id: id) { $0.appendRequestedTransport(17) }, to: relay)
        guard let challenge = client.receive(timeoutMilliseconds: 2000),
              let nonce = CoreDriver.outcome(challenge.bytes).nonce else { return -1 }
        client.send(CoreDriver.message(.allocate, id: id &+ 1, auth: (user, password, nonce)) { $0.appendRequestedTransport(17) },
                    to: relay)
        guard let reply = client.receive(timeoutMilliseconds: 2000) else { return -1 }
        let outcome = CoreDriver.outcome(reply.bytes)
        return outcome.success ? 0 : outcome.code
    }

    static func address(after key: String, in text: String) -> TransportAddress? {
        guard let range = text.range(of: key) else { return nil }
        let value = text[range.upperBound...].prefix { !$0.isWhitespace }
        return TransportAddress(String(value))
    }

    static func turnRelayBinary() throws -> URL {
        if let path = ProcessInfo.processInfo.environment["TURN_RELAY_BINARY"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        var directory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while directory.pathExtension == "xctest" { directory = directory.deletingLastPathComponent() }
        let candidate = directory.appendingPathComponent("turn-relay")
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            Issue.record("no turn-relay binary at \(candidate.path): build it first (`make test` does)")
            throw CancellationError()
        }
        return candidate
    }
}
