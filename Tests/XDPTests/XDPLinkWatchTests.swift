import Foundation
@testable import InteropTestSupport
@testable import OperationsTestSupport
import RelayIO
import Testing
import TestSupport

/// The relay follows interfaces that come and go under a name it was given (`--xdp-interface`):
/// deleted while it runs, the interface's link is dropped and the relay says so (log, /readyz,
/// `relay_xdp_interfaces_attached`); created again under that name, the program is attached to it
/// again, without a restart; renamed or moved into another network namespace, it is dropped as well. Before the link watch the relay noticed a deletion only at the next
/// resize of its route maps, and served a re-created interface on the io_uring path until restarted.
@Suite(.serialized, .dedicatedThread, .needsRootForLab)
struct XDPLinkWatchTests {
    @Test func anInterfaceDeletedAndCreatedAgainIsAttachedAgain() throws {
        guard Datapath.hasXDPFlags(elseSkipping: "XDPLinkWatchTests") else { return }
        let lab = try NetnsLab()
        let name = "trwatch0"
        func run(_ command: [String]) throws { try NetnsLab.ip(["-n", lab.relayNamespace] + command) }
        func addPair() throws {
            for command in [["link", "add", name, "type", "veth", "peer", "name", "trwatch1"],
                            ["link", "set", name, "up"], ["link", "set", "trwatch1", "up"]] { try run(command) }
        }
        try addPair()
        // Generic mode attaches to any device; two interfaces take the next hop from the FIB.
        let relay = try LabRelay(lab: lab, datapath: .xdp(mode: "generic"), extraArguments: ["--xdp-interface", name])
        func waitFor(_ text: String, after offset: Int) -> Bool {
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline {
                if relay.output.dropFirst(offset).contains(text) { return true }
                usleep(20_000)
            }
            return false
        }
        let attachedBoth = "attached on \(lab.relayInterface), \(name) (generic mode)"
        let started = try relay.readiness().body
        #expect(started.contains(attachedBoth), "\(started)\n\(relay.output)")
        #expect(try relay.metrics(until: { $0.total("relay_xdp_interfaces_attached") == 2 }).total("relay_xdp_interfaces_attached") == 2)

        var mark = relay.output.count
        try run(["link", "del", name])
        #expect(waitFor("XDP is no longer attached to \(name): the interface was deleted", after: mark), "no warning:\n\(relay.output)")
        let gone = try relay.readiness().body
        #expect(gone.contains("attached on \(lab.relayInterface) (generic mode); not on \(name): no network interface named \(name)"), "\(gone)")
        let missing = try relay.metrics(until: { $0.total("relay_xdp_interfaces_attached") == 1 })
        #expect(missing.total("relay_xdp_interfaces_attached") == 1 && missing.total("relay_xdp_interfaces_configured") == 2,
                "attached \(missing.total("relay_xdp_interfaces_attached")) of \(missing.total("relay_xdp_interfaces_configured"))")

        mark = relay.output.count
        try addPair()
        #expect(waitFor("XDP attached again to \(name) (an interface of that name is back)", after: mark), "not attached again:\n\(relay.output)")
        let back = try relay.readiness().body
        #expect(back.contains(attachedBoth), "\(back)")
        #expect(try relay.metrics(until: { $0.total("relay_xdp_interfaces_attached") == 2 }).total("relay_xdp_interfaces_attached") == 2)
        let attachedID = try lab.inRelay { XDPInterfaces.attachedProgramID(name) }
        #expect(attachedID != nil && attachedID != 0, "no XDP program on the re-created \(name)")
        // Renamed, it no longer answers to the name the relay was given: dropped; named so again,
        // it gets the program back.
        mark = relay.output.count
        for command in [["link", "set", name, "down"], ["link", "set", name, "name", "trwatch9"], ["link", "set", "trwatch9", "up"]] {
            try run(command)
        }
        #expect(waitFor("XDP is no longer attached to \(name)", after: mark), "still attached after the rename:\n\(relay.output)")
        #expect(try lab.inRelay { XDPInterfaces.attachedProgramID("trwatch9") } == 0, "the program still runs on the renamed interface")
        mark = relay.output.count
        for command in [["link", "set", "trwatch9", "down"], ["link", "set", "trwatch9", "name", name], ["link", "set", name, "up"]] {
            try run(command)
        }
        #expect(waitFor("XDP attached again to \(name)", after: mark), "not attached again after the name came back:\n\(relay.output)")

        // Moved into another network namespace, it is no longer the relay's: dropped as well.
        mark = relay.output.count
        try run(["link", "set", name, "netns", lab.outNamespace])
        #expect(waitFor("XDP is no longer attached to \(name)", after: mark), "still attached after leaving the namespace:\n\(relay.output)")
        #expect(try relay.metrics(until: { $0.total("relay_xdp_interfaces_attached") == 1 }).total("relay_xdp_interfaces_attached") == 1)
        let moved = try lab.inOut { XDPInterfaces.attachedProgramID(name) }
        #expect(moved == 0, "the program still runs on \(name) in the other namespace: id \(String(describing: moved))")
        for line in relay.output.split(separator: "\n") where line.contains("XDP") && line.contains(name) {
            print("xdp-link-watch: \(line.suffix(400))")
        }
        #expect(relay.stop() == 0, "turn-relay did not exit with status 0 on SIGTERM:\n\(relay.output.suffix(3000))")
    }
}
