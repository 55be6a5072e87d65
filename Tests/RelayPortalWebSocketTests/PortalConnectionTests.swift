import Foundation
import RelayPortal
import RelayPortalWebSocket
import Synchronization
import Testing
@testable import OperationsTestSupport

/// `PortalConnection` (the WebSocket driver of the sans-IO `PortalChannel`) against the in-test
/// Phoenix portal over real WebSocket connections on 127.0.0.1.
@Suite(.serialized) struct PortalConnectionTests {
    /// Short timings so that heartbeats, drops and reconnects happen within seconds.
    static func fastConfiguration() -> PortalConfiguration {
        var config = PortalConfiguration()
        config.heartbeatInterval = .milliseconds(200)
        config.joinTimeout = .seconds(5)
        config.connectTimeout = .seconds(5)
        config.initialBackoff = .milliseconds(50)
        config.backoffMultiplier = 2
        config.maxBackoff = .milliseconds(400)
        config.jitter = 0.5
        config.maxElapsed = .seconds(30)
        config.initialConnectInterval = .milliseconds(200)
        return config
    }

    @Test(.timeLimit(.minutes(1))) func connectsJoinsWaitsForInitHeartbeatsAndReconnects() async throws {
        // The portal pushes init when the test says so (`send("init")`): no timing window.
        let portal = try await PhoenixPortal.start(["--init-on-command", "--drop-after-heartbeats", "3"])
        let url = try PortalLoginURL(apiURL: "ws://127.0.0.1:\(portal.port)", name: "relay-test", publicIPv4: "127.0.0.1",
                                     publicIPv6: nil, listenPort: 3479).build()
        let secret = makeStampSecret()
        let connection = PortalConnection(url: url, token: "tok-123", stampSecret: secret,
                                          configuration: Self.fastConfiguration())
        let inits = Atomic<Int>(0)
        let runner = Task { await connection.run { inits.add(1, ordering: .relaxed) } }
        defer { runner.cancel() }

        // The connect request: path with the query parameters of the reference design, bearer header.
        #expect(await eventually { !portal.events(kind: "connect").isEmpty })
        let connect = portal.events(kind: "connect").first ?? [:]
        #expect(connect["path"] as? String == "/relay/websocket?name=relay-test&ipv4=127.0.0.1&port=3479&vsn=2.0.0")
        let headers = connect["headers"] as? [String: String] ?? [:]
        #expect(headers["x-authorization"] == "Bearer tok-123")
        #expect(headers["authorization"] == "Bearer tok-123")

        // The join: topic relay, the stamp secret as its payload, join_ref == ref.
        #expect(await eventually { !portal.frames(event: "phx_join").isEmpty })
        let join = portal.frames(event: "phx_join").first?.frame ?? []
        #expect(join.count == 5 && join[2] as? String == "relay")
        #expect(join.count == 5 && join[0] as? String != nil && join[0] as? String == join[1] as? String)
        #expect(PhoenixPortal.payload(join)?["stamp_secret"] as? String == secret)
        #expect(secret.count == 64)

        // Joined but no init yet (the portal holds it until told): not ready while it heartbeats
        // on the joined connection, however long the machine takes to get there.
        #expect(await eventually { !portal.frames(event: "heartbeat").isEmpty })
        #expect(portal.events(kind: "init-sent").isEmpty)
        #expect(!connection.isConnected)
        #expect(!connection.hasBeenInitialized)
        #expect(inits.load(ordering: .relaxed) == 0)
        portal.send("init")
        #expect(await eventually { connection.isConnected })
        #expect(!portal.events(kind: "init-sent").isEmpty)
        #expect(connection.hasBeenInitialized)
        #expect(inits.load(ordering: .relaxed) == 1)

        // Heartbeats on topic phoenix with no join_ref; the portal drops the first connection
        // (TCP abort, no closing handshake) after three.
        #expect(await eventually { portal.frames(event: "heartbeat").count >= 3 })
        let heartbeat = portal.frames(event: "heartbeat").first?.frame ?? []
        #expect(heartbeat.count == 5 && heartbeat[2] as? String == "phoenix" && heartbeat[0] is NSNull)
        #expect(await eventually { !portal.events(kind: "dropping").isEmpty })
        #expect(await eventually(.seconds(5)) { !connection.isConnected })

        // Reconnect: a second connection joins with the same secret and gets init again.
        #expect(await eventually { portal.frames(event: "phx_join").contains { $0.connection == 2 } })
        let rejoin = portal.frames(event: "phx_join").first { $0.connection == 2 }?.frame ?? []
        #expect(PhoenixPortal.payload(rejoin)?["stamp_secret"] as? String == secret)
        // Rejoined, not initialised again until the portal says so.
        #expect(!connection.isConnected)
        #expect(inits.load(ordering: .relaxed) == 1)
        portal.send("init")
        #expect(await eventually { connection.isConnected && inits.load(ordering: .relaxed) == 2 })
        #expect(await eventually { portal.frames(event: "heartbeat").contains { $0.connection == 2 } })
        runner.cancel()
        #expect(await runner.value == nil)
        #expect(!connection.isConnected)
    }

    @Test(.timeLimit(.minutes(1))) func heartbeatsEveryIntervalWhileConnected() async throws {
        let portal = try await PhoenixPortal.start()
        let url = try PortalLoginURL(apiURL: "ws://127.0.0.1:\(portal.port)", name: "r", publicIPv4: "127.0.0.1",
                                     publicIPv6: nil, listenPort: 3478).build()
        var config = Self.fastConfiguration()
        config.heartbeatInterval = .milliseconds(300)
        let connection = PortalConnection(url: url, token: "t", stampSecret: makeStampSecret(), configuration: config)
        let runner = Task { await connection.run() }
        defer { runner.cancel() }
        #expect(await eventually { connection.isConnected })
        // Counted on the portal's clock (each frame's arrival time), not over a fixed sleep: wait
        // for six heartbeats, however long a loaded machine takes, then check their spacing.
        #expect(await eventually(.seconds(20)) { portal.frames(event: "heartbeat").count >= 6 })
        let times = portal.events(kind: "frame").compactMap { entry -> Double? in
            guard let frame = entry["frame"] as? [Any], frame.count == 5, frame[3] as? String == "heartbeat" else { return nil }
            return entry["t"] as? Double
        }
        try #require(times.count >= 6)
        // One every 300 ms: five intervals span at least 1.5 s. A late heartbeat makes the span
        // longer, never shorter; an early one (the interval after a late one, if the client catches
        // up) may shorten it by at most one interval, so 4 × 300 ms is the floor. Never faster.
        let span = times[5] - times[0]
        #expect(span >= 1.2, "six heartbeats within \(span) s")
        // And it keeps to the interval rather than stalling: not more than 3 s per heartbeat here.
        #expect(span < 15, "six heartbeats took \(span) s")
        #expect(portal.events(kind: "connect").count == 1)
        runner.cancel()
        _ = await runner.value
    }

    @Test(.timeLimit(.minutes(1))) func givesUpAfterTheConfiguredAttempts() async throws {
        let portal = try await PhoenixPortal.start(["--refuse"])
        let url = try PortalLoginURL(apiURL: "ws://127.0.0.1:\(portal.port)", name: "r", publicIPv4: "127.0.0.1",
                                     publicIPv6: nil, listenPort: 3479).build()
        var config = Self.fastConfiguration()
        config.maxAttempts = 4
        let connection = PortalConnection(url: url, token: "t", stampSecret: "s", configuration: config)
        let started = ContinuousClock.now
        let reason = await connection.run()
        let elapsed = ContinuousClock.now - started
        #expect(reason?.contains("4 attempts failed") == true, "\(reason ?? "nil")")
        #expect(portal.events(kind: "refused").count == 4)
        #expect(!connection.isConnected)
        #expect(!connection.hasBeenInitialized)
        // Three backoff waits of at most (50 + 100 + 200 ms) × 1.5 plus connect time: bounded.
        #expect(elapsed < .seconds(10))
    }

    @Test(.timeLimit(.minutes(1))) func aConnectWithoutAddressesGetsThePortals500AndIsRetriedUnderTheInitialPolicy() async throws {
        let portal = try await PhoenixPortal.start()
        // No ipv4/ipv6: the portal's `{:error, :missing_ip}`, answered 500 by its catch-all handler.
        let url = "ws://127.0.0.1:\(portal.port)/relay/websocket?name=r&port=3478&vsn=2.0.0"
        var config = Self.fastConfiguration()
        config.initialConnectMaxElapsed = .seconds(2)
        let connection = PortalConnection(url: url, token: "t", stampSecret: "s", configuration: config)
        let reason = await connection.run()
        #expect(reason?.contains("HTTP 500 unhandled_connect_error") == true, "\(reason ?? "nil")")
        #expect(reason?.contains("before the first join") == true, "\(reason ?? "nil")")
        #expect(portal.events(kind: "missing-ip").count >= 2)
        #expect(portal.frames(event: "phx_join").isEmpty)
    }

    @Test(.timeLimit(.minutes(1))) func thePortalDropsASocketThatDoesNotHeartbeatInTime() async throws {
        // The portal's idle timeout, scaled down: 1.5 s instead of 41 s.
        let portal = try await PhoenixPortal.start(["--idle-timeout", "1.5"])
        let url = try PortalLoginURL(apiURL: "ws://127.0.0.1:\(portal.port)", name: "r", publicIPv4: "127.0.0.1",
                                     publicIPv6: nil, listenPort: 3478).build()
        // Heartbeats 4 s apart: too slow, the portal drops the socket and the client reconnects.
        var slow = Self.fastConfiguration()
        slow.heartbeatInterval = .seconds(4)
        let lagging = PortalConnection(url: url, token: "t", stampSecret: "s", configuration: slow)
        let runner = Task { await lagging.run() }
        #expect(await eventually(.seconds(20)) { !portal.events(kind: "idle-timeout").isEmpty })
        #expect(await eventually(.seconds(20)) { portal.events(kind: "connect").count >= 2 })
        runner.cancel()
        _ = await runner.value
    }

    @Test(.timeLimit(.minutes(1))) func aSocketThatHeartbeatsInTimeIsKept() async throws {
        let portal = try await PhoenixPortal.start(["--idle-timeout", "1.5"])
        let url = try PortalLoginURL(apiURL: "ws://127.0.0.1:\(portal.port)", name: "r", publicIPv4: "127.0.0.1",
                                     publicIPv6: nil, listenPort: 3478).build()
        var config = Self.fastConfiguration()
        config.heartbeatInterval = .milliseconds(200)
        let connection = PortalConnection(url: url, token: "t", stampSecret: "s", configuration: config)
        let runner = Task { await connection.run() }
        defer { runner.cancel() }
        #expect(await eventually(.seconds(20)) { connection.isConnected })
        // Long enough for several idle periods; heartbeats keep the socket (a loaded machine may
        // delay one heartbeat, but not by more than a second: generous for 200 ms).
        #expect(await eventually(.seconds(20)) { portal.frames(event: "heartbeat").count >= 20 })
        #expect(portal.events(kind: "idle-timeout").isEmpty)
        #expect(portal.events(kind: "connect").count == 1)
        runner.cancel()
        _ = await runner.value
    }
}
