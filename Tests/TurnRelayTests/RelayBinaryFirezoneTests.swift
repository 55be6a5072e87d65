import Foundation
import Glibc
import RelayCore
import RelayIO
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

/// The `turn-relay` binary as a drop-in for Firezone's relay (issue 10): configured with Firezone's
/// environment names only, and stopping (exit status 1) on the portal answers Firezone's relay stops
/// on (`rust/libs/connlib/phoenix-channel`: 401, a join error reply, `disconnect`/`token_expired`,
/// 15 s without a first join), while honouring `Retry-After`. Deadlines are generous and
/// conditions are polled: a loaded two-core machine must not fail these.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryFirezoneTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    /// A JSON log line's metadata value, e.g. `"health":"127.0.0.1:41234"`.
    static func jsonField(_ key: String, in log: String) -> String? {
        for line in log.split(separator: "\n") {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { continue }
            if let value = object[key] as? String { return value }
            if let metadata = object["metadata"] as? [String: Any], let value = metadata[key] as? String { return value }
        }
        return nil
    }

    @Test(.timeLimit(.minutes(2))) func startsWithOnlyFirezoneEnvironmentNames() async throws {
        let portal = try await PhoenixPortal.start(["--init-on-command", "--token", "fz-token"])
        let port = try ListenPortClaims.freePort()
        // What a Firezone compose file sets; nothing of ours, no arguments. The token as read from
        // a secrets file, with its trailing newline.
        let relay = try Relay(port: port, arguments: [], environment: [
            "FIREZONE_TOKEN": "fz-token\n",
            "FIREZONE_API_URL": "ws://127.0.0.1:\(portal.port)",
            "FIREZONE_NAME": "fz-relay",
            "PUBLIC_IP4_ADDR": "203.0.113.7",
            "LISTEN_PORT": "\(port)",
            "LOWEST_PORT": "50460",
            "HIGHEST_PORT": "50470",
            "HEALTH_CHECK_ADDR": "127.0.0.1:0",
            "NUM_WORKER_THREADS": "1",
            "LOG_FORMAT": "json",
            "RNG_SEED": "42",
            // Firezone's XDP interface, mapped to --xdp-interface: a name no host has, so the
            // relay warns once and serves on the io_uring path (never attaches to a real NIC here).
            "EBPF_OFFLOADING": "fzxdp-none0",
        ])
        #expect(await eventually(.seconds(30)) { !portal.events(kind: "connect").isEmpty }, "\(relay.log)")
        // Advertised: the public IPv4 address and the listen port; no IPv6 (none was given, so,
        // as with Firezone's relay, IPv6 is not served).
        let connect = portal.events(kind: "connect").first ?? [:]
        #expect(connect["path"] as? String == "/relay/websocket?name=fz-relay&ipv4=203.0.113.7&port=\(port)&vsn=2.0.0")
        let headers = connect["headers"] as? [String: String] ?? [:]
        #expect(headers["x-authorization"] == "Bearer fz-token")
        #expect(portal.events(kind: "unauthorized").isEmpty)

        // The log is JSON (LOG_FORMAT=json) and says what it listens on.
        #expect(await eventually(.seconds(10)) { Self.jsonField("udp", in: relay.log) != nil }, "\(relay.log)")
        #expect(Self.jsonField("udp", in: relay.log) == "0.0.0.0:\(port)", "\(relay.log)")
        #expect(Self.jsonField("relay_addresses", in: relay.log) == "203.0.113.7")
        #expect(Self.jsonField("relay_ports", in: relay.log) == "50460-50470")
        #expect(Self.jsonField("workers", in: relay.log) == "1")
        #expect(Self.jsonField("realm", in: relay.log) == "firezone")
        #expect(relay.log.contains("RNG_SEED=42 is ignored"))
        #expect(relay.log.components(separatedBy: "XDP fast path off").count == 2, "\(relay.log)")
        #expect(relay.log.contains("no network interface named fzxdp-none0"))
        #expect(relay.log.contains("not serving IPv6"))

        // HEALTH_CHECK_ADDR: /healthz there, /readyz 503 until init.
        #expect(await eventually(.seconds(10)) { Self.jsonField("health", in: relay.log) != nil }, "\(relay.log)")
        let health = try #require(Self.jsonField("health", in: relay.log).flatMap(TransportAddress.init))
        #expect(health.ip == .v4(.loopback))
        #expect(try HTTPTestClient.get(health, "/healthz").status == 200)
        #expect(try HTTPTestClient.get(health, "/readyz").status == 503)

        // LISTEN_PORT on every IPv4 address (BIND_IP4_ADDR's default 0.0.0.0): a Binding on loopback.
        let client = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        let address = TransportAddress(ip: .v4(.loopback), port: port)
        client.send(CoreDriver.message(.binding, id: 1), to: address)
        let binding = try #require(client.receive(timeoutMilliseconds: 5000))
        #expect(CoreDriver.outcome(binding.bytes).success)

        // After init: Firezone credentials in realm `firezone` allocate a relayed address on the
        // public IPv4 address, in LOWEST_PORT...HIGHEST_PORT.
        #expect(await eventually { !portal.frames(event: "phx_join").isEmpty })
        let join = portal.frames(event: "phx_join").first?.frame ?? []
        let secret = try #require(PhoenixPortal.payload(join)?["stamp_secret"] as? String)
        portal.send("init")
        #expect(try await eventually(.seconds(20)) { try HTTPTestClient.get(health, "/readyz").status == 200 }, "\(relay.log)")
        let credentials = RelayBinaryPortalTests.firezoneCredentials(secret: secret)
        client.send(CoreDriver.message(.allocate, id: 3) { $0.appendRequestedTransport(17) }, to: address)
        let challenge = try #require(client.receive(timeoutMilliseconds: 5000))
        let realm = challenge.bytes.withUnsafeBytes { raw in (try? STUNMessage.parse(raw)).flatMap { try? $0.realm() } }
        #expect(realm == "firezone")
        let nonce = try #require(CoreDriver.outcome(challenge.bytes).nonce)
        client.send(CoreDriver.message(.allocate, id: 4, auth: (credentials.user, credentials.password, nonce), realm: "firezone") {
            $0.appendRequestedTransport(17)
        }, to: address)
        let reply = try #require(client.receive(timeoutMilliseconds: 5000))
        #expect(CoreDriver.outcome(reply.bytes).success)
        let relayed = reply.bytes.withUnsafeBytes { raw in
            (try? STUNMessage.parse(raw)).flatMap { try? $0.xorRelayedAddresses() } ?? []
        }
        #expect(relayed.count == 1)
        #expect(relayed.first?.ip == .v4(IPv4Address(203, 0, 113, 7)))
        #expect((50460...50470).contains(relayed.first?.port ?? 0))

        // No DRAIN_SECONDS among Firezone's names: the second signal ends the drain at once.
        kill(relay.process.processIdentifier, SIGTERM)
        #expect(await eventually(.seconds(20)) { relay.log.contains("draining") })
        kill(relay.process.processIdentifier, SIGTERM)
        #expect(await relay.exited(within: .seconds(60)))
    }

    /// Runs the binary with a token and these arguments; returns its exit status and output.
    /// turn-relay refuses to start (a non-zero exit, not a kill) and says `message`.
    static func expectRefusedStart(_ arguments: [String], environment: [String: String], message: String) async throws {
        let (status, output) = try await refusedStart(arguments, token: nil, environment: environment)
        #expect(status != 0 && status != -1, "\(output)")
        #expect(output.contains(message), "\(output)")
    }

    static func refusedStart(_ arguments: [String], token: String? = "t", environment extra: [String: String] = [:])
        async throws -> (status: Int32, output: String) {
        var environment = ["FIREZONE_API_URL": "ws://127.0.0.1:9"].merging(extra) { $1 }
        if let token { environment["FIREZONE_TOKEN"] = token }
        let relay = try Relay(port: 0, arguments: ["serve", "--listen-port", "0", "--health-check-addr", "none",
                                                   "--metrics-addr", "none", "--drain-seconds", "0"] + arguments,
                              environment: environment)
        let exited = await relay.exited(within: .seconds(20))
        if !exited { kill(relay.process.processIdentifier, SIGKILL) }
        relay.process.waitUntilExit()
        return (exited ? relay.process.terminationStatus : -1, relay.log)
    }

    @Test(.timeLimit(.minutes(2))) func aTokenWithoutAPublicAddressRefusesToStart() async throws {
        // Both families defaulted (bind 0.0.0.0 and ::): loopback would be advertised.
        let none = try await Self.refusedStart([])
        #expect(none.status != 0 && none.status != -1, "\(none.output)")
        #expect(none.output.contains("PUBLIC_IP4_ADDR"), "\(none.output)")
        // An unspecified public address is no address either.
        let any = try await Self.refusedStart(["--public-ip4", "0.0.0.0", "--bind-ip6", "none"])
        #expect(any.status != 0 && any.status != -1, "\(any.output)")
        #expect(any.output.contains("PUBLIC_IP4_ADDR"), "\(any.output)")
        // A token of whitespace only is no token.
        let blank = try await Self.refusedStart(["--public-ip4", "192.0.2.1"], token: " \n")
        #expect(blank.status != 0 && blank.status != -1, "\(blank.output)")
        #expect(blank.output.contains("FIREZONE_TOKEN"), "\(blank.output)")
        // Heartbeats must stay well inside the portal's 41 s idle timeout.
        let slow = try await Self.refusedStart(["--public-ip4", "192.0.2.1", "--portal-heartbeat-ms", "45000"])
        #expect(slow.status != 0 && slow.status != -1, "\(slow.output)")
        #expect(slow.output.contains("--portal-heartbeat-ms"), "\(slow.output)")

        // Without a token the same defaults only warn, and the relay runs.
        let port = try ListenPortClaims.freePort()
        let standalone = try Relay(port: port, arguments: ["serve", "--listen-port", "\(port)", "--bind-ip6", "none",
                                                           "--health-check-addr", "none", "--metrics-addr", "none",
                                                           "--drain-seconds", "0"], environment: [:])
        #expect(await eventually(.seconds(20)) { standalone.log.contains("no public address set") }, "\(standalone.log)")
        #expect(standalone.process.isRunning)
        #expect(standalone.log.contains("realm=turn-relay"), "\(standalone.log)")
        kill(standalone.process.processIdentifier, SIGTERM)
        #expect(await standalone.exited(within: .seconds(20)))
        #expect(standalone.process.terminationStatus == 0)
    }

    @Test(.timeLimit(.minutes(1))) func anInvalidTokenStopsTheRelayAtOnce() async throws {
        let portal = try await PhoenixPortal.start(["--token", "the-right-token"])
        let relay = try Relay(portalPort: portal.port, token: "a-wrong-token")
        // Fatal: no retries (the initial policy alone would retry for 15 s).
        #expect(await relay.exited(within: .seconds(12)), "\(relay.log)")
        #expect(relay.process.terminationStatus == 1)
        #expect(portal.events(kind: "unauthorized").count == 1)
        #expect(portal.events(kind: "unauthorized").first?["code"] as? String == "invalid_token")
        #expect(relay.log.contains("invalid_token"), "\(relay.log)")
        #expect(relay.log.contains("Invalid token"), "\(relay.log)")
    }

    @Test(.timeLimit(.minutes(1))) func aJoinErrorStopsTheRelay() async throws {
        let portal = try await PhoenixPortal.start(["--join-error", "join crashed"])
        let relay = try Relay(portalPort: portal.port)
        #expect(await relay.exited(within: .seconds(12)), "\(relay.log)")
        #expect(relay.process.terminationStatus == 1)
        #expect(portal.events(kind: "join-error").count == 1)
        #expect(portal.events(kind: "connect").count == 1)
        #expect(relay.log.contains("the portal refused the join: join crashed"), "\(relay.log)")
    }

    @Test(.timeLimit(.minutes(1))) func disconnectWithTokenExpiredStopsTheRelay() async throws {
        let portal = try await PhoenixPortal.start(["--init-on-command"])
        let relay = try Relay(portalPort: portal.port)
        #expect(await eventually(.seconds(20)) { !portal.frames(event: "phx_join").isEmpty }, "\(relay.log)")
        portal.send("init")
        #expect(await eventually(.seconds(20)) { relay.log.contains("relaying enabled") }, "\(relay.log)")
        portal.send("disconnect token_expired")
        #expect(await eventually { !portal.events(kind: "disconnect-sent").isEmpty })
        #expect(await relay.exited(within: .seconds(20)), "\(relay.log)")
        #expect(relay.process.terminationStatus == 1)
        #expect(relay.log.contains("token_expired"), "\(relay.log)")
        #expect(portal.events(kind: "connect").count == 1, "the relay reconnected after token_expired")
    }

    @Test(.timeLimit(.minutes(1))) func retryAfterOnA503IsWaitedOut() async throws {
        // The first connect is rate limited with Retry-After: 4; the relay's own policy before its
        // first join would retry after 1 s.
        let portal = try await PhoenixPortal.start(["--rate-limit", "1", "--retry-after", "4"])
        let relay = try Relay(portalPort: portal.port)
        #expect(await eventually(.seconds(30)) { portal.events(kind: "connect").count >= 2 }, "\(relay.log)")
        let connects = portal.events(kind: "connect").compactMap { $0["t"] as? Double }
        #expect(connects.count >= 2)
        if connects.count >= 2 {
            // A lower bound only: a loaded machine can only make the gap longer.
            #expect(connects[1] - connects[0] >= 3.9, "second connect after \(connects[1] - connects[0]) s")
        }
        #expect(await eventually(.seconds(20)) { !portal.frames(event: "phx_join").isEmpty }, "\(relay.log)")
        #expect(relay.process.isRunning)
        kill(relay.process.processIdentifier, SIGTERM)
        #expect(await relay.exited(within: .seconds(20)))
    }

    @Test(.timeLimit(.minutes(2))) func givesUpFifteenSecondsAfterTheFirstFailureWithoutAJoin() async throws {
        let portal = try await PhoenixPortal.start(["--refuse"])
        let started = ContinuousClock.now
        let relay = try Relay(portalPort: portal.port)
        #expect(await relay.exited(within: .seconds(90)), "\(relay.log)")
        let elapsed = ContinuousClock.now - started
        #expect(relay.process.terminationStatus == 1)
        // Retries 1 s apart until more than 15 s have passed since the first failure (17 attempts
        // when nothing is slow; fewer on a loaded machine).
        #expect(elapsed > .seconds(15), "gave up after \(elapsed)")
        let refused = portal.events(kind: "refused").count
        #expect(refused >= 3 && refused <= 17, "\(refused) attempts")
        #expect(relay.log.contains("before the first join"), "\(relay.log)")
    }
}
