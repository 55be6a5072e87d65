import Foundation
import Glibc
@testable import InteropTestSupport
@testable import OperationsTestSupport
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport

/// Issue 14, "Floods and exhaustion": "a peer that stops reading (send buffer full) while other
/// allocations keep relaying", and "Faults": "ENOBUFS/EAGAIN on send". A UDP send blocks or fails
/// when the socket's send buffer is full, which happens when the egress queue toward a peer backs
/// up (a slow or congested link: datagrams wait in the qdisc and stay charged to the socket).
/// Here the lab's relay interface shapes the traffic to one peer address to 256 kbit/s with a long
/// queue (tc htb + u32), one client floods that peer, and another client relays to a peer
/// on an unshaped address meanwhile.
///
/// The congested allocation may lose its own datagrams (a full egress queue drops them; counted as
/// `relay_drops_total{reason="socket_buffer_full"}`), but must not hold the worker's shared send
/// slots and receive buffers while it waits: the other allocation's datagrams all arrive. On both
/// I/O backends, without XDP (the io_uring path is what is under test).
@Suite(.serialized, .dedicatedThread, .needsRootForLab)
struct EgressCongestionTests {
    /// 12,000 × 1,200 bytes toward the shaped peer: more than the relay socket's send buffer holds
    /// (the relay asks for 4 MiB; the kernel doubles it, capped at net.core.wmem_max), and more
    /// sends than a worker has send slots (2,048).
    static let flood = 12_000
    static let floodBytes = 1_200
    static let others = 200

    @Test(arguments: ["io-uring", "batched-syscalls"])
    func aPeerBehindACongestedLinkCostsOnlyItsOwnAllocation(backend: String) throws {
        let lab = try NetnsLab()
        let relay = try LabRelay(lab: lab, datapath: .userspace, extraArguments: ["--io-backend", backend, "--workers", "1"])
        #expect(relay.output.contains("io backend \(backend)"), "turn-relay did not log its backend:\n\(relay.output)")
        // Everything the relay sends to the peer address (.3) waits in a 256 kbit/s HTB class with
        // a queue of 100,000 packets: nothing is dropped by the qdisc, the socket's send buffer
        // fills. The rest leaves at 10 Gbit/s.
        let tc = try ExternalTool.locate("tc", hint: NetnsLab.iproute2Hint)
        for command in [
            ["qdisc", "add", "dev", lab.relayInterface, "root", "handle", "1:", "htb", "default", "20"],
            ["class", "add", "dev", lab.relayInterface, "parent", "1:", "classid", "1:10", "htb",
             "rate", "256kbit", "ceil", "256kbit"],
            ["class", "add", "dev", lab.relayInterface, "parent", "1:", "classid", "1:20", "htb",
             "rate", "10gbit", "quantum", "60000"],
            ["qdisc", "add", "dev", lab.relayInterface, "parent", "1:10", "handle", "10:", "pfifo", "limit", "100000"],
            ["filter", "add", "dev", lab.relayInterface, "parent", "1:", "protocol", "ip", "prio", "1",
             "u32", "match", "ip", "dst", "\(lab.peerIPv4)/32", "flowid", "1:10"],
        ] {
            let run = try lab.run(in: lab.relayNamespace, tc, command, name: "tc", timeout: .seconds(20))
            try #require(run.status == 0, "tc \(command.joined(separator: " ")): \(run.output)")
        }

        let server = TransportAddress(ip: IPAddress(lab.relayIPv4)!, port: relay.port)
        let client = IPAddress(lab.clientIPv4)!
        func channel(_ id: String, peerIP: String) throws -> (TestTURNClient, BlockingUDPSocket, TransportAddress) {
            let credential = relay.credential(id: id)
            let (turn, peer) = try lab.inOut {
                (try TestTURNClient(server: server, username: credential.username, password: credential.password,
                                    bind: TransportAddress(ip: client, port: 0)),
                 try BlockingUDPSocket(bindTo: TransportAddress(ip: IPAddress(peerIP)!, port: 0)))
            }
            let allocated = try #require(turn.allocate(family: .ipv4), "no answer to Allocate")
            try #require(allocated.errorCode == nil, "Allocate: \(String(describing: allocated.errorCode))")
            let relayed = try #require(allocated.xorRelayedAddresses.first)
            let bound = try #require(turn.channelBind(0x4001, peer: peer.localAddress), "no answer to ChannelBind")
            try #require(bound.errorCode == nil, "ChannelBind: \(String(describing: bound.errorCode))")
            return (turn, peer, relayed)
        }
        // The congested allocation's peer sits on the shaped address, the other one's on .2.
        let (slowClient, slowPeer, _) = try channel("congested", peerIP: lab.peerIPv4)
        let (client2, peer2, relayed2) = try channel("unaffected", peerIP: lab.clientIPv4)
        let before = try relay.metrics()

        let payload = [UInt8](repeating: 0x5A, count: Self.floodBytes)
        for i in 0..<Self.flood {
            slowClient.sendChannelData(0x4001, payload: payload)
            if i % 100 == 99 { usleep(2_000) }
        }
        // Give the relay a moment to take the whole flood in: its sends toward .3 now wait in the
        // qdisc (or were refused).
        usleep(300_000)
        var arrived = 0
        for i in 0..<Self.others {
            let out = Array("unaffected-\(i)".utf8)
            client2.sendChannelData(0x4001, payload: out)
            if let received = peer2.receive(timeoutMilliseconds: 1000), received.bytes == out, received.from == relayed2 {
                arrived += 1
            }
        }
        #expect(arrived == Self.others, "\(arrived) of \(Self.others) datagrams of the other allocation reached its peer while the congested one waited")

        let after = try relay.metrics { $0.total("relay_drops_total", ["reason": "socket_buffer_full"]) > 0 }
        let refused = after.total("relay_drops_total", ["reason": "socket_buffer_full"])
            - before.total("relay_drops_total", ["reason": "socket_buffer_full"])
        #expect(refused > 0, "the congested allocation's datagrams refused for a full send buffer were not counted")
        // The shaped peer gets what the link carried: some, not all.
        var slowArrived = 0
        while slowPeer.receive(timeoutMilliseconds: 200) != nil { slowArrived += 1 }
        #expect(slowArrived > 0 && slowArrived < Self.flood, "\(slowArrived) of \(Self.flood) datagrams reached the shaped peer")
        print("egress-congestion[\(backend)]: other allocation \(arrived)/\(Self.others); congested peer got \(slowArrived)/\(Self.flood) in the first drain, socket_buffer_full \(refused), send_queue_full \(after.total("relay_drops_total", ["reason": "send_queue_full"]))")
        #expect(relay.isRunning, "turn-relay exited:\n\(relay.output)")
        #expect(relay.stop() == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
    }
}
