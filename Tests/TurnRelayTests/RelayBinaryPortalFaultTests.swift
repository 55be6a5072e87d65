import Foundation
import Glibc
import RelayIO
import STUN
import Testing
import TestSupport
import TURNTestClient
@testable import OperationsTestSupport

/// The `turn-relay` binary against a portal that misbehaves (`PhoenixPortal`'s `stall` and
/// `garbage` commands): a portal that keeps the connection open and answers nothing, and one that
/// sends what is not a Phoenix frame, frames of no use, binary frames, a frame over the relay's
/// size limit, a text frame not UTF-8, an init in fragments and a fragmented message over the
/// message limit. Each is survived, counted on /metrics, and relaying goes on throughout.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryPortalFaultTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    /// A relay in portal mode with /metrics and peers on loopback allowed, joined to the portal
    /// (which sends `init` only when told).
    struct Portalled {
        let portal: PhoenixPortal
        let relay: Relay
        let health: TransportAddress
        let metrics: TransportAddress
        /// The stamp secret the relay joined with.
        let secret: String

        init() async throws {
            portal = try await PhoenixPortal.start(["--init-on-command", "--token", "relay-token-1"])
            let relay = try Relay(portalPort: portal.port, extra: ["--metrics-addr", "127.0.0.1:0", "--allow-peer", "127.0.0.0/8",
                                                                     "--min-port", "50550", "--max-port", "50570"])
            self.relay = relay
            var health: TransportAddress?
            _ = await eventually(.seconds(20)) {
                health = RelayBinaryReloadTests.address(after: "health=", in: relay.log)
                return health != nil
            }
            self.health = try #require(health, "no endpoints line in the relay's log:\n\(relay.log)")
            metrics = try #require(RelayBinaryReloadTests.address(after: "metrics=", in: relay.log), "\(relay.log)")
            let portal = self.portal
            #expect(await eventually { !portal.frames(event: "phx_join").isEmpty }, "\(relay.log)")
            let join = portal.frames(event: "phx_join").first?.frame ?? []
            secret = try #require(PhoenixPortal.payload(join)?["stamp_secret"] as? String)
        }

        var address: TransportAddress { TransportAddress(ip: .v4(.loopback), port: relay.port) }

        func ready() throws -> Bool { try HTTPTestClient.get(health, "/readyz").status == 200 }

        /// A sample of /metrics (0 when absent, -1 when /metrics does not answer).
        func metric(_ series: String) -> Double {
            guard let scrape = try? scrapeMetrics(metrics) else { return -1 }
            return scrape[series] ?? 0
        }

        func losses(_ reason: String) -> Double { metric("relay_portal_connection_losses_total{reason=\"\(reason)\"}") }
        func discarded(_ reason: String) -> Double { metric("relay_portal_frames_discarded_total{reason=\"\(reason)\"}") }

        /// Every loss reason's count.
        func allLosses() -> [String: Double] {
            let reasons = ["connect_failed", "closed", "frame_rejected", "join_timeout", "heartbeat_timeout", "channel_error"]
            return Dictionary(uniqueKeysWithValues: reasons.map { ($0, losses($0)) })
        }

        /// The portal sends init (to every joined connection not stalled); readiness follows.
        func initialize() async throws {
            portal.send("init")
            #expect(try await eventually(.seconds(20)) { try ready() }, "\(relay.log)")
            #expect(metric("relay_portal_connected") == 1)
        }

        /// The relay joined again on a connection after `connection`; init it.
        func rejoinAndInit(after connection: Int) async throws {
            #expect(await eventually(.seconds(20)) { portal.frames(event: "phx_join").contains { $0.connection > connection } },
                    "\(relay.log)")
            try await initialize()
        }

        /// An allocation with Firezone credentials made with the stamp secret, permitted to a peer.
        func allocation() throws -> Allocation {
            let credentials = RelayBinaryPortalTests.firezoneCredentials(secret: secret)
            let client = try TestTURNClient(server: address, username: credentials.user, password: credentials.password)
            let allocated = try #require(client.allocate(), "no answer to Allocate:\n\(relay.log)")
            #expect(allocated.errorCode == nil)
            let relayed = try #require(allocated.xorRelayedAddresses.first)
            let peer = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
            #expect(client.createPermission(peer: peer.localAddress)?.errorCode == nil)
            return Allocation(client: client, relayed: relayed, peer: peer)
        }

        /// SIGTERM: the relay stops at once (drain 0) with status 0.
        func stop() async {
            kill(relay.process.processIdentifier, SIGTERM)
            #expect(await relay.exited(within: .seconds(10)))
            #expect(relay.process.terminationStatus == 0)
        }
    }

    struct Allocation {
        let client: TestTURNClient
        let relayed: TransportAddress
        let peer: BlockingUDPSocket

        /// One datagram each way: a Send indication to the peer, the peer's answer back as a Data indication.
        func relays(_ round: Int) -> Bool {
            let out = Array("to the peer \(round)".utf8), back = Array("from the peer \(round)".utf8)
            client.sendIndication(to: peer.localAddress, payload: out)
            guard let (got, from) = peer.receive(timeoutMilliseconds: 2000), got == out, from == relayed else { return false }
            peer.send(back, to: relayed)
            return client.receive() == .dataIndication(peer: peer.localAddress, payload: back)
        }
    }

    /// The portal stops answering (no heartbeat replies, no pushes, the TCP connection open): after
    /// more than 3 unanswered heartbeats (200 ms apart here) the relay declares the connection lost,
    /// counts it as `heartbeat_timeout`, turns not ready, closes the stalled connection and
    /// reconnects. Relaying never stops.
    @Test(.timeLimit(.minutes(2))) func aStalledPortalIsLeftAfterItsHeartbeatsGoUnansweredWhileRelayingGoesOn() async throws {
        let r = try await Portalled()
        try await r.initialize()
        let allocation = try r.allocation()
        #expect(allocation.relays(1))
        #expect(r.allLosses().values.allSatisfy { $0 == 0 }, "\(r.allLosses())")

        r.portal.send("stall")
        #expect(await eventually { !r.portal.events(kind: "stalled").isEmpty })
        #expect(allocation.relays(2), "relaying while the portal stalls")
        #expect(try await eventually(.seconds(10)) { try !r.ready() }, "\(r.relay.log)")
        #expect(r.metric("relay_portal_connected") == 0)
        #expect(r.losses("heartbeat_timeout") == 1, "\(r.allLosses())")
        // The stalled connection is closed by the relay, not left open beside the new one.
        #expect(await eventually(.seconds(20)) { r.portal.events(kind: "stalled-closed").contains { $0["connection"] as? Int == 1 } },
                "\(r.relay.log)")
        #expect(allocation.relays(3), "relaying while the relay has no portal")

        try await r.rejoinAndInit(after: 1)
        #expect(allocation.relays(4))
        var expected = ["connect_failed": 0.0, "closed": 0, "frame_rejected": 0, "join_timeout": 0, "heartbeat_timeout": 1, "channel_error": 0]
        // A join of the new connection that the slow machine let time out is a loss too, and fine.
        expected["join_timeout"] = r.losses("join_timeout")
        #expect(r.allLosses() == expected)
        #expect(r.relay.log.contains("portal connection lost: heartbeat_timeout"), "\(r.relay.log)")
        await r.stop()
    }

    /// Garbage on the open connection: what is not a Phoenix v2 frame, frames of unknown topics
    /// and events (several would be an init or a token_expired disconnect if read loosely) and
    /// binary frames are counted and change nothing, before init (relaying stays closed) and after
    /// it (readiness and the connection stay). A text frame over the relay's 64 KiB frame limit
    /// (itself a well-formed init) makes the WebSocket layer close the connection: counted as
    /// `frame_rejected`, the relay reconnects and rejoins. Relaying is unaffected throughout.
    @Test(.timeLimit(.minutes(2))) func garbageFromThePortalIsCountedAndIgnoredAndAnOversizeFrameCostsTheConnection() async throws {
        let r = try await Portalled()
        let portal = r.portal
        func counts() -> String { "malformed \(r.discarded("malformed")), ignored \(r.discarded("ignored")), binary \(r.discarded("binary"))" }
        /// Has the portal send these kinds of garbage; how many frames of each it sent.
        func sendGarbage(_ kinds: [String]) async -> [String: Int] {
            let before = portal.events(kind: "garbage-sent").count
            for kind in kinds { portal.send("garbage \(kind)") }
            _ = await eventually { portal.events(kind: "garbage-sent").count == before + kinds.count }
            var sent: [String: Int] = [:]
            for event in portal.events(kind: "garbage-sent").dropFirst(before) {
                sent[event["garbage"] as? String ?? "", default: 0] += event["count"] as? Int ?? 0
            }
            return sent
        }

        // Before init: counted, and relaying stays closed (no garbage was taken for an init).
        let sent = await sendGarbage(["malformed", "ignored", "binary"])
        let (malformed, ignored) = (Double(sent["malformed"] ?? 0), Double(sent["ignored"] ?? 0))
        #expect(malformed > 10 && ignored > 5 && sent["binary"] == 2, "\(sent)")
        #expect(await eventually {
            r.discarded("malformed") == malformed && r.discarded("ignored") == ignored && r.discarded("binary") == 2
        }, "\(counts())")
        #expect(try !r.ready())
        let credentials = RelayBinaryPortalTests.firezoneCredentials(secret: r.secret)
        #expect(try RelayBinaryReloadTests.allocate(r.address, user: credentials.user, password: credentials.password, id: 1) == 401,
                "garbage opened relaying")

        // After init: the same garbage changes nothing either.
        try await r.initialize()
        let allocation = try r.allocation()
        #expect(allocation.relays(1))
        #expect(await sendGarbage(["malformed", "ignored", "binary"]) == sent)
        #expect(await eventually {
            r.discarded("malformed") == 2 * malformed && r.discarded("ignored") == 2 * ignored && r.discarded("binary") == 4
        }, "\(counts())")
        #expect(try r.ready())
        #expect(allocation.relays(2))
        // Heartbeats are still answered on the first connection, and it is the only one.
        let heartbeats = portal.frames(event: "heartbeat").filter { $0.connection == 1 }.count
        #expect(await eventually { portal.frames(event: "heartbeat").filter { $0.connection == 1 }.count >= heartbeats + 3 })
        #expect(portal.events(kind: "connect").count == 1)
        #expect(try r.ready())
        #expect(r.allLosses().values.allSatisfy { $0 == 0 }, "\(r.allLosses())")

        // A frame over the limit: the connection goes, counted; the relay reconnects and rejoins.
        _ = await sendGarbage(["oversize"])
        #expect(await eventually(.seconds(10)) { portal.events(kind: "closed").contains { $0["connection"] as? Int == 1 } },
                "\(r.relay.log)")
        #expect(await eventually(.seconds(10)) { r.losses("frame_rejected") == 1 }, "\(r.allLosses())\n\(r.relay.log)")
        #expect(allocation.relays(3), "relaying after the portal connection was dropped")
        try await r.rejoinAndInit(after: 1)
        #expect(allocation.relays(4))
        // The oversize frame never reached the channel: nothing more discarded.
        #expect(r.discarded("malformed") == 2 * malformed && r.discarded("binary") == 4, "\(counts())")
        await r.stop()
    }

    /// WebSocket framing from the portal that RFC 6455 defines: a text message in fragments ("An
    /// intermediary might coalesce and/or split frames", §5.4) is one message, here the init that
    /// opens relaying; a text frame that is not UTF-8 fails the connection (§8.1: "When an
    /// endpoint is to interpret a byte stream as UTF-8 but finds that the byte stream is not, in
    /// fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_"), and so
    /// does a message in frames each within the 64 KiB frame limit but beyond the 1 MiB message
    /// limit (memory per connection stays bounded). Neither is taken for the init it spells; each
    /// is counted as `frame_rejected`, the relay reconnects and rejoins, relaying goes on.
    @Test(.timeLimit(.minutes(2))) func fragmentedInitOpensRelayingAndInvalidUTF8OrAnOversizeMessageCostsTheConnection() async throws {
        let r = try await Portalled()
        let portal = r.portal
        func sendGarbage(_ kind: String) async {
            let before = portal.events(kind: "garbage-sent").count
            portal.send("garbage \(kind)")
            _ = await eventually { portal.events(kind: "garbage-sent").count > before }
        }
        /// The status code of connection `n`'s closing handshake as the portal saw it.
        func closeCode(_ n: Int) -> Int? {
            portal.events(kind: "closed").first { $0["connection"] as? Int == n }?["code"] as? Int
        }
        let credentials = RelayBinaryPortalTests.firezoneCredentials(secret: r.secret)

        // Before init: an init whose text frame is not UTF-8 closes the connection, opens nothing.
        await sendGarbage("invalid-utf8")
        #expect(await eventually(.seconds(10)) { portal.events(kind: "closed").contains { $0["connection"] as? Int == 1 } },
                "\(r.relay.log)")
        // RFC 6455 §7.4.1: "1007 indicates that an endpoint is terminating the connection because it
        // has received data within a message that was not consistent with the type of the message
        // (e.g., non-UTF-8 [RFC3629] data within a text message)."
        #expect(closeCode(1) == 1007)
        #expect(await eventually(.seconds(10)) { r.losses("frame_rejected") == 1 }, "\(r.allLosses())\n\(r.relay.log)")
        #expect(try !r.ready())
        #expect(try RelayBinaryReloadTests.allocate(r.address, user: credentials.user, password: credentials.password, id: 1) == 401,
                "a non-UTF-8 init opened relaying")

        // The relay rejoins; an init in four fragments is an init.
        #expect(await eventually(.seconds(20)) { portal.frames(event: "phx_join").contains { $0.connection == 2 } }, "\(r.relay.log)")
        await sendGarbage("fragmented")
        #expect(try await eventually(.seconds(20)) { try r.ready() }, "\(r.relay.log)")
        let allocation = try r.allocation()
        #expect(allocation.relays(1))

        // A 1.2 MB message in 60,000-byte frames: the connection goes; relaying does not.
        await sendGarbage("fragmented-oversize")
        #expect(await eventually(.seconds(10)) { portal.events(kind: "closed").contains { $0["connection"] as? Int == 2 } },
                "\(r.relay.log)")
        // RFC 6455 §7.4.1: "1009 indicates that an endpoint is terminating the connection because it
        // has received a message that is too big for it to process."
        #expect(closeCode(2) == 1009)
        #expect(await eventually(.seconds(10)) { r.losses("frame_rejected") == 2 }, "\(r.allLosses())\n\(r.relay.log)")
        #expect(allocation.relays(2), "relaying after the portal connection was dropped")
        try await r.rejoinAndInit(after: 2)
        #expect(allocation.relays(3))
        #expect(r.losses("closed") == 0 && r.losses("channel_error") == 0, "\(r.allLosses())")
        await r.stop()
    }
}
