import Foundation
import Glibc
@testable import InteropTestSupport
@testable import OperationsTestSupport
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport

/// Issue 12, "Tests": "A channel that expires, ... a permission that lapses: the next datagrams are
/// no longer relayed by XDP (the userspace path then drops them as it must)." The relay runs with
/// short, non-standard lifetimes (`--permission-lifetime`, `--channel-lifetime`; the RFC's 300 s
/// and 600 s would make the test wait ten minutes), a TURN client of ours binds a channel and
/// relays ChannelData both ways (on XDP, the `xdp` counters carry it), then, with no refresh (and
/// ChannelData still flowing, which refreshes nothing), the binding stops being usable: its route
/// leaves the maps and the next datagrams reach userspace, which handles them as RFC 8656 says.
/// Both families.
///
/// Only "eventually within N s" is asserted about time: the expiry is polled for, bounded.
@Suite(.serialized, .dedicatedThread, .needsRootForLab)
struct XDPExpiryTests {
    static let messages = 5
    /// The lifetime that runs out in a test, and the one that must not interfere meanwhile.
    static let expiring = 5
    static let lasting = 300
    /// How long after the expiry is due the route may take to leave the maps (the relay's timers
    /// are checked at least once a second; the machine may be busy).
    static let expiryGrace: Duration = .seconds(15)

    enum Family: String, CaseIterable, CustomTestStringConvertible, Sendable {
        case ipv4, ipv6
        var testDescription: String { rawValue }
    }

    /// What runs out: the permission (ChannelBind's own, RFC 8656 §12: ChannelBind "also installs
    /// or refreshes a permission") or the channel binding.
    enum Lapse { case permission, channel }

    /// RFC 8656 §9: "If the permission is not refreshed within the Permission Lifetime, the
    /// permission expires and is deleted"; the channel is still bound, but RFC 8656 §12.5 (the
    /// relayed ChannelData) and §10.3 need a permission: both directions are dropped
    /// (`no_permission`).
    @Test("a permission that lapses: ChannelData no longer relayed by XDP, dropped by userspace", arguments: Family.allCases)
    func permissionLapses(_ family: Family) throws {
        let run = try Run(lapse: .permission, family: family)
        try run.relayThenWaitForTheRouteToGo()
        let (before, after) = try run.sendLate { $0.drops("no_permission") - $1.drops("no_permission") >= 2 * Self.messages }
        #expect(run.peer.receive(timeoutMilliseconds: 500) == nil, "the peer got ChannelData after its permission lapsed")
        #expect(run.client.receive(timeoutMilliseconds: 500) == nil, "the client got a peer datagram after the permission lapsed")
        // The client's ChannelData and the peer's datagrams, each dropped by userspace.
        #expect(after.drops("no_permission") - before.drops("no_permission") >= 2 * Self.messages)
        try run.expectNothingRelayed(after, before, fromPeerToo: true)
        try run.finish()
    }

    /// RFC 8656 §12: "When the channel binding expires, the channel becomes unbound." The
    /// permission is still there, so the client's ChannelData is dropped (`no_channel`: "If no
    /// channel is bound to this number, the datagram is discarded"), and the peer's datagrams come
    /// back as Data indications from userspace (§11.3 without a channel), never as ChannelData.
    @Test("a channel that expires: ChannelData no longer relayed by XDP, dropped by userspace", arguments: Family.allCases)
    func channelExpires(_ family: Family) throws {
        let run = try Run(lapse: .channel, family: family)
        try run.relayThenWaitForTheRouteToGo()
        let (before, after) = try run.sendLate { $0.drops("no_channel") - $1.drops("no_channel") >= Self.messages }
        #expect(run.peer.receive(timeoutMilliseconds: 500) == nil, "the peer got ChannelData after the channel expired")
        for i in 0..<Self.messages {
            #expect(run.client.receive() == .dataIndication(peer: run.peer.localAddress, payload: Array("late-back-\(i)".utf8)),
                    "the peer's datagram \(i) after the channel expired, as a Data indication")
        }
        #expect(after.drops("no_channel") - before.drops("no_channel") >= Self.messages)
        try run.expectNothingRelayed(after, before, fromPeerToo: false)
        try run.finish()
    }

    /// A lab, the relay with one lifetime short and the other long, a client of ours with an
    /// allocation of `family` and one peer, and a channel bound between them.
    struct Run {
        let lab: NetnsLab
        let relay: LabRelay
        let client: TestTURNClient
        let peer: BlockingUDPSocket
        let relayed: TransportAddress
        let lapse: Lapse
        let channel: UInt16 = 0x4003
        let peerIP: String

        init(lapse: Lapse, family: Family) throws {
            let lab = try NetnsLab()
            let (permission, channel) = lapse == .permission ? (expiring, lasting) : (lasting, expiring)
            let relay = try LabRelay(lab: lab, datapath: try Datapath.selected.get(), extraArguments: [
                "--permission-lifetime", "\(permission)", "--channel-lifetime", "\(channel)",
            ])
            if case .xdp(let mode) = relay.datapath {
                let readiness = try relay.readiness()
                #expect(readiness.body.contains("xdp:") && readiness.body.contains(lab.relayInterface)
                    && readiness.body.contains(mode), "XDP not attached: \(readiness.body)\n\(relay.output)")
            }
            let (serverIP, clientIP) = family == .ipv4 ? (lab.relayIPv4, lab.clientIPv4) : (lab.relayIPv6, lab.clientIPv6)
            let peerIP = family == .ipv4 ? lab.peerIPv4 : lab.peerIPv6
            let credential = relay.credential(id: "expiry-\(lapse)-\(family)")
            let (client, peer) = try lab.inOut {
                (try TestTURNClient(server: TransportAddress(ip: IPAddress(serverIP)!, port: relay.port),
                                    username: credential.username, password: credential.password,
                                    bind: TransportAddress(ip: IPAddress(clientIP)!, port: 0)),
                 try BlockingUDPSocket(bindTo: TransportAddress(ip: IPAddress(peerIP)!, port: 0)))
            }
            let allocated = try #require(client.allocate(family: family == .ipv4 ? .ipv4 : .ipv6), "no answer to Allocate")
            #expect(allocated.errorCode == nil, "Allocate: \(String(describing: allocated.errorCode))")
            relayed = try #require(allocated.xorRelayedAddresses.first, "no XOR-RELAYED-ADDRESS")
            let bound = try #require(client.channelBind(self.channel, peer: peer.localAddress), "no answer to ChannelBind")
            #expect(bound.errorCode == nil, "ChannelBind: \(String(describing: bound.errorCode))")
            (self.lab, self.relay, self.client, self.peer, self.peerIP, self.lapse) = (lab, relay, client, peer, peerIP, lapse)
        }

        /// The channel relays both ways (on XDP: its route is in the maps and the `xdp` counters
        /// carry it); then, with nothing refreshed and ChannelData still flowing, the route leaves
        /// the maps within the bound.
        func relayThenWaitForTheRouteToGo() throws {
            let bound = ContinuousClock.now
            let xdp = relay.datapath.isXDP
            if xdp {
                let routes = try XDPRouteMaps.read(lab)
                #expect(routes.mentions(peerIP: peerIP), "no route for the bound channel: \(routes)")
            }
            let before = try relay.metrics()
            exchangeChannelData(client, channel: channel, peer: peer, relayed: relayed, rounds: 0..<XDPExpiryTests.messages)
            let relayedBefore = ContinuousClock.now - bound
            if relayedBefore >= .seconds(XDPExpiryTests.expiring) {
                Issue.record("relaying took \(relayedBefore), past the \(XDPExpiryTests.expiring) s lifetime: the machine is too busy for this test")
            }
            let carrier = xdp ? "xdp" : "userspace"
            let n = XDPExpiryTests.messages
            let after = try relay.metrics { moved($0, before, carrier).both(atLeast: n) }
            #expect(moved(after, before, carrier).both(atLeast: n), "the \(carrier) counters did not carry the ChannelData")
            if xdp {
                #expect(moved(after, before, "userspace") == Moved(clientToPeer: 0, peerToClient: 0), "userspace relayed ChannelData the XDP path should have carried")
                let deadline = bound + .seconds(XDPExpiryTests.expiring) + XDPExpiryTests.expiryGrace
                var routes = try XDPRouteMaps.read(lab)
                var round = 0
                while routes.mentions(peerIP: peerIP), ContinuousClock.now < deadline {
                    sendMeanwhile(round)
                    round += 1
                    usleep(250_000)
                    routes = try XDPRouteMaps.read(lab)
                }
                #expect(!routes.mentions(peerIP: peerIP), "the route is still in the maps after the \(lapse) lapsed: \(routes)")
                print("xdp-expiry[\(relay.datapath)]: the \(lapse)'s route left the maps \(ContinuousClock.now - bound) after ChannelBind")
                let gauge = try relay.metrics { $0.total("relay_xdp_routes_installed") == 0 }
                #expect(gauge.total("relay_xdp_routes_installed") == 0)
            } else {
                // No maps to watch on the userspace path: wait out the lifetime instead.
                let due = bound + .seconds(XDPExpiryTests.expiring) + .seconds(2)
                var round = 0
                while ContinuousClock.now < due {
                    sendMeanwhile(round)
                    round += 1
                    usleep(250_000)
                }
            }
            drain()
        }

        /// ChannelData both ways while the lifetime runs out: it must not keep the binding alive.
        /// RFC 8656 §12.6: "the receipt of a ChannelData message MUST NOT refresh either the
        /// channel binding or the permission towards the peer" (on XDP the core never sees it).
        func sendMeanwhile(_ round: Int) {
            client.sendChannelData(channel, payload: Array("meanwhile-\(round)".utf8))
            _ = peer.send(Array("meanwhile-back-\(round)".utf8), to: relayed)
        }

        /// Reads away what `sendMeanwhile` got through before the expiry (bounded: a few hundred
        /// datagrams were sent at most).
        func drain() {
            var left = 1000
            while left > 0, peer.receive(timeoutMilliseconds: 300) != nil { left -= 1 }
            while left > 0, client.receive(timeoutMilliseconds: 300) != nil { left -= 1 }
        }

        /// `messages` ChannelData from the client and as many datagrams from the peer, after the
        /// expiry; the scrapes before and after (after: once `dropped(after, before)` holds, or 10 s).
        func sendLate(dropped: (RelayMetrics, RelayMetrics) -> Bool) throws -> (RelayMetrics, RelayMetrics) {
            let before = try relay.metrics()
            for i in 0..<XDPExpiryTests.messages {
                client.sendChannelData(channel, payload: Array("late-\(i)".utf8))
                _ = peer.send(Array("late-back-\(i)".utf8), to: relayed)
            }
            return (before, try relay.metrics { dropped($0, before) })
        }

        /// Nothing relayed as ChannelData on either path (and from the peer, when `fromPeerToo`,
        /// nothing at all); on XDP, the program passed the client's ChannelData on a map miss.
        func expectNothingRelayed(_ after: RelayMetrics, _ before: RelayMetrics, fromPeerToo: Bool) throws {
            let xdp = moved(after, before, "xdp")
            let userspace = moved(after, before, "userspace")
            #expect(xdp == Moved(clientToPeer: 0, peerToClient: 0), "the XDP path relayed after the \(lapse) lapsed: \(xdp)")
            #expect(userspace.clientToPeer == 0, "userspace relayed ChannelData after the \(lapse) lapsed")
            if fromPeerToo {
                #expect(userspace.peerToClient == 0, "userspace relayed a peer datagram after the \(lapse) lapsed")
            }
            if relay.datapath.isXDP {
                let passed = after.total("relay_xdp_passed_packets_total", ["reason": "map_miss"])
                    - before.total("relay_xdp_passed_packets_total", ["reason": "map_miss"])
                #expect(passed >= XDPExpiryTests.messages, "the XDP program passed \(passed) datagrams on a map miss")
            }
        }

        func finish() throws {
            #expect(relay.isRunning, "turn-relay exited:\n\(relay.output)")
            let status = relay.stop()
            #expect(status == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
        }

        struct Moved: Equatable, CustomStringConvertible {
            var clientToPeer: Int
            var peerToClient: Int
            func both(atLeast n: Int) -> Bool { clientToPeer >= n && peerToClient >= n }
            var description: String { "\(clientToPeer) client→peer, \(peerToClient) peer→client" }
        }

        func moved(_ after: RelayMetrics, _ before: RelayMetrics, _ datapath: String) -> Moved {
            Moved(clientToPeer: after.relayed("client_to_peer", datapath: datapath) - before.relayed("client_to_peer", datapath: datapath),
                  peerToClient: after.relayed("peer_to_client", datapath: datapath) - before.relayed("peer_to_client", datapath: datapath))
        }
    }
}
