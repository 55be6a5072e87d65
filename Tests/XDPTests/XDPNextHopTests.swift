import Foundation
@testable import InteropTestSupport
@testable import OperationsTestSupport
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport

/// Why `--xdp-next-hop fib` exists, on a link where it matters: the peer is another host on the
/// relay's link (its own MAC address: a macvlan on the lab's veth, moved into a namespace of its
/// own), the client another. Swapping the received frame's MAC addresses sends a client's
/// datagram back to the client's MAC, whose host does not hold the peer's address (forwarding
/// off): it is lost, and the peer's answers go back to the peer. With the next hop from the FIB
/// (the kernel's neighbour entry for each destination) every datagram arrives, relayed by the
/// program. The first datagram to the peer passes once (`no_neigh`: the relay's namespace has not
/// resolved the peer yet) and userspace relays it, which resolves it. By default (`auto`, one
/// interface: the swap) the relay does not install that channel's route at all, since its peer is
/// on the attached link: userspace relays every datagram, and the relay says why once.
@Suite(.serialized, .dedicatedThread, .needsRootForLab)
struct XDPNextHopTests {
    static let peerIPv4 = "198.18.0.77"

    @Test(arguments: ["swap", "fib", "auto"])
    func aPeerBehindAnotherMACOnTheLink(nextHop: String) throws {
        guard Datapath.hasXDPFlags(elseSkipping: "XDPNextHopTests") else { return }
        let lab = try NetnsLab()
        let ip = try ExternalTool.locate("ip", hint: NetnsLab.iproute2Hint)
        let peerNamespace = "\(lab.relayNamespace)-p"
        let run = NetnsLab.ip
        try run(["netns", "add", peerNamespace])
        defer { _ = try? ChildProcess.run(ip, ["netns", "del", peerNamespace], name: "ip", timeout: .seconds(20)) }
        for command in [["-n", lab.outNamespace, "link", "add", "link", lab.outInterface, "name", "trpeer0", "type", "macvlan", "mode", "bridge"],
                        ["-n", lab.outNamespace, "link", "set", "trpeer0", "netns", peerNamespace],
                        ["-n", peerNamespace, "addr", "add", "\(Self.peerIPv4)/24", "dev", "trpeer0"],
                        ["-n", peerNamespace, "link", "set", "trpeer0", "up"],
                        ["-n", peerNamespace, "link", "set", "lo", "up"]] {
            try run(command)
        }
        // The FIB lookup needs forwarding on the interface it is asked about.
        let sysctl = try ExternalTool.locate("sysctl", hint: "It comes with Debian's procps package.")
        let enabled = try lab.run(in: lab.relayNamespace, sysctl, ["-w", "net.ipv4.conf.all.forwarding=1"], name: "sysctl", timeout: .seconds(20))
        try #require(enabled.status == 0, "sysctl: \(enabled.output)")

        let mode: String = { if case .success(.xdp(let m)) = Datapath.selected { return m }; return "native" }()
        let relay = try LabRelay(lab: lab, datapath: .xdp(mode: mode), extraArguments: ["--xdp-next-hop", nextHop])
        #expect(relay.output.contains("next_hop=\(nextHop == "auto" ? "swap" : nextHop)"), "\(relay.output)")
        let credential = relay.credential(id: "nexthop-\(nextHop)")
        let client = try lab.inOut {
            try TestTURNClient(server: TransportAddress(ip: IPAddress(lab.relayIPv4)!, port: relay.port),
                               username: credential.username, password: credential.password,
                               bind: TransportAddress(ip: IPAddress(lab.clientIPv4)!, port: 0))
        }
        let peer = try NetworkNamespace.run(in: peerNamespace) {
            try BlockingUDPSocket(bindTo: TransportAddress(ip: IPAddress(Self.peerIPv4)!, port: 0))
        }
        let allocated = try #require(client.allocate(), "no answer to Allocate")
        let relayed = try #require(allocated.xorRelayedAddresses.first, "no XOR-RELAYED-ADDRESS")
        let channel: UInt16 = 0x4005
        #expect(client.channelBind(channel, peer: peer.localAddress)?.errorCode == nil)
        // The channel's route must be in the maps before the first datagram: a ChannelBind answer
        // means the core emitted it, and the shell applies it before the answer goes out.
        let messages = nextHop == "swap" ? 4 : 10
        var atPeer = 0, atClient = 0
        for i in 0..<messages {
            let out = Array("next-hop-\(i)".utf8)
            client.sendChannelData(channel, payload: out)
            if let received = peer.receive(timeoutMilliseconds: nextHop == "swap" ? 500 : 2000),
               received.bytes == out, received.from == relayed {
                atPeer += 1
            }
            let back = Array("next-hop-back-\(i)".utf8)
            _ = peer.send(back, to: relayed)
            if client.receive(timeoutMilliseconds: nextHop == "swap" ? 500 : 2000) == .channelData(channel: channel, payload: back) {
                atClient += 1
            }
        }
        let metrics = try relay.metrics()
        let xdpOut = metrics.relayed("client_to_peer", datapath: "xdp")
        let xdpBack = metrics.relayed("peer_to_client", datapath: "xdp")
        print("xdp-next-hop[\(nextHop)]: \(atPeer) of \(messages) at the peer, \(atClient) back at the client; "
            + "program relayed \(xdpOut) and \(xdpBack); passed no_neigh \(metrics.total("relay_xdp_passed_packets_total", ["reason": "no_neigh"]))")
        let onLink = metrics.total("relay_xdp_routes_on_link_total")
        if nextHop == "fib" {
            #expect(atPeer == messages && atClient == messages, "fib: \(atPeer) and \(atClient) of \(messages) arrived")
            #expect(xdpOut >= messages - 1 && xdpBack >= messages - 1, "the program relayed \(xdpOut) and \(xdpBack)")
            #expect(onLink == 0)
        } else if nextHop == "auto" {
            // Not installed: userspace relays all of it, the program none.
            #expect(atPeer == messages && atClient == messages, "auto: \(atPeer) and \(atClient) of \(messages) arrived")
            #expect(xdpOut == 0 && xdpBack == 0, "the program relayed \(xdpOut) and \(xdpBack)")
            // The workers publish their counters once a second: wait for them.
            let published = try relay.metrics(until: {
                $0.relayed("client_to_peer", datapath: "userspace") >= messages && $0.relayed("peer_to_client", datapath: "userspace") >= messages
            })
            #expect(published.relayed("client_to_peer", datapath: "userspace") == messages
                    && published.relayed("peer_to_client", datapath: "userspace") == messages)
            #expect(onLink == 1 && metrics.total("relay_xdp_routes_installed") == 0)
            #expect(try XDPRouteMaps.read(lab).clientRoutes.isEmpty)
        } else {
            // The hazard the option is for: the program relays them (it cannot know), to the wrong host.
            #expect(atPeer == 0 && atClient == 0, "swap delivered \(atPeer) and \(atClient): the topology does not show the hazard")
            #expect(xdpOut == messages && xdpBack == messages, "the program relayed \(xdpOut) and \(xdpBack)")
            #expect(onLink == 0)
        }
        // Swapping with a peer on the link: the relay said so once, at the channel's route (a
        // warning when it installed it, a notice when it left it out).
        let warnings = relay.output.components(separatedBy: "XDP swaps MAC addresses").count - 1
        #expect(warnings == (nextHop == "swap" ? 1 : 0), "\(warnings) on-link warnings:\n\(relay.output)")
        let notices = relay.output.components(separatedBy: "XDP leaves the channel from client").count - 1
        #expect(notices == (nextHop == "auto" ? 1 : 0), "\(notices) on-link notices:\n\(relay.output)")
        #expect(relay.output.contains("client \(lab.clientIPv4) to peer \(Self.peerIPv4)") == (nextHop != "fib"))
        #expect(relay.stop() == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
    }
}
