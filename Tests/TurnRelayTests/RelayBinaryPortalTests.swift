import Foundation
import Glibc
import RelayCore
import RelayIO
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

/// The `turn-relay` binary in portal mode against the in-test Phoenix portal (`PhoenixPortal`):
/// no relaying and `/readyz` 503 before the portal's `init`; Firezone credentials made with the
/// stamp secret it joined with work after it; a dropped portal connection makes `/readyz` 503
/// without stopping relaying, and the relay reconnects; the relay stops with status 1 when the
/// portal stays unreachable past the configured limit. Its HTTP and STUN probes block for short
/// whiles, so it runs on a thread of its own; its waits are asynchronous sleeps.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryPortalTests {
    final class Relay {
        let process = Process()
        let logURL: URL
        let port: UInt16

        convenience init(portalPort: Int, extra: [String] = [], token: String = "relay-token-1") throws {
            let port = try ListenPortClaims.freePort()
            // The token comes from the environment, as in a deployment.
            try self.init(port: port, arguments: [
                "serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
                "--min-port", "50430", "--max-port", "50450", "--workers", "1", "--realm", "example.org",
                "--health-check-addr", "127.0.0.1:0", "--metrics-addr", "none", "--drain-seconds", "0",
                "--api-url", "ws://127.0.0.1:\(portalPort)", "--name", "relay-a",
                "--portal-heartbeat-ms", "200"] + extra, environment: ["FIREZONE_TOKEN": token])
        }

        /// The binary with exactly these arguments, and this process's environment without any of
        /// the relay's own or Firezone's variables, plus `environment`. With a `launcher` (e.g.
        /// `setpriv` and its options) the binary runs under it.
        init(port: UInt16, arguments: [String], environment extra: [String: String], launcher: [String] = []) throws {
            let binary = try RelayBinaryReloadTests.turnRelayBinary()
            logURL = FileManager.default.temporaryDirectory
                .appendingPathComponent("binary-portal-relay-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log")
            FileManager.default.createFile(atPath: logURL.path, contents: nil)
            let log = try FileHandle(forWritingTo: logURL)
            self.port = port
            if let tool = launcher.first {
                process.executableURL = URL(fileURLWithPath: tool)
                process.arguments = launcher.dropFirst() + [binary.path] + arguments
            } else {
                process.executableURL = binary
                process.arguments = arguments
            }
            var environment = ProcessInfo.processInfo.environment.filter { !Relay.relayVariables.contains($0.key) }
            environment.merge(extra) { $1 }
            process.environment = environment
            process.standardOutput = log
            process.standardError = log
            try process.run()
        }

        static let relayVariables: Set<String> = [
            "LISTEN_PORT", "BIND_IP4", "BIND_IP6", "PUBLIC_IP4", "PUBLIC_IP6", "MIN_PORT", "MAX_PORT", "WORKERS", "REALM",
            "AUTH_SECRET", "USERS", "FIREZONE_SECRET", "LOG_LEVEL", "LOG_FORMAT", "HEALTH_CHECK_ADDR", "METRICS_ADDR",
            "CREDENTIALS_FILE", "OTLP_GRPC_ENDPOINT", "FIREZONE_TOKEN", "FIREZONE_API_URL", "FIREZONE_NAME",
            "PORTAL_HEARTBEAT_MS", "PORTAL_MAX_ELAPSED", "BIND_IP4_ADDR", "BIND_IP6_ADDR", "PUBLIC_IP4_ADDR",
            "PUBLIC_IP6_ADDR", "LOWEST_PORT", "HIGHEST_PORT", "NUM_WORKER_THREADS", "RNG_SEED", "EBPF_OFFLOADING",
            "EBPF_ATTACH_MODE", "XDP_INTERFACE", "XDP_MODE", "XDP_NEXT_HOP", "XDP_OBJECT", "XDP_IP4", "XDP_IP6", "EBPF_INT4_ADDR",
            "EBPF_INT6_ADDR", "PERMISSION_LIFETIME", "CHANNEL_LIFETIME", "CHALLENGE_RATE_PER_SOURCE",
            "NO_TCP", "TLS_LISTEN_PORT", "TLS_CERT", "TLS_KEY", "MAX_CONNECTIONS", "MAX_CONNECTIONS_PER_SOURCE",
            "MAX_TLS_HANDSHAKES", "TLS_HANDSHAKE_TIMEOUT", "STREAM_MESSAGE_TIMEOUT", "STREAM_IDLE_TIMEOUT", "STREAM_WRITE_BUFFER",
            "NO_TCP_RELAY", "MAX_TCP_CONNECTIONS_PER_ALLOCATION", "CHALLENGE_BURST_PER_SOURCE",
        ]

        deinit { stopChild(process, removing: logURL) }

        var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

        /// Waits (asynchronously, at most `timeout`) for the process to exit.
        func exited(within timeout: Duration) async -> Bool {
            await eventually(timeout) { !process.isRunning }
        }
    }

    static func firezoneCredentials(secret: String) -> (user: String, password: String) {
        let expiry = UInt64(Date().timeIntervalSince1970) + 3600
        let salt = "salt\(UInt32.random(in: 0...UInt32.max))"
        return ("\(expiry):\(salt)", FirezoneCredential.password(expiry: expiry, secret: secret, salt: salt))
    }

    @Test(.timeLimit(.minutes(2))) func noRelayingBeforeInitThenStampSecretCredentialsAndReconnects() async throws {
        // The portal pushes init and drops the connection when the test says so: no timing windows.
        let portal = try await PhoenixPortal.start(["--init-on-command", "--token", "relay-token-1"])
        let relay = try Relay(portalPort: portal.port, extra: ["--metrics-addr", "127.0.0.1:0"])

        var health: TransportAddress?
        _ = await eventually(.seconds(20)) {
            health = RelayBinaryReloadTests.address(after: "health=", in: relay.log)
            return health != nil
        }
        let metrics = try #require(RelayBinaryReloadTests.address(after: "metrics=", in: relay.log), "\(relay.log)")
        // /metrics says whether the portal is connected (the PortalDisconnected alert reads it).
        func portalGauges() -> (configured: Double?, connected: Double?) {
            let scrape = try? scrapeMetrics(metrics)
            return (scrape?["relay_portal_configured"], scrape?["relay_portal_connected"])
        }
        #expect(portalGauges().configured == 1)
        #expect(portalGauges().connected == 0, "connected before init")
        let healthAddress = try #require(health, "no endpoints line in the relay's log:\n\(relay.log)")
        #expect(await eventually { !portal.frames(event: "phx_join").isEmpty }, "\(relay.log)")
        let connect = portal.events(kind: "connect").first ?? [:]
        #expect(connect["path"] as? String == "/relay/websocket?name=relay-a&ipv4=127.0.0.1&port=\(relay.port)&vsn=2.0.0")
        let headers = connect["headers"] as? [String: String] ?? [:]
        #expect(headers["x-authorization"] == "Bearer relay-token-1")
        #expect(headers["authorization"] == "Bearer relay-token-1")
        let join = portal.frames(event: "phx_join").first?.frame ?? []
        #expect(join.count == 5 && join[2] as? String == "relay")
        let secret = try #require(PhoenixPortal.payload(join)?["stamp_secret"] as? String)
        #expect(secret.count == 64)
        let credentials = Self.firezoneCredentials(secret: secret)
        let address = TransportAddress(ip: .v4(.loopback), port: relay.port)

        // Before init: not ready, and an Allocate with valid Firezone credentials is refused.
        let before = try HTTPTestClient.get(healthAddress, "/readyz")
        #expect(before.status == 503)
        #expect(before.body.contains("portal"))
        #expect(try RelayBinaryReloadTests.allocate(address, user: credentials.user, password: credentials.password, id: 1) == 401)
        #expect(portal.events(kind: "init-sent").isEmpty)

        // After init: ready, the same credentials allocate, others do not.
        portal.send("init")
        #expect(await eventually { !portal.events(kind: "init-sent").isEmpty })
        #expect(try await eventually(.seconds(5)) { try HTTPTestClient.get(healthAddress, "/readyz").status == 200 },
                "\(relay.log)")
        #expect(portalGauges().connected == 1)
        #expect(try await eventually(.seconds(5)) {
            try RelayBinaryReloadTests.allocate(address, user: credentials.user, password: credentials.password, id: 3) == 0
        })
        let wrong = Self.firezoneCredentials(secret: "not-the-stamp-secret")
        #expect(try RelayBinaryReloadTests.allocate(address, user: wrong.user, password: wrong.password, id: 5) == 401)
        // Heartbeats keep flowing.
        #expect(await eventually { portal.frames(event: "heartbeat").count >= 2 })

        // The portal drops the connection: not ready while the relay reconnects and waits for the
        // next init, yet it keeps relaying (the credentials stay open through portal outages).
        portal.send("drop")
        #expect(await eventually(.seconds(20)) { !portal.events(kind: "dropping").isEmpty })
        #expect(try await eventually(.seconds(5)) { try HTTPTestClient.get(healthAddress, "/readyz").status == 503 })
        #expect(portalGauges().connected == 0, "connected while the portal is away")
        #expect(try RelayBinaryReloadTests.allocate(address, user: credentials.user, password: credentials.password, id: 7) == 0)
        #expect(await eventually { portal.frames(event: "phx_join").contains { $0.connection == 2 } }, "\(relay.log)")
        let rejoin = portal.frames(event: "phx_join").first { $0.connection == 2 }?.frame ?? []
        #expect(PhoenixPortal.payload(rejoin)?["stamp_secret"] as? String == secret)
        portal.send("init")
        #expect(try await eventually(.seconds(20)) { try HTTPTestClient.get(healthAddress, "/readyz").status == 200 },
                "\(relay.log)")

        kill(relay.process.processIdentifier, SIGTERM)
        #expect(await relay.exited(within: .seconds(10)))
        #expect(relay.process.terminationStatus == 0)
    }

    @Test(.timeLimit(.minutes(1))) func stopsWithStatusOneWhenThePortalStaysUnreachable() async throws {
        let portal = try await PhoenixPortal.start(["--refuse"])
        let relay = try Relay(portalPort: portal.port, extra: ["--portal-max-elapsed", "2"])
        #expect(await relay.exited(within: .seconds(20)), "\(relay.log)")
        if !relay.process.isRunning {
            #expect(relay.process.terminationStatus == 1)
        }
        #expect(portal.events(kind: "refused").count >= 2)
        #expect(relay.log.contains("gave up"))
    }

    @Test func aTokenWithoutAnAPIURLIsRefusedAtStart() async throws {
        let binary = try RelayBinaryReloadTests.turnRelayBinary()
        let process = Process()
        process.executableURL = binary
        process.arguments = ["serve", "--listen-port", "0", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
                             "--health-check-addr", "none", "--metrics-addr", "none", "--token", "t"]
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "FIREZONE_API_URL")
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        #expect(await eventually(.seconds(10)) { !process.isRunning })
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("--api-url"), "\(text)")
    }
}
