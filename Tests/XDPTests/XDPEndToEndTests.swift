import Foundation
import Glibc
@testable import InteropTestSupport
@testable import OperationsTestSupport
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport

/// The relay end to end in network namespaces (issue 12, "Tests"): the turn-relay binary in a
/// lab's relay namespace, real clients (aioice, coturn's turnutils_uclient, a TURN client of our
/// own for the request-by-request scenarios) and their peers in the other namespace, over a veth
/// pair whose relay end carries the XDP program when the datapath is XDP (see `Datapath`).
/// Every scenario also runs on the userspace path (XDP_E2E_DATAPATH=userspace), where the
/// `userspace` counters must carry everything.
///
/// Each test makes its own lab (scripts/netns-lab, a name unique to the process and test) and
/// relay, and deletes both at its end, failed or not.
@Suite(.serialized, .dedicatedThread, .needsRootForLab)
struct XDPEndToEndTests {
    static let messages = 10

    /// The datapath under test, or a recorded failure naming a wrong XDP_E2E_* setting.
    static func datapath() throws -> Datapath { try Datapath.selected.get() }

    /// A new lab and the relay under test in it, on the selected datapath (attached, on XDP).
    static func startRelay(credentials: (NetnsLab) -> String = { _ in "" }, extraArguments: [String] = []) throws
        -> LabRelay {
        let lab = try NetnsLab()
        let relay = try LabRelay(lab: lab, datapath: try datapath(), credentials: credentials(lab),
                                 extraArguments: extraArguments)
        try expectXDPAttached(relay)
        return relay
    }

    // MARK: - aioice

    struct AioiceScenario: CustomTestStringConvertible, Sendable {
        let name: String
        /// The client talks to the relay over IPv6 (2001:db8::1) instead of IPv4 (198.18.0.1).
        let clientOverIPv6: Bool
        /// aioice_turn_client.py --family: ipv4, ipv6 or dual.
        let family: String
        let peerIsIPv6: Bool
        var testDescription: String { name }
    }

    static let aioiceScenarios = [
        AioiceScenario(name: "IPv4 client, IPv4 relay, IPv4 peer", clientOverIPv6: false, family: "ipv4", peerIsIPv6: false),
        AioiceScenario(name: "IPv6 client, IPv6 relay, IPv6 peer", clientOverIPv6: true, family: "ipv6", peerIsIPv6: true),
        AioiceScenario(name: "IPv4 client, IPv6 relay, IPv6 peer", clientOverIPv6: false, family: "ipv6", peerIsIPv6: true),
        AioiceScenario(name: "IPv6 client, IPv4 relay, IPv4 peer", clientOverIPv6: true, family: "ipv4", peerIsIPv6: false),
        AioiceScenario(name: "IPv4 client, dual allocation, IPv6 peer", clientOverIPv6: false, family: "dual", peerIsIPv6: true),
        AioiceScenario(name: "IPv6 client, dual allocation, IPv4 peer", clientOverIPv6: true, family: "dual", peerIsIPv6: false),
    ]

    /// aioice binds a channel on its first send to a peer, so every payload travels as ChannelData
    /// both ways: on the XDP datapath the program relays all of it, and userspace relays nothing.
    @Test("aioice relays every datagram intact over channels", arguments: aioiceScenarios)
    func aioiceChannels(_ scenario: AioiceScenario) throws {
        let relay = try Self.startRelay()
        let lab = relay.lab
        let before = try relay.metrics()
        let peerHost = scenario.peerIsIPv6 ? lab.peerIPv6 : lab.peerIPv4
        let run = try runAioice(lab, relay, serverHost: scenario.clientOverIPv6 ? lab.relayIPv6 : lab.relayIPv4,
                                family: scenario.family, peerHost: peerHost, messages: Self.messages)
        let relayedHost = scenario.peerIsIPv6 ? lab.relayIPv6 : lab.relayIPv4
        #expect(run.lines.contains { $0.hasPrefix("allocated: relayed=\(relayedHost):") }, "\(run.output)")
        if scenario.family == "dual" {
            let relayed = run.lines.first { $0.hasPrefix("relayed addresses: ") } ?? ""
            #expect(relayed.contains(lab.relayIPv4) && relayed.contains(lab.relayIPv6), "dual allocation: \(relayed)")
        }
        try expectChannelDataCarried(relay, since: before, clientToPeer: Self.messages, peerToClient: Self.messages,
                                     everythingWasChannelData: true)
        if relay.datapath.isXDP {
            // aioice deletes its allocation when it closes (Refresh with LIFETIME 0): its route
            // leaves the maps before the relay answers.
            let routes = try XDPRouteMaps.read(lab)
            #expect(routes.clientRoutes.isEmpty && routes.peerRoutes.isEmpty, "routes left after aioice closed: \(routes)")
            #expect(try relay.metrics().total("relay_xdp_routes_installed") == 0)
        }
        try expectCleanStop(relay)
    }

    // MARK: - turnutils_uclient

    struct UclientScenario: CustomTestStringConvertible, Sendable {
        let name: String
        let flags: [String]
        let clientOverIPv6: Bool
        let peerIsIPv6: Bool
        let clients: Int
        var testDescription: String { name }
        /// Without -s, turnutils_uclient binds channels (RFC 5766 channel numbers, hence the
        /// relay's --rfc5766-channel-numbers).
        var usesChannels: Bool { !flags.contains("-s") }
        /// -y: the clients send to each other's relayed addresses, the relay's own address. The
        /// core never gives such a peer a route (it needs the per-datagram check that its port is
        /// a live allocation), so hairpin traffic stays in userspace even over channels.
        var isHairpin: Bool { flags.contains("-y") }
    }

    static let uclientScenarios = [
        UclientScenario(name: "channels", flags: [], clientOverIPv6: false, peerIsIPv6: false, clients: 1),
        UclientScenario(name: "IPv6 relay for an IPv4 client (-x), IPv6 peer", flags: ["-x"], clientOverIPv6: false,
                        peerIsIPv6: true, clients: 1),
        UclientScenario(name: "IPv4 relay for an IPv6 client (-X), IPv4 peer", flags: ["-X"], clientOverIPv6: true,
                        peerIsIPv6: false, clients: 1),
        UclientScenario(name: "dual allocation (-Z), IPv6 peer", flags: ["-Z"], clientOverIPv6: false, peerIsIPv6: true,
                        clients: 1),
        UclientScenario(name: "20 clients over channels (-m 20)", flags: ["-m", "20"], clientOverIPv6: false,
                        peerIsIPv6: false, clients: 20),
        UclientScenario(name: "client to client over channels (-y): hairpin stays in userspace", flags: ["-y"],
                        clientOverIPv6: false, peerIsIPv6: false, clients: 2),
        UclientScenario(name: "Send and Data indications (-s)", flags: ["-s"], clientOverIPv6: false, peerIsIPv6: false,
                        clients: 1),
    ]

    @Test("turnutils_uclient relays every message with zero loss", arguments: uclientScenarios)
    func uclient(_ scenario: UclientScenario) throws {
        let relay = try Self.startRelay()
        let lab = relay.lab
        let peerPort: UInt16 = 3480
        let peer = try lab.process(in: lab.outNamespace, try ExternalTool.locate("turnutils_peer"),
                                   ["-p", "\(peerPort)", "-L", lab.peerIPv4, "-L", lab.peerIPv6], name: "turnutils_peer")
        defer { peer.kill() }
        // Ready once its port is taken (a bind by us then fails).
        let deadline = ContinuousClock.now + .seconds(5)
        while try lab.inOut({ LoopbackPorts.canBind(ipv6: false, port: peerPort, ipv4Address: lab.peerIPv4) }),
              ContinuousClock.now < deadline {
            usleep(20_000)
        }
        let before = try relay.metrics()
        // -v: the relayed addresses; -c: no RTCP companion allocation; 10 messages of 100 bytes.
        let arguments = ["-v", "-c", "-W", relay.secret, "-p", "\(relay.port)",
                         "-e", scenario.peerIsIPv6 ? lab.peerIPv6 : lab.peerIPv4, "-r", "\(peerPort)",
                         "-n", "\(Self.messages)", "-l", "100"]
            + scenario.flags + [scenario.clientOverIPv6 ? lab.relayIPv6 : lab.relayIPv4]
        let run = try lab.run(in: lab.outNamespace, try ExternalTool.locate("turnutils_uclient"), arguments,
                              name: "turnutils_uclient", timeout: .seconds(90))
        let report = UclientReport(output: run.output)
        print("xdp-e2e[\(relay.datapath)]: turnutils_uclient \(arguments.joined(separator: " ")) -> "
            + "exit \(run.status.map(String.init) ?? "killed at timeout"), "
            + (report.map {
                "sent \($0.sentMessages), received \($0.receivedMessages), lost \($0.lostPackets), "
                    + "IPv4 relays \($0.relayedIPv4Allocations), IPv6 relays \($0.relayedIPv6Allocations)"
            } ?? "no final statistics"))
        let tail = run.output.split(whereSeparator: \.isNewline).suffix(30).joined(separator: "\n")
        #expect(run.status == 0, "turnutils_uclient exit status \(run.status.map(String.init) ?? "killed"):\n\(tail)")
        let finished = try #require(report, "turnutils_uclient printed no final statistics:\n\(tail)")
        let expected = Self.messages * scenario.clients
        #expect(finished.sentMessages == expected)
        #expect(finished.receivedMessages == expected)
        #expect(finished.lostPackets == 0)
        #expect(finished.sendDropped == 0)
        if scenario.peerIsIPv6 {
            #expect(finished.relayedIPv6Allocations >= 1, "no IPv6 relayed address:\n\(tail)")
        } else {
            #expect(finished.relayedIPv4Allocations >= scenario.clients, "IPv4 relayed addresses:\n\(tail)")
        }
        if scenario.isHairpin {
            // Each message: client → its allocation → the other allocation (a peer datagram) → client.
            let after = try relay.metrics {
                let moved = relayedDelta($0, before, datapath: "userspace")
                return moved.clientToPeer >= expected && moved.peerToClient >= expected
            }
            let moved = relayedDelta(after, before, datapath: "userspace")
            #expect(moved.clientToPeer >= expected && moved.peerToClient >= expected, "userspace relayed \(moved)")
            #expect(relayedDelta(after, before, datapath: "xdp") == (0, 0), "the XDP path relayed hairpin traffic")
            if relay.datapath.isXDP {
                let routes = try XDPRouteMaps.read(lab)
                #expect(routes.clientRoutes.isEmpty && routes.peerRoutes.isEmpty, "routes to the relay's own address: \(routes)")
            }
        } else if scenario.usesChannels {
            try expectChannelDataCarried(relay, since: before, clientToPeer: expected, peerToClient: expected,
                                         everythingWasChannelData: true)
        } else {
            // Send indications out, Data indications back: all userspace, on either datapath.
            let after = try relay.metrics {
                $0.total("relay_data_indications_sent_total") - before.total("relay_data_indications_sent_total") >= expected
            }
            #expect(after.total("relay_send_indications_relayed_total")
                - before.total("relay_send_indications_relayed_total") >= expected)
            #expect(after.total("relay_data_indications_sent_total")
                - before.total("relay_data_indications_sent_total") >= expected)
            #expect(relayedDelta(after, before, datapath: "xdp") == (0, 0), "the XDP path relayed indications")
        }
        #expect(peer.isRunning, "turnutils_peer exited:\n\(peer.output)")
        try expectCleanStop(relay)
    }

    // MARK: - Request by request

    /// RFC 8656 §11.3: a datagram from a peer with a permission but no channel to its transport
    /// address is sent to the client "using a Data indication"; §12.7 uses ChannelData only "If
    /// a channel is bound" to that peer's address. So a second peer port on the same (permitted)
    /// IP gets Data indications while the channel keeps relaying ChannelData, and Send
    /// indications reach it: the XDP path must pass all of that to userspace.
    @Test("Data and Send indications work beside a channel")
    func indicationsBesideAChannel() throws {
        let session = try Session(id: "indications", peers: { [$0.peerIPv4, $0.peerIPv4] })
        let (relay, client, relayed) = (session.relay, session.client, session.relayed)
        let (channelPeer, otherPeer) = (session.peers[0], session.peers[1])
        let channel: UInt16 = 0x4001
        #expect(client.channelBind(channel, peer: channelPeer.localAddress)?.errorCode == nil)
        if relay.datapath.isXDP {
            // One route each way, for the channel's peer transport address only (the other port
            // has a permission, no channel), with the addresses as they are on the wire.
            let lab = session.lab
            let routes = try XDPRouteMaps.read(lab)
            let clientEndpoint = "\(lab.clientIPv4):\(client.socket.localAddress.port)"
            let peerEndpoint = "\(lab.peerIPv4):\(channelPeer.localAddress.port)"
            #expect(routes.clientRoutes.map(\.description)
                == ["\(clientEndpoint) channel 0x4001 → \(peerEndpoint)"], "\(routes.clientRoutes)")
            #expect(routes.peerRoutes.map(\.description)
                == ["\(peerEndpoint) → \(lab.relayIPv4):\(relayed.port) ⇒ \(clientEndpoint) channel 0x4001"],
                "\(routes.peerRoutes)")
            #expect(try relay.metrics().total("relay_xdp_routes_installed") == 1)
        }
        let before = try relay.metrics()

        for i in 0..<Self.messages {
            // The channel, both ways.
            try exchange(client, channel: channel, peer: channelPeer, relayed: relayed, rounds: i..<(i + 1))
            // The other port of the same IP: Data indications, Send indications.
            let indication = Array("di-\(i)".utf8)
            _ = otherPeer.send(indication, to: relayed)
            #expect(client.receive() == .dataIndication(peer: otherPeer.localAddress, payload: indication),
                    "Data indication \(i)")
            let sent = Array("si-\(i)".utf8)
            client.sendIndication(to: otherPeer.localAddress, payload: sent)
            let atOther = otherPeer.receive(timeoutMilliseconds: 2000)
            #expect(atOther?.bytes == sent && atOther?.from == relayed, "Send indication \(i) at the peer")
        }
        let after = try relay.metrics {
            $0.total("relay_data_indications_sent_total") - before.total("relay_data_indications_sent_total") >= Self.messages
        }
        #expect(after.total("relay_data_indications_sent_total") - before.total("relay_data_indications_sent_total")
            == Self.messages)
        #expect(after.total("relay_send_indications_relayed_total") - before.total("relay_send_indications_relayed_total")
            == Self.messages)
        try expectChannelDataCarried(relay, since: before, clientToPeer: Self.messages, peerToClient: Self.messages,
                                     everythingWasChannelData: false)
        if relay.datapath.isXDP {
            // Userspace carried exactly the indications: the Send indications out, the Data
            // indications back.
            let settled = try relay.metrics { relayedDelta($0, before, datapath: "userspace") == (Self.messages, Self.messages) }
            #expect(relayedDelta(settled, before, datapath: "userspace") == (Self.messages, Self.messages))
        }
        try expectCleanStop(relay)
    }

    /// RFC 8656 §7.3: "If the requested lifetime is zero, then the server MUST delete the
    /// allocation" (a Refresh with LIFETIME 0). The next ChannelData from the client and the next
    /// datagrams from the peer are not relayed, on either path: the route is gone from the maps.
    @Test("after a Refresh with lifetime 0 nothing more is relayed")
    func refreshZeroEndsRelaying() throws {
        let session = try Session(id: "refresh0", peers: { [$0.peerIPv4] })
        let (lab, relay, client, relayed, peer) = (session.lab, session.relay, session.client, session.relayed, session.peers[0])
        let channel: UInt16 = 0x4002
        #expect(client.channelBind(channel, peer: peer.localAddress)?.errorCode == nil)
        let start = try relay.metrics()
        try exchange(client, channel: channel, peer: peer, relayed: relayed, count: Self.messages)
        try expectChannelDataCarried(relay, since: start, clientToPeer: Self.messages, peerToClient: Self.messages,
                                     everythingWasChannelData: true)
        if relay.datapath.isXDP {
            let routes = try XDPRouteMaps.read(lab)
            #expect(routes.mentions(peerIP: lab.peerIPv4), "no route for the bound channel: \(routes)")
        }

        let refreshed = try #require(client.refresh(lifetime: 0), "no answer to Refresh lifetime 0")
        #expect(refreshed.messageClass == .successResponse, "Refresh 0: \(String(describing: refreshed.errorCode))")
        if relay.datapath.isXDP {
            let routes = try XDPRouteMaps.read(lab)
            #expect(!routes.mentions(peerIP: lab.peerIPv4), "routes left after Refresh 0: \(routes)")
        }
        // The client's ChannelData reaches userspace, which drops it: no allocation any more.
        try expectNothingRelayed(session, channel: channel, peer: peer, since: try relay.metrics(),
                                 drops: "no_allocation", atLeast: Self.messages, after: "Refresh 0")
        try expectCleanStop(relay)
    }

    /// An allocation nobody refreshes ends when its lifetime runs out (RFC 8656 §7: "the
    /// allocation is deleted" when its time-to-expiry reaches zero), and its channel with it: the
    /// timer, not a request, takes the route out of the maps, and nothing more is relayed.
    /// The relay's --default-lifetime (3 s here) is the lifetime an Allocate without LIFETIME gets.
    @Test("an allocation that expires takes its channel's route with it")
    func allocationExpiryEndsRelaying() throws {
        let session = try Session(id: "expiry", peers: { [$0.peerIPv4] }, relayArguments: ["--default-lifetime", "3"])
        let (lab, relay, client, relayed, peer) = (session.lab, session.relay, session.client, session.relayed, session.peers[0])
        let channel: UInt16 = 0x4009
        #expect(client.channelBind(channel, peer: peer.localAddress)?.errorCode == nil)
        try exchange(client, channel: channel, peer: peer, relayed: relayed, count: 2)
        if relay.datapath.isXDP {
            #expect(try XDPRouteMaps.read(lab).mentions(peerIP: lab.peerIPv4), "no route for the channel")
        }
        let expired = ["reason": "expired"]
        let ended = try relay.metrics(until: { $0.total("relay_allocations_ended_total", expired) >= 1 }, within: .seconds(15))
        #expect(ended.total("relay_allocations_ended_total", expired) == 1, "the allocation did not expire")
        if relay.datapath.isXDP {
            let routes = try XDPRouteMaps.read(lab)
            #expect(routes.clientRoutes.isEmpty && routes.peerRoutes.isEmpty, "routes left after the expiry: \(routes)")
        }
        try expectNothingRelayed(session, channel: channel, peer: peer, since: try relay.metrics(),
                                 drops: "no_allocation", atLeast: Self.messages, after: "the expiry")
        try expectCleanStop(relay)
    }

    /// A peer the policy denies: ChannelBind and CreatePermission get 403 (RFC 8656 §12.2 lets the
    /// server refuse a peer "with a 403 (Forbidden) error"), a Send indication to it is dropped
    /// (`peer_denied`), and no route to it ever appears in the maps, while a channel to an allowed
    /// peer in the same run gets one.
    @Test("a peer denied by policy gets no route and no traffic")
    func deniedPeerNeverRouted() throws {
        // The client's own address is another host to the relay: an allowed peer.
        let session = try Session(id: "denied", peers: { [$0.peerIPv4, $0.clientIPv4] },
                                  credentials: { "deny-peer = \($0.peerIPv4)/32\ndeny-peer = \($0.peerIPv6)/128\n" })
        let (lab, relay, client, relayed) = (session.lab, session.relay, session.client, session.relayed)
        let (denied, allowed) = (session.peers[0], session.peers[1])
        let before = try relay.metrics()
        #expect(client.channelBind(0x4003, peer: denied.localAddress)?.errorCode == 403)
        #expect(client.createPermission(peer: denied.localAddress)?.errorCode == 403)
        for i in 0..<Self.messages { client.sendIndication(to: denied.localAddress, payload: Array("denied-\(i)".utf8)) }
        #expect(client.channelBind(0x4004, peer: allowed.localAddress)?.errorCode == nil)
        try exchange(client, channel: 0x4004, peer: allowed, relayed: relayed, count: Self.messages)
        #expect(denied.receive(timeoutMilliseconds: 500) == nil, "the denied peer was reached")
        let after = try relay.metrics { $0.drops("peer_denied") - before.drops("peer_denied") >= Self.messages }
        #expect(after.drops("peer_denied") - before.drops("peer_denied") == Self.messages)
        if relay.datapath.isXDP {
            let routes = try XDPRouteMaps.read(lab)
            #expect(!routes.mentions(peerIP: lab.peerIPv4), "a route to the denied peer: \(routes)")
            #expect(routes.mentions(peerIP: lab.clientIPv4), "no route for the allowed peer's channel: \(routes)")
        }
        try expectCleanStop(relay)
    }

    /// A reload (SIGHUP) whose policy now denies a peer with a bound channel: that channel stops
    /// relaying in both directions and its route leaves the maps (RFC 8656 §9: "If no match is
    /// found, relaying is not permitted and the server silently discards the UDP datagram"; the
    /// reload revokes the permission), a new ChannelBind to it gets 403, and a channel to an
    /// allowed peer keeps working.
    @Test("a reload that denies a bound peer stops its channel and removes its route")
    func reloadDenyingABoundPeer() throws {
        let session = try Session(id: "reload", peers: { [$0.peerIPv4, $0.clientIPv4] })
        let (lab, relay, client, relayed) = (session.lab, session.relay, session.client, session.relayed)
        let (soonDenied, allowed) = (session.peers[0], session.peers[1])
        let deniedChannel: UInt16 = 0x4006, allowedChannel: UInt16 = 0x4007
        #expect(client.channelBind(deniedChannel, peer: soonDenied.localAddress)?.errorCode == nil)
        #expect(client.channelBind(allowedChannel, peer: allowed.localAddress)?.errorCode == nil)
        try exchange(client, channel: deniedChannel, peer: soonDenied, relayed: relayed, count: 2)
        if relay.datapath.isXDP {
            let routes = try XDPRouteMaps.read(lab)
            #expect(routes.mentions(peerIP: lab.peerIPv4), "no route for the channel before the reload: \(routes)")
        }

        #expect(try relay.reload(credentials: "deny-peer = \(lab.peerIPv4)/32\n"), "no reload logged:\n\(relay.output)")
        // The reload reaches every worker within one loop: wait for its visible effect on requests.
        let deadline = ContinuousClock.now + .seconds(5)
        var answer = client.channelBind(0x4008, peer: soonDenied.localAddress)?.errorCode
        while answer != 403, ContinuousClock.now < deadline {
            usleep(100_000)
            answer = client.channelBind(0x4008, peer: soonDenied.localAddress)?.errorCode
        }
        #expect(answer == 403, "ChannelBind to the now denied peer: \(String(describing: answer))")
        if relay.datapath.isXDP {
            let routes = try XDPRouteMaps.read(lab)
            #expect(!routes.mentions(peerIP: lab.peerIPv4), "a route to the denied peer after the reload: \(routes)")
            #expect(routes.mentions(peerIP: lab.clientIPv4), "the allowed peer's route is gone: \(routes)")
        }
        // Counters are published once a second: start from the ones that include the exchange above.
        let before = try relay.metrics {
            $0.relayedOnEitherPath("client_to_peer") >= 2 && $0.relayedOnEitherPath("peer_to_client") >= 2
        }
        // Both directions reach userspace, which drops them: the reload revoked the permission.
        let after = try expectNothingRelayed(session, channel: deniedChannel, peer: soonDenied, since: before,
                                             drops: "no_permission", atLeast: 2 * Self.messages, after: "the reload")
        #expect(after.total("relay_permissions_revoked_by_policy_total") >= 1)
        // Had anything of the denied channel's come through (a failure above), it is not the allowed channel's.
        while client.receive(timeoutMilliseconds: 100) != nil {}
        try exchange(client, channel: allowedChannel, peer: allowed, relayed: relayed, count: 2)
        try expectCleanStop(relay)
    }

    /// RFC 8656 §12.4: ChannelData's Length field "specifies the length in bytes of the
    /// application data field"; one that claims more bytes than the datagram holds is malformed.
    /// The XDP program passes it (it owns only what it can relay whole), and userspace drops it
    /// (`relay_drops_total{reason="malformed"}`); the channel keeps working.
    @Test("malformed ChannelData passes to userspace and is dropped there")
    func malformedChannelDataDroppedInUserspace() throws {
        let session = try Session(id: "malformed", peers: { [$0.peerIPv4] })
        let (relay, client, relayed, peer) = (session.relay, session.client, session.relayed, session.peers[0])
        let channel: UInt16 = 0x4005
        #expect(client.channelBind(channel, peer: peer.localAddress)?.errorCode == nil)
        let before = try relay.metrics()
        let payload = [UInt8](repeating: 0x6D, count: 20)
        for _ in 0..<Self.messages {
            // Length 200, 20 bytes present: sent raw on the client's UDP socket.
            _ = client.socket.send([UInt8(channel >> 8), UInt8(channel & 0xFF), 0, 200] + payload, to: client.server)
        }
        #expect(peer.receive(timeoutMilliseconds: 500) == nil, "malformed ChannelData reached the peer")
        let after = try relay.metrics { $0.drops("malformed") - before.drops("malformed") >= Self.messages }
        #expect(after.drops("malformed") - before.drops("malformed") == Self.messages)
        #expect(relayedDelta(after, before, datapath: "xdp") == (0, 0))
        if relay.datapath.isXDP {
            // BPF/turn_router.h: TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM, "ChannelData length field > bytes present".
            let reason = ["reason": "channel_length_beyond_datagram"]
            let passed = after.total("relay_xdp_passed_packets_total", reason) - before.total("relay_xdp_passed_packets_total", reason)
            #expect(passed == Self.messages, "XDP passes for a length beyond the datagram: \(passed)")
        }
        // The channel is unharmed.
        try exchange(client, channel: channel, peer: peer, relayed: relayed, count: 2)
        try expectCleanStop(relay)
    }

    /// Failure is never fatal (issue 12): an interface that does not exist leaves the relay on the
    /// io_uring path, with a warning, serving real clients.
    @Test("--xdp-interface nosuchif0 warns, falls back and serves")
    func unknownInterfaceFallsBack() throws {
        let lab = try NetnsLab()
        let relay = try LabRelay(lab: lab, datapath: .userspace, extraArguments: ["--xdp-interface", "nosuchif0"])
        let mentions = relay.output.split(whereSeparator: \.isNewline).filter { $0.contains("nosuchif0") }
        #expect(mentions.count == 1, "expected one warning naming nosuchif0:\n\(relay.output)")
        let readiness = try relay.readiness()
        let xdpLine = readiness.body.split(whereSeparator: \.isNewline).first { $0.hasPrefix("xdp:") }
        print("xdp-e2e: /readyz with --xdp-interface nosuchif0: \(xdpLine ?? "no xdp line")")
        #expect(xdpLine?.contains("nosuchif0") == true, "/readyz does not say why XDP is off: \(readiness.body)")
        let before = try relay.metrics()
        _ = try runAioice(lab, relay, serverHost: lab.relayIPv4, family: "ipv4", peerHost: lab.peerIPv4, messages: 5)
        let after = try relay.metrics { relayedDelta($0, before, datapath: "userspace").clientToPeer >= 5 }
        #expect(relayedDelta(after, before, datapath: "userspace") == (5, 5))
        #expect(relayedDelta(after, before, datapath: "xdp") == (0, 0))
        try expectCleanStop(relay)
    }

    // MARK: - Helpers

    /// A lab, the relay under test in it on the selected datapath, a TURN client of ours on the
    /// lab's client address with an IPv4 allocation, and UDP sockets for peers on the addresses
    /// `peers` names; every socket made in the lab's client namespace.
    struct Session {
        let lab: NetnsLab
        let relay: LabRelay
        let client: TestTURNClient
        let relayed: TransportAddress
        let peers: [BlockingUDPSocket]
        var datapath: Datapath { relay.datapath }

        /// `credentials`: the relay's initial credentials file, from the lab's addresses.
        init(id: String, peers: (NetnsLab) -> [String], credentials: (NetnsLab) -> String = { _ in "" },
             relayArguments: [String] = []) throws {
            let relay = try XDPEndToEndTests.startRelay(credentials: credentials, extraArguments: relayArguments)
            let lab = relay.lab
            (self.lab, self.relay) = (lab, relay)
            let credential = relay.credential(id: id)
            (client, self.peers) = try lab.inOut {
                (try TestTURNClient(server: TransportAddress(ip: IPAddress(lab.relayIPv4)!, port: relay.port),
                                    username: credential.username, password: credential.password,
                                    bind: TransportAddress(ip: IPAddress(lab.clientIPv4)!, port: 0)),
                 try peers(lab).map { try BlockingUDPSocket(bindTo: TransportAddress(ip: IPAddress($0)!, port: 0)) })
            }
            let response = try #require(client.allocate(), "no answer to Allocate")
            #expect(response.errorCode == nil, "Allocate: \(String(describing: response.errorCode))")
            relayed = try #require(response.xorRelayedAddresses.first, "no XOR-RELAYED-ADDRESS")
        }
    }

    /// `count` ChannelData datagrams to the peer and `count` back (numbered by `rounds` when
    /// given), each checked intact.
    func exchange(_ client: TestTURNClient, channel: UInt16, peer: BlockingUDPSocket, relayed: TransportAddress,
                  count: Int = 0, rounds: Range<Int>? = nil) throws {
        exchangeChannelData(client, channel: channel, peer: peer, relayed: relayed, rounds: rounds ?? 0..<count)
    }

    /// Once a channel is dead (its allocation or permission gone): `messages` ChannelData from
    /// the client and as many datagrams from the peer reach neither side, userspace counts at
    /// least `atLeast` drops for `reason`, and neither datapath relays anything.
    @discardableResult
    func expectNothingRelayed(_ session: Session, channel: UInt16, peer: BlockingUDPSocket, since before: RelayMetrics,
                              drops reason: String, atLeast: Int, after what: String) throws -> RelayMetrics {
        for i in 0..<Self.messages {
            session.client.sendChannelData(channel, payload: Array("late-\(i)".utf8))
            _ = peer.send(Array("late-back-\(i)".utf8), to: session.relayed)
        }
        #expect(peer.receive(timeoutMilliseconds: 500) == nil, "the peer got ChannelData after \(what)")
        #expect(session.client.receive(timeoutMilliseconds: 500) == nil, "the client got a peer datagram after \(what)")
        let after = try session.relay.metrics { $0.drops(reason) - before.drops(reason) >= atLeast }
        #expect(after.drops(reason) - before.drops(reason) >= atLeast, "\(reason) drops after \(what)")
        #expect(relayedDelta(after, before, datapath: "xdp") == (0, 0), "the XDP path relayed after \(what)")
        #expect(relayedDelta(after, before, datapath: "userspace") == (0, 0), "userspace relayed after \(what)")
        return after
    }

    struct AioiceRun {
        var output: String
        var lines: [String]
    }

    /// aioice_turn_client.py in the lab's client namespace; expects it to succeed (every payload
    /// at the peer from the relayed address, every echo back as ChannelData).
    func runAioice(_ lab: NetnsLab, _ relay: LabRelay, serverHost: String, family: String, peerHost: String,
                   messages: Int) throws -> AioiceRun {
        let arguments = [ExternalTool.aioiceClientScript.path, "--server-host", serverHost,
                         "--server-port", "\(relay.port)", "--secret", relay.secret, "--peer-host", peerHost,
                         "--family", family, "--messages", "\(messages)", "--timeout", "15"]
        let run = try lab.run(in: lab.outNamespace, try ExternalTool.python(), arguments, name: "aioice",
                              timeout: .seconds(60))
        let lines = run.output.split(whereSeparator: \.isNewline).map(String.init)
        let summary = lines.first { $0.hasPrefix("summary:") } ?? "no summary"
        print("xdp-e2e[\(relay.datapath)]: aioice --server-host \(serverHost) --family \(family) --peer-host \(peerHost) "
            + "-> exit \(run.status.map(String.init) ?? "killed at timeout"), \(summary)")
        #expect(run.status == 0, "the aioice client failed:\n\(run.output)")
        #expect(summary == "summary: sent=\(messages) peer_received=\(messages) echoed=\(messages) "
            + "channel_data=\(messages) data_indications=0")
        return AioiceRun(output: run.output, lines: lines)
    }

    func relayedDelta(_ after: RelayMetrics, _ before: RelayMetrics, datapath: String)
        -> (clientToPeer: Int, peerToClient: Int) {
        (after.relayed("client_to_peer", datapath: datapath) - before.relayed("client_to_peer", datapath: datapath),
         after.relayed("peer_to_client", datapath: datapath) - before.relayed("peer_to_client", datapath: datapath))
    }

    /// The ChannelData the clients reported went where the datapath says: on XDP, the `xdp`
    /// counters moved by at least that many datagrams each way (and, when the traffic was all
    /// ChannelData, userspace relayed nothing); on userspace, the `userspace` counters carried it
    /// and the `xdp` ones stayed still.
    func expectChannelDataCarried(_ relay: LabRelay, since before: RelayMetrics, clientToPeer: Int, peerToClient: Int,
                                  everythingWasChannelData: Bool) throws {
        let carrier = relay.datapath.isXDP ? "xdp" : "userspace"
        let other = relay.datapath.isXDP ? "userspace" : "xdp"
        let after = try relay.metrics {
            let moved = relayedDelta($0, before, datapath: carrier)
            return moved.clientToPeer >= clientToPeer && moved.peerToClient >= peerToClient
        }
        let carried = relayedDelta(after, before, datapath: carrier)
        let rest = relayedDelta(after, before, datapath: other)
        print("xdp-e2e[\(relay.datapath)]: relayed on \(carrier): \(carried.clientToPeer) client→peer, "
            + "\(carried.peerToClient) peer→client; on \(other): \(rest.clientToPeer), \(rest.peerToClient)")
        #expect(carried.clientToPeer >= clientToPeer, "\(carrier) client→peer")
        #expect(carried.peerToClient >= peerToClient, "\(carrier) peer→client")
        if !relay.datapath.isXDP {
            #expect(rest == (0, 0), "the xdp counters moved without XDP")
        } else if everythingWasChannelData {
            #expect(rest == (0, 0), "userspace relayed ChannelData the XDP path should have carried")
        }
    }

    /// On XDP, the relay says it is attached to the lab's interface in the mode asked for.
    static func expectXDPAttached(_ relay: LabRelay) throws {
        guard case .xdp(let mode) = relay.datapath else { return }
        let readiness = try relay.readiness()
        let line = readiness.body.split(whereSeparator: \.isNewline).first { $0.hasPrefix("xdp:") }.map(String.init)
        #expect(line?.contains(relay.lab.relayInterface) == true && line?.contains(mode) == true,
                """
                /readyz has no xdp line naming \(relay.lab.relayInterface) (\(mode)): \(readiness.body) \
                (`make test` puts turn_router.bpf.o beside the binary). Its output:
                \(relay.output)
                """)
    }

    func expectCleanStop(_ relay: LabRelay) throws {
        #expect(relay.isRunning, "turn-relay exited:\n\(relay.output)")
        let status = relay.stop()
        #expect(status == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
    }
}
