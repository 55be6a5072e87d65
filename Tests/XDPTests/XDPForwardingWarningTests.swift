import Foundation
@testable import InteropTestSupport
@testable import OperationsTestSupport
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
        guard Datapath.binaryHasXDPFlags else {
            print("XDPForwardingWarningTests: skipped: this turn-relay has no XDP flags")
            return
        }
        for forwarding in [false, true] {
            let lab = try NetnsLab()
            let ip = try ExternalTool.locate("ip", hint: NetnsLab.iproute2Hint)
            // A second interface for the program: one end of a veth pair inside the relay's namespace
            // (this kernel has no dummy driver; generic XDP attaches to any device).
            for command in [["link", "add", "trfwd0", "type", "veth", "peer", "name", "trfwd1"],
                            ["link", "set", "trfwd0", "up"], ["link", "set", "trfwd1", "up"]] {
                let run = try lab.run(in: lab.relayNamespace, ip, command, name: "ip", timeout: .seconds(20))
                try #require(run.status == 0, "ip \(command.joined(separator: " ")): \(run.output)")
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
            }
            #expect(relay.stop() == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
        }
    }
}
