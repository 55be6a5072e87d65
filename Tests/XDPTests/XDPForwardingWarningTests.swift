import Foundation
@testable import InteropTestSupport
@testable import OperationsTestSupport
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport

/// Issue 12's next hop: attached to several interfaces, the XDP program asks the kernel's FIB for
/// each packet's egress (bpf_fib_lookup), which answers "forwarding disabled" on an interface whose
/// IP forwarding is off, and the packet passes to userspace. A relay started that way names it
/// once, with the sysctl that fixes it; with forwarding on it says nothing. A fresh network
/// namespace starts with forwarding off, as most hosts do.
@Suite(.serialized, .dedicatedThread, .needsRootForLab)
struct XDPForwardingWarningTests {
    @Test func severalInterfacesWithForwardingOffAreNamedAtStart() throws {
        guard Datapath.hasXDPFlags(elseSkipping: "XDPForwardingWarningTests") else { return }
        for forwarding in [false, true] {
            let lab = try NetnsLab()
            // A second interface for the program: one end of a veth pair inside the relay's namespace
            // (this kernel has no dummy driver; generic XDP attaches to any device).
            for command in [["link", "add", "trfwd0", "type", "veth", "peer", "name", "trfwd1"],
                            ["link", "set", "trfwd0", "up"], ["link", "set", "trfwd1", "up"]] {
                try NetnsLab.ip(["-n", lab.relayNamespace] + command)
            }
            if forwarding {
                let sysctl = try ExternalTool.locate("sysctl", hint: "It comes with Debian's procps package.")
                for key in ["net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"] {
                    let run = try lab.run(in: lab.relayNamespace, sysctl, ["-w", key], name: "sysctl", timeout: .seconds(20))
                    try #require(run.status == 0, "sysctl -w \(key): \(run.output)")
                }
            }
            let relay = try LabRelay(lab: lab, datapath: .xdp(mode: "generic"), extraArguments: ["--xdp-interface", "trfwd0"])
            let readiness = try relay.readiness()
            #expect(readiness.body.contains("trfwd0"), "XDP not attached to both interfaces: \(readiness.body)\n\(relay.output)")
            let warned = relay.output.contains("forwarding is off on")
            if forwarding {
                #expect(!warned, "a forwarding warning with forwarding on:\n\(relay.output)")
            } else {
                #expect(relay.output.contains("ipv4 forwarding is off on \(lab.relayInterface), trfwd0")
                    && relay.output.contains("sysctl -w net.ipv4.conf.all.forwarding=1"), "no forwarding warning:\n\(relay.output)")
                #expect(relay.output.contains("ipv6 forwarding is off on \(lab.relayInterface), trfwd0")
                    && relay.output.contains("sysctl -w net.ipv6.conf.all.forwarding=1"), "no IPv6 forwarding warning:\n\(relay.output)")
            }
            #expect(relay.stop() == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
        }
    }

    /// `--xdp-next-hop fib` on one interface: a link whose clients and peers sit behind different
    /// next hops (a client on the link, a peer behind a router) needs the FIB even with one
    /// interface, since swapping the MAC addresses would send a client's datagram back to the
    /// client. With forwarding off the relay names it at start; with forwarding on, a channel's
    /// datagrams both ways are relayed by the program (`datapath="xdp"`, `XDP_TX` after the FIB
    /// lookup), intact, and none passes for want of a route. The first datagram to the peer may
    /// pass once (`no_neigh`: the relay's namespace has not resolved the peer's address yet) and
    /// is then relayed by userspace.
    @Test func oneInterfaceWithTheNextHopFromTheFIB() throws {
        guard Datapath.hasXDPFlags(elseSkipping: "XDPForwardingWarningTests") else { return }
        let messages = 10
        for forwarding in [false, true] {
            let lab = try NetnsLab()
            if forwarding {
                let sysctl = try ExternalTool.locate("sysctl", hint: "It comes with Debian's procps package.")
                for key in ["net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1"] {
                    let run = try lab.run(in: lab.relayNamespace, sysctl, ["-w", key], name: "sysctl", timeout: .seconds(20))
                    try #require(run.status == 0, "sysctl -w \(key): \(run.output)")
                }
            }
            // The XDP mode the other end-to-end tests run in (native unless XDP_E2E_MODE=generic).
            let mode: String = { if case .success(.xdp(let m)) = Datapath.selected { return m }; return "native" }()
            let relay = try LabRelay(lab: lab, datapath: .xdp(mode: mode), extraArguments: ["--xdp-next-hop", "fib"])
            let readiness = try relay.readiness()
            #expect(readiness.body.contains(lab.relayInterface), "XDP not attached: \(readiness.body)\n\(relay.output)")
            #expect(relay.output.contains("next_hop=fib"), "the start-up line does not say the next hop:\n\(relay.output)")
            let warned = relay.output.contains("ipv4 forwarding is off on \(lab.relayInterface)")
                && relay.output.contains("ipv6 forwarding is off on \(lab.relayInterface)")
            #expect(warned == !forwarding, "forwarding \(forwarding ? "on" : "off"), warning \(warned ? "given" : "missing"):\n\(relay.output)")
            if forwarding {
                let credential = relay.credential(id: "fib1")
                let (client, peer) = try lab.inOut {
                    (try TestTURNClient(server: TransportAddress(ip: IPAddress(lab.relayIPv4)!, port: relay.port),
                                        username: credential.username, password: credential.password,
                                        bind: TransportAddress(ip: IPAddress(lab.clientIPv4)!, port: 0)),
                     try BlockingUDPSocket(bindTo: TransportAddress(ip: IPAddress(lab.peerIPv4)!, port: 0)))
                }
                let allocated = try #require(client.allocate(), "no answer to Allocate")
                let relayed = try #require(allocated.xorRelayedAddresses.first, "no XOR-RELAYED-ADDRESS")
                let channel: UInt16 = 0x4003
                #expect(client.channelBind(channel, peer: peer.localAddress)?.errorCode == nil)
                let before = try relay.metrics()
                exchangeChannelData(client, channel: channel, peer: peer, relayed: relayed, rounds: 0..<messages)
                let after = try relay.metrics {
                    $0.relayedOnEitherPath("client_to_peer") - before.relayedOnEitherPath("client_to_peer") >= messages
                        && $0.relayedOnEitherPath("peer_to_client") - before.relayedOnEitherPath("peer_to_client") >= messages
                }
                let xdpOut = after.relayed("client_to_peer", datapath: "xdp") - before.relayed("client_to_peer", datapath: "xdp")
                let xdpBack = after.relayed("peer_to_client", datapath: "xdp") - before.relayed("peer_to_client", datapath: "xdp")
                let passed = { (reason: String) in
                    after.total("relay_xdp_passed_packets_total", ["reason": reason])
                        - before.total("relay_xdp_passed_packets_total", ["reason": reason])
                }
                print("xdp-next-hop-fib: relayed by xdp \(xdpOut) client→peer, \(xdpBack) peer→client; passed no_neigh \(passed("no_neigh")), no_route \(passed("no_route"))")
                #expect(xdpOut >= messages - 1 && xdpBack >= messages - 1, "the program relayed \(xdpOut) and \(xdpBack) of \(messages) each way")
                #expect(passed("no_route") == 0 && passed("egress_not_attached") == 0)
                #expect(passed("no_neigh") <= 2)
            }
            #expect(relay.stop() == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
        }
    }
}
