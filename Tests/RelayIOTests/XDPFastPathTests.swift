import CXDP
import Foundation
import Glibc
import RelayCore
@testable import RelayIO
import STUN
import Synchronization
import Testing
import TestSupport

/// The XDP fast path's loader against the real kernel: the program loaded and attached to a veth
/// in a namespace the test creates (scripts/netns-lab), routes written to and removed from its
/// maps byte for byte, a full map counted, and ChannelData relayed by the program itself with its
/// counters read back. Root only (CAP_BPF, CAP_NET_ADMIN, namespaces); skipped otherwise.
@Suite(.serialized, .dedicatedThread) struct XDPFastPathTests {
    static var isRoot: Bool { geteuid() == 0 }

    static let relay4 = IPv4Address(198, 18, 0, 1)
    static let client4 = IPv4Address(198, 18, 0, 2)
    static let peer4 = IPv4Address(198, 18, 0, 3)
    static let relay6 = IPv6Address("2001:db8::1")!
    static let peer6 = IPv6Address("2001:db8::3")!
    static let listenerPort: UInt16 = 3478

    static func route(clientPort: UInt16 = 40000, channel: UInt16 = 0x4001, peer: IPAddress = .v4(peer4),
                      peerPort: UInt16 = 41000, relayPort: UInt16 = 50001) -> ChannelRoute {
        ChannelRoute(client: TransportAddress(ip: .v4(client4), port: clientPort), channel: channel,
                     peer: TransportAddress(ip: peer, port: peerPort), relaySocket: SocketHandle(raw: 2),
                     relayPort: relayPort)
    }

    /// `count` routes with their own client port, peer port and allocation port each.
    static func routes(_ count: Int) -> [ChannelRoute] {
        (0..<count).map { route(clientPort: 40000 + UInt16($0), peerPort: 41000 + UInt16($0), relayPort: 50001 + UInt16($0)) }
    }

    /// A lab, and what starting the fast path on its relay end (plus `extra` interfaces of that
    /// namespace) gave. The caller takes the lab down.
    static func launch(_ mode: XDPMode, extra: [String] = [], routeEntries: UInt32? = nil, initialRouteEntries: UInt32? = nil,
                       routeResizeInterval: Duration? = nil, nextHop: XDPNextHop? = nil, objectPath: String? = nil,
                       watchLinks: Bool = true, linkRecheck: Duration? = nil, prepare: (XDPLab) throws -> [String] = { _ in [] })
        throws -> (XDPLab, [String], Result<XDPFastPath, XDPFailure>) {
        let built = try #require(XDPTestObject.path(), "the BPF object could not be built (clang, libbpf-dev)")
        let object = objectPath ?? built
        let lab = try XDPLab(prefix: "shx")
        let prepared: [String]
        do { prepared = try prepare(lab) } catch {
            lab.down()
            throw error
        }
        let interfaces = [lab.relayInterface] + extra + prepared
        var settings = XDPSettings(interfaces: interfaces, mode: mode, objectPath: object,
                                   listenerPort: listenerPort, relayPorts: 50000...50100,
                                   listenIPv4: relay4, listenIPv6: relay6)
        if let routeEntries { settings.routeEntries = routeEntries }
        // The lab's clients and peers are one host on the relay's link: the MAC swap is right for
        // them (auto would leave their routes out); several interfaces take the FIB.
        if extra.isEmpty { settings.nextHop = .swap }
        if let nextHop { settings.nextHop = nextHop }
        if let initialRouteEntries { settings.initialRouteEntries = initialRouteEntries }
        if let routeResizeInterval { settings.routeResizeInterval = routeResizeInterval }
        settings.watchLinks = watchLinks
        if let linkRecheck { settings.linkRecheckInterval = linkRecheck }
        do {
            return (lab, interfaces, try lab.run(in: lab.relayNamespace) { [settings] in XDPFastPath.start(settings) })
        } catch {
            lab.down()
            throw error
        }
    }

    /// A lab and the fast path attached to its relay end.
    static func start(_ mode: XDPMode, routeEntries: UInt32? = nil, initialRouteEntries: UInt32? = nil,
                      routeResizeInterval: Duration? = nil) throws -> (XDPLab, XDPFastPath) {
        let (lab, _, result) = try launch(mode, routeEntries: routeEntries, initialRouteEntries: initialRouteEntries,
                                          routeResizeInterval: routeResizeInterval)
        do {
            return (lab, try result.get())
        } catch {
            lab.down()
            throw error
        }
    }

    /// Adds a veth pair inside the lab's relay namespace, both ends up; the name of the first end.
    static func addVethPair(_ lab: XDPLab) throws -> String {
        let (a, b) = (lab.name + "x", lab.name + "y")
        guard lab.ip("-n", lab.relayNamespace, "link", "add", a, "type", "veth", "peer", "name", b) == 0,
              lab.ip("-n", lab.relayNamespace, "link", "set", a, "up") == 0,
              lab.ip("-n", lab.relayNamespace, "link", "set", b, "up") == 0
        else { throw XDPLab.LabError(text: "cannot add the veth pair \(a)/\(b)") }
        return a
    }

    /// Whether, within 2 s, no program is attached to any of `interfaces`. Not at once: the link
    /// is released when its last file reference goes, and a child another test is spawning at
    /// that moment holds a copy of the test process's descriptors until it execs (seen once in
    /// `make test`, with every test slowed to 13 s by the load). A link that leaked stays.
    static func detached(_ lab: XDPLab, _ interfaces: [String]) throws -> Bool {
        let start = ContinuousClock.now
        let deadline = start + .seconds(2)
        while true {
            let ids = try attached(lab, interfaces)
            if ids.allSatisfy({ $0 == 0 }) {
                if ContinuousClock.now > start + .milliseconds(5) { print("xdp: detached \(ContinuousClock.now - start) after close") }
                return true
            }
            guard ContinuousClock.now < deadline else {
                print("xdp: still attached 2 s after close: \(ids)")
                return false
            }
            usleep(10_000)
        }
    }

    /// The program attached to each of `interfaces` in the lab's relay namespace (0: none).
    static func attached(_ lab: XDPLab, _ interfaces: [String]) throws -> [UInt32?] {
        try lab.run(in: lab.relayNamespace) { interfaces.map { XDPInterfaces.attachedProgramID($0) } }
    }

    static func mapped(_ a: IPv4Address) -> [UInt8] {
        [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF, UInt8(a.value >> 24), UInt8(a.value >> 16 & 0xFF),
                                              UInt8(a.value >> 8 & 0xFF), UInt8(a.value & 0xFF)]
    }

    static func be(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func attachesThroughALinkAndDetachesOnClose() throws {
        let (lab, fastPath) = try Self.start(.native)
        defer { lab.down() }
        #expect(try Self.attached(lab, [lab.relayInterface]) == [fastPath.programID] && fastPath.programID != 0)
        #expect(fastPath.counters.interfacesAttached == 1)
        #expect(fastPath.status == "attached on \(lab.relayInterface) (native mode)")
        #expect(fastPath.attached.map { fastPath.redirects(to: $0) } == [true])
        fastPath.close()
        #expect(try Self.detached(lab, [lab.relayInterface]), "still attached after close")
    }

    /// One program, one set of maps, attached to every named interface (here the veth and the
    /// namespace's loopback, in generic mode, which any device supports).
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func attachesTheSameProgramToEveryInterface() throws {
        let (lab, interfaces, result) = try Self.launch(.generic, extra: ["lo"])
        defer { lab.down() }
        let fastPath = try result.get()
        #expect(try Self.attached(lab, interfaces) == [fastPath.programID, fastPath.programID])
        #expect(fastPath.counters.interfacesAttached == 2)
        #expect(fastPath.status == "attached on \(lab.relayInterface), lo (generic mode)")
        // Each is a place TR_CONFIG_FIB may redirect to (tr_egress).
        #expect(fastPath.attached.map { fastPath.redirects(to: $0) } == [true, true])
        fastPath.close()
        #expect(try Self.detached(lab, interfaces))
    }

    /// The next hop: with one interface the program swaps the MAC addresses and sends back out
    /// (XDP_TX); with several, a route may leave by another one, so it asks the kernel's FIB
    /// (TR_CONFIG_FIB) and redirects there. The RFC 5766 flag is independent of it.
    /// What the start-up log's `on_link_channels` says for each next hop and interface count.
    @Test func onLinkChannelsAreRelayedAsTheNextHopAllows() {
        #expect(XDPNextHop.auto.onLinkChannels(interfaceCount: 1) == "userspace")
        #expect(XDPNextHop.auto.onLinkChannels(interfaceCount: 2) == "xdp")
        #expect(XDPNextHop.fib.onLinkChannels(interfaceCount: 1) == "xdp")
        #expect(XDPNextHop.swap.onLinkChannels(interfaceCount: 1) == "xdp-swapped")
        #expect(XDPNextHop.swap.onLinkChannels(interfaceCount: 2) == "xdp-swapped")
    }

    @Test func fibOnlyWithSeveralInterfaces() {
        var s = XDPSettings(interfaces: ["eth0"], objectPath: "/nonexistent", listenerPort: 3478,
                            relayPorts: 50000...50100, listenIPv4: Self.relay4, listenIPv6: nil)
        #expect(XDPFastPath.configFlags(s, interfaceCount: 1) == 0)
        #expect(XDPFastPath.configFlags(s, interfaceCount: 2) == UInt32(TR_CONFIG_FIB))
        s.rfc5766Channels = true
        #expect(XDPFastPath.configFlags(s, interfaceCount: 1) == UInt32(TR_CONFIG_RFC5766_CHANNELS))
        #expect(XDPFastPath.configFlags(s, interfaceCount: 3) == UInt32(TR_CONFIG_RFC5766_CHANNELS) | UInt32(TR_CONFIG_FIB))
        // --xdp-next-hop fib: the FIB on one interface too (clients and peers behind different
        // next hops on one link); swap: never.
        s.rfc5766Channels = false
        s.nextHop = .fib
        #expect(XDPFastPath.configFlags(s, interfaceCount: 1) == UInt32(TR_CONFIG_FIB))
        #expect(XDPFastPath.configFlags(s, interfaceCount: 2) == UInt32(TR_CONFIG_FIB))
        s.nextHop = .swap
        #expect(XDPFastPath.configFlags(s, interfaceCount: 1) == 0)
    }

    /// The loader's on-link check (said once at the first such route while swapping MAC
    /// addresses): a client or peer inside a prefix of an attached link, with the other end at
    /// another address. Clients and peers behind the link's router are not on it.
    @Test func swappingIsFlaggedForHostsOnTheAttachedLink() throws {
        let link = [try #require(CIDR("198.18.0.0/24")), try #require(CIDR("2001:db8::/64"))]
        func route(_ client: String, _ peer: String) throws -> ChannelRoute {
            ChannelRoute(client: try #require(TransportAddress(client)), channel: 0x4000,
                         peer: try #require(TransportAddress(peer)), relaySocket: SocketHandle(raw: 2), relayPort: 50000)
        }
        #expect(XDPFastPath.swapMaySendToTheWrongHost(try route("198.18.0.2:4000", "198.18.0.77:5000"), onLink: link))
        #expect(XDPFastPath.swapMaySendToTheWrongHost(try route("203.0.113.5:4000", "198.18.0.77:5000"), onLink: link))
        #expect(XDPFastPath.swapMaySendToTheWrongHost(try route("[2001:db8::2]:4000", "[2001:db8:1::9]:5000"), onLink: link))
        #expect(!XDPFastPath.swapMaySendToTheWrongHost(try route("203.0.113.5:4000", "198.51.100.7:5000"), onLink: link),
                "both behind the link's router: the swap sends back to it")
        #expect(!XDPFastPath.swapMaySendToTheWrongHost(try route("198.18.0.2:4000", "198.18.0.2:5000"), onLink: link),
                "one host: its own MAC address is right both ways")
        #expect(!XDPFastPath.swapMaySendToTheWrongHost(try route("198.18.0.2:4000", "198.18.0.77:5000"), onLink: []),
                "next hop from the FIB: nothing to flag")
        // The prefixes come from the interface's netmasks.
        #expect(HostAddresses.connectedPrefixes(interface: "lo").contains(try #require(CIDR("127.0.0.0/8"))))
        #expect(HostAddresses.prefixLength(of: .v4(try #require(IPv4Address("255.255.240.0")))) == 20)
        #expect(HostAddresses.prefixLength(of: .v6(try #require(IPv6Address("ffff:ffff:ffff:ffff:ff00::")))) == 72)
    }

    /// All or nothing: when one interface refuses (loopback has no native XDP), the others are
    /// detached again, and the failure names the cause and the fix.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func aRefusingInterfaceLeavesNothingAttached() throws {
        let (lab, interfaces, result) = try Self.launch(.native, extra: ["lo"])
        defer { lab.down() }
        guard case .failure(let failure) = result else {
            Issue.record("attached in native mode to lo")
            return
        }
        #expect(failure.cause.hasPrefix("the driver of lo has no native XDP"), "\(failure)")
        #expect(failure.fix.contains("--xdp-mode generic"))
        #expect(try Self.detached(lab, interfaces))
    }

    /// Route up writes both entries exactly as BPF/turn_router.h lays them out (IPv4-mapped
    /// addresses, ports and channel in network byte order, families, zero padding); route down
    /// removes both.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func routeUpInstallsExactBytesAndDownRemovesThem() throws {
        let (lab, fastPath) = try Self.start(.native)
        defer { lab.down(); fastPath.close() }
        let r = Self.route()
        fastPath.apply(.up(r))
        let installed = fastPath.installedValues(for: r)
        #expect(installed.client == Self.mapped(Self.relay4) + Self.mapped(Self.peer4) + Self.be(50001) + Self.be(41000) + [4, 4, 0, 0])
        #expect(installed.peer == Self.mapped(Self.relay4) + Self.mapped(Self.client4) + Self.be(Self.listenerPort)
                + Self.be(40000) + Self.be(0x4001) + [4, 4])

        // Cross-family: an IPv6 peer of an IPv4 client goes out from the IPv6 relay address.
        let cross = Self.route(clientPort: 40001, channel: 0x4002, peer: .v6(Self.peer6), relayPort: 50002)
        fastPath.apply(.up(cross))
        let crossInstalled = fastPath.installedValues(for: cross)
        let relay6 = XDPRouteEncoding.bytes(.v6(Self.relay6)), peer6 = XDPRouteEncoding.bytes(.v6(Self.peer6))
        #expect(relay6 == [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1])
        #expect(crossInstalled.client == relay6 + peer6 + Self.be(50002) + Self.be(41000) + [4, 6, 0, 0])
        #expect(crossInstalled.peer == Self.mapped(Self.relay4) + Self.mapped(Self.client4) + Self.be(Self.listenerPort)
                + Self.be(40001) + Self.be(0x4002) + [6, 4])
        #expect(fastPath.counters.routesInstalled == 2)

        fastPath.apply(.down(r))
        #expect(fastPath.installedValues(for: r).client == nil)
        #expect(fastPath.installedValues(for: r).peer == nil)
        #expect(fastPath.installedValues(for: cross).client != nil)
        #expect(fastPath.counters.routesInstalled == 1)
        // A hairpin (the peer is the relay's own address) is never installed.
        let hairpin = Self.route(clientPort: 40009, peer: .v4(Self.relay4), relayPort: 50009)
        fastPath.apply(.up(hairpin))
        #expect(fastPath.installedValues(for: hairpin).client == nil)
        #expect(fastPath.counters.routesNotInstalled == 1)
    }

    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func fullMapIsCountedAndLeavesTheChannelOut() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 4)
        defer { lab.down(); fastPath.close() }
        #expect(fastPath.routeCapacity == 4)
        let routes = (0..<5).map { Self.route(clientPort: 40000 + UInt16($0), relayPort: 50001 + UInt16($0)) }
        for r in routes { fastPath.apply(.up(r)) }
        var c = fastPath.counters
        #expect(c.routeMapFull == 1)
        #expect(c.routesInstalled == 4)
        #expect(fastPath.installedValues(for: routes[4]).client == nil)
        #expect(fastPath.installedValues(for: routes[4]).peer == nil)
        // Down of the route that never made it changes nothing; down of another makes room.
        fastPath.apply(.down(routes[4]))
        #expect(fastPath.counters.routesInstalled == 4)
        fastPath.apply(.down(routes[0]))
        fastPath.apply(.up(routes[4]))
        c = fastPath.counters
        #expect(c.routesInstalled == 4 && c.routeMapFull == 1)
        #expect(fastPath.installedValues(for: routes[4]).client != nil)
    }

    /// `auto` on one interface swaps MAC addresses, which is wrong for a client or peer on the
    /// attached link that is another host: such a channel's route is not installed (userspace
    /// relays it) and is counted; the handler is told once. A route with both ends off the link
    /// (behind the gateway, as on a cloud host) is installed.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func autoLeavesChannelsWithAnEndOnTheLinkToUserspace() throws {
        let object = try #require(XDPTestObject.path(), "the BPF object could not be built (clang, libbpf-dev)")
        let lab = try XDPLab(prefix: "shx")
        defer { lab.down() }
        let settings = XDPSettings(interfaces: [lab.relayInterface], objectPath: object, listenerPort: Self.listenerPort,
                                   relayPorts: 50000...50100, listenIPv4: Self.relay4, listenIPv6: Self.relay6)
        #expect(settings.nextHop == .auto)
        let fastPath = try lab.run(in: lab.relayNamespace) { XDPFastPath.start(settings) }.get()
        defer { fastPath.close() }
        let told = Mutex<[ChannelRoute]>([])
        fastPath.warnOnce { route in told.withLock { $0.append(route) } }
        let onLink = Self.route() // client 198.18.0.2, peer 198.18.0.3: the lab's link
        var offLink = Self.route(clientPort: 40001, peer: .v4(IPv4Address(203, 0, 113, 9)), relayPort: 50002)
        offLink.client.ip = .v4(IPv4Address(192, 0, 2, 7))
        let oneEnd = Self.route(clientPort: 40002, peer: .v4(IPv4Address(203, 0, 113, 10)), relayPort: 50003)
        for r in [onLink, offLink, oneEnd] { fastPath.apply(.up(r)) }
        #expect(fastPath.installedValues(for: onLink).client == nil && fastPath.installedValues(for: oneEnd).client == nil)
        #expect(fastPath.installedValues(for: offLink).client != nil && fastPath.installedValues(for: offLink).peer != nil)
        let c = fastPath.counters
        #expect(c.routesLeftOnLink == 2 && c.routesInstalled == 1 && c.routesNotInstalled == 0)
        #expect(told.withLock { $0 } == [onLink])
        fastPath.apply(.down(onLink)) // never installed: nothing to do
        #expect(fastPath.counters.routesInstalled == 1)
    }

    /// The route maps follow the routes: they start small (the program's lookups miss the caches
    /// less), grow fourfold when a route would fill more than three quarters, shrink when under a
    /// sixteenth are used. A resize loads the program again with maps of the new size, copies
    /// every route, and swaps the program on the link: routes, counters and traffic carry on.
    @Test func routeCapacityGrowsAtThreeQuartersAndShrinksUnderASixteenth() {
        func next(_ installed: Int, adding: Bool, _ capacity: UInt32) -> UInt32? {
            XDPSettings.resizedRouteCapacity(installed: installed, adding: adding, capacity: capacity, least: 4096, most: 262_144)
        }
        #expect(next(3071, adding: true, 4096) == nil) // the 3,072nd route: exactly three quarters
        #expect(next(3072, adding: true, 4096) == 16_384)
        #expect(next(65_536 * 3 / 4, adding: true, 65_536) == 262_144)
        #expect(next(262_143, adding: true, 262_144) == nil) // the most: the map fills, counted as full
        #expect(next(1023, adding: false, 16_384) == 4096) // under a sixteenth
        #expect(next(1024, adding: false, 16_384) == nil)
        #expect(next(0, adding: false, 4096) == nil) // never under the least
        #expect(XDPSettings.resizedRouteCapacity(installed: 5, adding: false, capacity: 262_144, least: 4096, most: 262_144) == 65_536)
        // A most below the least (tiny --max-allocations): the maps stay as they start.
        #expect(XDPSettings.resizedRouteCapacity(installed: 3, adding: true, capacity: 4, least: 4, most: 4) == nil)
    }

    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func routeMapsGrowAndShrinkWithTheRoutesWhileRelaying() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        let events = Mutex<[XDPFastPath.RouteMapResize]>([])
        fastPath.onRouteMapResize { event in events.withLock { $0.append(event) } }
        let routes = Self.routes(7)
        func exchange() throws -> Exchange { try Self.exchange(lab, routes[0]) }
        for r in routes.prefix(6) { fastPath.apply(.up(r)) }
        #expect(fastPath.routeCapacity == 8)
        let firstProgram = fastPath.programID
        var e = try exchange()
        #expect(e.atPeer?.bytes == Array("ping".utf8) && e.atClient?.bytes == [0x40, 0x01, 0x00, 0x04] + Array("pong".utf8))
        #expect(fastPath.counters[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == 1)

        fastPath.apply(.up(routes[6])) // 7 of 8: more than three quarters
        fastPath.settle() // the resize runs on a thread of its own
        if let e = events.withLock({ $0.first }) {
            print("xdp-resize: 8 → 32 entries took \(e.duration), route changes waited \(e.blocking) of it")
        }
        #expect(fastPath.routeCapacity == 32)
        #expect(fastPath.programID != firstProgram)
        #expect(try Self.attached(lab, [lab.relayInterface]) == [fastPath.programID], "the link runs the resized program")
        for r in routes { #expect(fastPath.installedValues(for: r).client != nil && fastPath.installedValues(for: r).peer != nil) }
        // The counters are the same map: what the first program counted is still there.
        #expect(fastPath.counters[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == 1)
        e = try exchange()
        #expect(e.atPeer?.bytes == Array("ping".utf8) && e.atClient?.bytes == [0x40, 0x01, 0x00, 0x04] + Array("pong".utf8))
        var c = fastPath.counters
        #expect(c[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == 2 && c[TR_RELAYED_PACKETS_PEER_TO_CLIENT] == 2, "relayed by the resized program")

        for r in routes.dropFirst() { fastPath.apply(.down(r)) } // 1 of 32: under a sixteenth
        fastPath.settle()
        #expect(fastPath.routeCapacity == 8)
        for r in routes.dropFirst() { #expect(fastPath.installedValues(for: r).client == nil) }
        e = try exchange()
        #expect(e.atPeer?.bytes == Array("ping".utf8) && e.atClient?.bytes == [0x40, 0x01, 0x00, 0x04] + Array("pong".utf8))
        c = fastPath.counters
        #expect(c[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == 3 && c[TR_RELAYED_PACKETS_PEER_TO_CLIENT] == 3)
        #expect(c.routeMapResizes == 2 && c.routeMapResizeFailures == 0 && c.routeCapacity == 8 && c.routesInstalled == 1)
        #expect(events.withLock { $0 } == [XDPFastPath.RouteMapResize(from: 8, to: 32, routes: 6),
                                           XDPFastPath.RouteMapResize(from: 32, to: 8, routes: 1)])
        fastPath.close()
        #expect(try Self.detached(lab, [lab.relayInterface]), "the resized program is detached on close")
    }

    /// At the relay's sizes, up to its cap: 49,200 routes from the first 4,096 entries grow the
    /// maps three times (16,384 at the 3,073rd, 65,536 at the 12,289th, 262,144 at the 49,153rd;
    /// those copies span several chunks of the batched copy), while the routes keep coming; every
    /// route is in both maps after. Taking all but 100 down shrinks them three times (65,536
    /// under 16,384 routes, 16,384 under 4,096, 4,096 under 1,024), the 100 left still in place.
    /// Each resize's time, and how long of it route changes waited, are printed.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func thousandsOfRoutesSurviveEveryResize() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 262_144, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        fastPath.onRouteMapResize { print("xdp-resize: \($0.from) → \($0.to) entries at \($0.routes) routes took \($0.duration), route changes waited \($0.blocking)") }
        #expect(fastPath.routeCapacity == 4096)
        let routes = (0..<49_200).map { Self.route(clientPort: 10000 + UInt16($0), peerPort: 10000 + UInt16($0)) }
        for r in routes { fastPath.apply(.up(r)) }
        fastPath.settle()
        var c = fastPath.counters
        #expect(c.routeCapacity == 262_144 && c.routesInstalled == 49_200 && c.routeMapResizes == 3 && c.routeMapFull == 0)
        let missing = routes.filter { fastPath.installedValues(for: $0).client == nil || fastPath.installedValues(for: $0).peer == nil }
        #expect(missing.isEmpty, "\(missing.count) routes missing after growing")
        for r in routes.dropFirst(100) { fastPath.apply(.down(r)) }
        fastPath.settle()
        c = fastPath.counters
        #expect(c.routeCapacity == 4096 && c.routesInstalled == 100 && c.routeMapResizes == 6 && c.routeMapResizeFailures == 0)
        #expect(routes.prefix(100).allSatisfy { fastPath.installedValues(for: $0).client != nil && fastPath.installedValues(for: $0).peer != nil })
        #expect(routes[100...].allSatisfy { fastPath.installedValues(for: $0).client == nil })
    }

    /// Hostile churn: a user who binds channels past three quarters and drops them again, over
    /// and over, would make the relay load the program twice per cycle. After a resize the maps
    /// do not shrink for `routeResizeInterval` (growing stays immediate), so the cycle costs one
    /// load per interval at most.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func churnAroundTheThresholdsDoesNotReloadTheProgramEachTime() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .seconds(3600))
        defer { lab.down(); fastPath.close() }
        let routes = Self.routes(7)
        for _ in 0..<5 {
            for r in routes { fastPath.apply(.up(r)) }
            fastPath.settle()
            #expect(fastPath.routeCapacity == 32)
            for r in routes { fastPath.apply(.down(r)) }
        }
        let c = fastPath.counters
        #expect(c.routeMapResizes == 1 && c.routeCapacity == 32 && c.routesInstalled == 0, "\(c.routeMapResizes) resizes")
    }

    /// One ChannelData from `r`'s client to its peer and one datagram back, in the lab.
    static func exchange(_ lab: XDPLab, _ r: ChannelRoute) throws -> Exchange {
        try lab.run(in: lab.outNamespace) { () throws -> Exchange in
            let client = try BlockingUDPSocket(bindTo: r.client)
            let peer = try BlockingUDPSocket(bindTo: r.peer)
            var e = Exchange()
            _ = client.send([0x40, 0x01, 0x00, 0x04] + Array("ping".utf8), to: TransportAddress(ip: .v4(Self.relay4), port: Self.listenerPort))
            e.atPeer = peer.receive(timeoutMilliseconds: 3000)
            _ = peer.send(Array("pong".utf8), to: TransportAddress(ip: .v4(Self.relay4), port: r.relayPort))
            e.atClient = client.receive(timeoutMilliseconds: 3000)
            return e
        }
    }

    static func relayedBothWays(_ e: Exchange) -> Bool {
        e.atPeer?.bytes == Array("ping".utf8) && e.atClient?.bytes == [0x40, 0x01, 0x00, 0x04] + Array("pong".utf8)
    }

    /// A resize the kernel refuses (route maps of 2^30 entries: more buckets than the kernel
    /// allows a hash map) changes nothing: the same program keeps running on the link with the
    /// same maps and routes and relays, the failure is counted and reported with the kernel's
    /// error, and the policy does not try again within `routeResizeInterval`, so a route that
    /// would have grown the maps goes in at their old size and the one after that, which does
    /// not fit, is left to the io_uring path and counted as map-full.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func aResizeTheKernelRefusesLeavesTheRunningProgramAndItsRoutes() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .seconds(3600))
        defer { lab.down(); fastPath.close() }
        let events = Mutex<[XDPFastPath.RouteMapResize]>([])
        fastPath.onRouteMapResize { event in events.withLock { $0.append(event) } }
        let routes = Self.routes(9)
        for r in routes.prefix(6) { fastPath.apply(.up(r)) }
        let program = fastPath.programID
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])))

        let refused = try #require(fastPath.resizeRoutes(to: 1 << 30))
        print("xdp-resize: a resize to 2^30 entries: \(refused.failure ?? "no failure")")
        #expect(refused.failure?.contains("load the BPF program") == true, "\(refused)")
        #expect(fastPath.programID == program && fastPath.routeCapacity == 8)
        #expect(try Self.attached(lab, [lab.relayInterface]) == [program], "the link still runs the program it ran")
        for r in routes.prefix(6) { #expect(fastPath.installedValues(for: r).client != nil && fastPath.installedValues(for: r).peer != nil) }
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])))

        // 7 and 8 routes would grow the maps, but the last resize failed within the interval.
        fastPath.apply(.up(routes[6]))
        fastPath.apply(.up(routes[7]))
        fastPath.apply(.up(routes[8])) // the ninth does not fit in 8 entries
        let c = fastPath.counters
        #expect(c.routeMapResizes == 0 && c.routeMapResizeFailures == 1 && c.routeCapacity == 8, "\(c.routeMapResizes) resizes, \(c.routeMapResizeFailures) failed")
        #expect(c.routesInstalled == 8 && c.routeMapFull == 1)
        #expect(fastPath.installedValues(for: routes[8]).client == nil && fastPath.installedValues(for: routes[8]).peer == nil,
                "no half route left behind")
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[7])), "a route installed after the failure is relayed")
        #expect(events.withLock { $0.count } == 1 && events.withLock { $0.first?.failure } != nil)
    }

    /// An attached interface deleted while the relay runs (a container's veth, a removed NIC):
    /// the kernel releases its link, and swapping the program on it fails with ENOLINK. The
    /// resize drops that link instead of failing (it would fail every later resize too, and the
    /// maps could never grow again), says which interface it dropped, and relays on the others.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func aDeletedInterfaceIsDroppedAtTheNextResize() throws {
        // Without the link watch, which would drop the link first (the test after this one).
        let (lab, interfaces, result) = try Self.launch(.native, routeEntries: 64, initialRouteEntries: 8,
                                                        routeResizeInterval: .zero, nextHop: .swap, watchLinks: false) { lab in
            [try Self.addVethPair(lab)]
        }
        defer { lab.down() }
        let fastPath = try result.get()
        defer { fastPath.close() }
        let events = Mutex<[XDPFastPath.RouteMapResize]>([])
        fastPath.onRouteMapResize { event in events.withLock { $0.append(event) } }
        let deleted = interfaces[1]
        #expect(try Self.attached(lab, interfaces) == [fastPath.programID, fastPath.programID])
        #expect(fastPath.status == "attached on \(lab.relayInterface), \(deleted) (native mode)")
        let routes = Self.routes(7)
        for r in routes.prefix(6) { fastPath.apply(.up(r)) }
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])))

        #expect(lab.ip("-n", lab.relayNamespace, "link", "del", deleted) == 0)
        fastPath.apply(.up(routes[6])) // 7 of 8: grows to 32
        fastPath.settle()
        let c = fastPath.counters
        #expect(c.routeMapResizes == 1 && c.routeMapResizeFailures == 0 && c.routeCapacity == 32,
                "\(c.routeMapResizes) resizes, \(c.routeMapResizeFailures) failed: \(events.withLock { $0 })")
        #expect(c.interfacesAttached == 1)
        #expect(fastPath.status == "attached on \(lab.relayInterface) (native mode); not on \(deleted): deleted while the relay ran")
        #expect(events.withLock { $0 } == [XDPFastPath.RouteMapResize(from: 8, to: 32, routes: 6, detached: [deleted])])
        #expect(try Self.attached(lab, [lab.relayInterface]) == [fastPath.programID], "the remaining link runs the resized program")
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[6])))
        // The next resize has nothing left to drop.
        for r in routes.dropFirst() { fastPath.apply(.down(r)) }
        fastPath.settle()
        #expect(fastPath.counters.routeMapResizes == 2 && fastPath.counters.routeCapacity == 8)
        #expect(events.withLock { $0.last } == XDPFastPath.RouteMapResize(from: 32, to: 8, routes: 1))
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])))
    }

    /// An interface deleted while the relay runs and created again under its name (a VPN or
    /// container link re-created, a driver reloaded): the link watch drops the dead link when the
    /// kernel announces the deletion, takes the interface out of tr_egress, and attaches the
    /// running program to the new interface when it appears; a resize after that swaps the
    /// program on both links. The recheck is an hour away: the announcements alone drive it.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func anInterfaceCreatedAgainUnderItsNameIsAttachedAgain() throws {
        let (lab, interfaces, result) = try Self.launch(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero,
                                                        nextHop: .swap, linkRecheck: .seconds(3600)) { lab in
            [try Self.addVethPair(lab)]
        }
        defer { lab.down() }
        let fastPath = try result.get()
        defer { fastPath.close() }
        let changes = Mutex<[XDPFastPath.LinkChange]>([])
        fastPath.onLinkChange { change in changes.withLock { $0.append(change) } }
        func waitFor(_ what: (XDPFastPath.LinkChange) -> Bool) -> Bool {
            let deadline = ContinuousClock.now + .seconds(5)
            while ContinuousClock.now < deadline {
                if changes.withLock({ $0.contains(where: what) }) { return true }
                usleep(5000)
            }
            return false
        }
        let name = interfaces[1]
        let program = fastPath.programID
        let before = try #require(fastPath.attached.last)
        #expect(try Self.attached(lab, interfaces) == [program, program])

        #expect(lab.ip("-n", lab.relayNamespace, "link", "del", name) == 0)
        #expect(waitFor { $0.detached == [name] }, "no change reported within 5 s: \(changes.withLock { $0 })")
        #expect(fastPath.counters.interfacesAttached == 1)
        #expect(fastPath.attached.map(\.name) == [lab.relayInterface])
        #expect(fastPath.redirects(to: before) == false, "the deleted interface is still in tr_egress")
        #expect(fastPath.status == "attached on \(lab.relayInterface) (native mode); not on \(name): no network interface named \(name) (see `ip link`)")

        #expect(try Self.addVethPair(lab) == name)
        #expect(waitFor { $0.reattached == [name] }, "not attached again within 5 s: \(changes.withLock { $0 })")
        let after = try #require(fastPath.attached.last)
        #expect(after.name == name && after.index != before.index)
        #expect(fastPath.counters.interfacesAttached == 2)
        #expect(fastPath.status == "attached on \(lab.relayInterface), \(name) (native mode)")
        #expect(try Self.attached(lab, interfaces) == [program, program])
        #expect(fastPath.redirects(to: after) == true)

        // A resize now swaps the program on both links, the new one included.
        let routes = Self.routes(7)
        for r in routes { fastPath.apply(.up(r)) } // the 7th grows the maps to 32
        fastPath.settle()
        #expect(fastPath.counters.routeMapResizes == 1 && fastPath.programID != program)
        #expect(try Self.attached(lab, interfaces) == [fastPath.programID, fastPath.programID])
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])))
        #expect(fastPath.counters.interfacesAttached == 2)
    }

    /// The object file is read once, at start: a resize loads that image again, not the file,
    /// which a package upgrade may have replaced or removed since (a newer program's maps need
    /// not match the running one's, whose maps the new program shares).
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func aResizeLoadsTheObjectReadAtStartNotTheFile() throws {
        let built = try #require(XDPTestObject.path(), "the BPF object could not be built (clang, libbpf-dev)")
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("turn_router-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).bpf.o").path
        try FileManager.default.copyItem(atPath: built, toPath: copy)
        let (lab, _, result) = try Self.launch(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero,
                                               objectPath: copy)
        defer { lab.down() }
        let fastPath = try result.get()
        defer { fastPath.close() }
        // The file is gone, and another one (not a BPF object) is in its place.
        try FileManager.default.removeItem(atPath: copy)
        #expect(FileManager.default.createFile(atPath: copy, contents: Data("not an ELF file".utf8)))
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let routes = Self.routes(7)
        for r in routes { fastPath.apply(.up(r)) } // the 7th grows the maps to 32
        fastPath.settle()
        let c = fastPath.counters
        #expect(c.routeMapResizes == 1 && c.routeMapResizeFailures == 0 && c.routeCapacity == 32)
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])))
    }

    /// Route changes go on while a resize loads the program and copies the routes (workers apply
    /// them in their loops and must not wait for that: a fifth of a second for 49,152 routes).
    /// The resizing thread is held between its copy and its swap while one route goes up and
    /// another down; both take effect on the running maps at once, and both reach the new maps.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func routeChangesDuringAResizeReachTheNewMaps() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        let routes = Self.routes(8)
        for r in routes.prefix(6) { fastPath.apply(.up(r)) }
        let hold = ResizeHold(fastPath)
        fastPath.apply(.up(routes[6])) // 7 of 8: the resize starts
        #expect(hold.waitForCopy(), "the resize never reached its swap")
        fastPath.apply(.up(routes[7])) // 8 of 8 in the running maps
        fastPath.apply(.down(routes[1]))
        #expect(fastPath.routeCapacity == 8, "not swapped yet")
        #expect(fastPath.installedValues(for: routes[7]).client != nil && fastPath.installedValues(for: routes[1]).client == nil,
                "the changes apply to the running maps at once")
        hold.release(fastPath)
        fastPath.settle()
        #expect(hold.wasReleased, "the route changes waited for the resize")
        let c = fastPath.counters
        #expect(c.routeMapResizes == 1 && c.routeMapResizeFailures == 0 && c.routeCapacity == 32 && c.routesInstalled == 7)
        for r in routes where r != routes[1] {
            #expect(fastPath.installedValues(for: r).client != nil && fastPath.installedValues(for: r).peer != nil, "\(r.client.port)")
        }
        #expect(fastPath.installedValues(for: routes[1]).client == nil && fastPath.installedValues(for: routes[1]).peer == nil)
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[7])), "the route added meanwhile is relayed by the new program")
        #expect(try Self.exchange(lab, routes[1]).atPeer == nil, "the route removed meanwhile is not")
    }

    /// More route changes while one resize copies the routes than its journal holds
    /// (`Resizing.journalLimit`, 262,144: a storm of bindings and expiries, or a copy that took
    /// very long): the resize is abandoned, not the changes. Each one took effect on the running
    /// maps at once; the failure is counted and reported; the program and maps stay as they were
    /// and keep relaying; and the next growth succeeds with every route.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func moreChangesDuringACopyThanTheJournalHoldsAbandonTheResizeOnly() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        let events = Mutex<[XDPFastPath.RouteMapResize]>([])
        fastPath.onRouteMapResize { event in events.withLock { $0.append(event) } }
        let routes = Self.routes(8)
        for r in routes.prefix(6) { fastPath.apply(.up(r)) }
        let hold = ResizeHold(fastPath, seconds: 180) // 262,146 changes: 13 s in a debug build here
        fastPath.apply(.up(routes[6])) // 7 of 8: the resize starts
        #expect(hold.waitForCopy(), "the resize never reached its swap")
        let changes = XDPFastPath.Resizing.journalLimit + 2
        for i in 0..<changes { fastPath.apply(i % 2 == 0 ? .up(routes[7]) : .down(routes[7])) }
        #expect(fastPath.installedValues(for: routes[7]).client == nil, "the last change (down) did not take effect at once")
        hold.release(fastPath)
        fastPath.settle()
        #expect(hold.wasReleased, "the changes took longer than the hold's 180 s")
        let failed = events.withLock { $0 }
        #expect(failed.count == 1 && failed.first?.failure == "more than \(XDPFastPath.Resizing.journalLimit) route changes while the routes were copied",
                "\(failed)")
        var c = fastPath.counters
        #expect(c.routeMapResizes == 0 && c.routeMapResizeFailures == 1 && c.routeCapacity == 8 && c.routesInstalled == 7)
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[0])), "the running program stopped relaying")
        #expect(try Self.exchange(lab, routes[7]).atPeer == nil, "the route removed last is relayed")

        // The next route grows the maps: every route reaches them.
        fastPath.apply(.up(routes[7]))
        fastPath.settle()
        c = fastPath.counters
        #expect(c.routeMapResizes == 1 && c.routeCapacity == 32 && c.routesInstalled == 8, "\(events.withLock { $0 })")
        for r in routes {
            #expect(fastPath.installedValues(for: r).client != nil && fastPath.installedValues(for: r).peer != nil, "\(r.client.port)")
        }
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[7])))
    }

    /// A burst of channel bindings that fills the maps while they grow (the relay restarted and
    /// every client binds again): a route that finds them full waits for the growth and goes into
    /// the grown maps, instead of staying on the io_uring path for good. The growth is held after
    /// its copy; the route beyond the running maps' 8 entries blocks until it is released.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func aBurstThatFillsTheMapsWhileTheyGrowWaitsForTheGrowth() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        let routes = Self.routes(12)
        for r in routes.prefix(6) { fastPath.apply(.up(r)) }
        let hold = ResizeHold(fastPath), burstDone = DispatchSemaphore(value: 0)
        fastPath.apply(.up(routes[6])) // 7 of 8: the growth starts
        #expect(hold.waitForCopy())
        let burst = Thread {
            for r in routes.dropFirst(7) { fastPath.apply(.up(r)) } // the 8th fits, the 9th does not
            burstDone.signal()
        }
        burst.start()
        #expect(burstDone.wait(timeout: .now() + 0.5) == .timedOut, "the route beyond the full maps did not wait for the growth")
        hold.release(fastPath)
        #expect(burstDone.wait(timeout: .now() + 20) == .success)
        fastPath.settle()
        let c = fastPath.counters
        #expect(c.routeCapacity == 32 && c.routesInstalled == 12 && c.routeMapFull == 0 && c.routeMapResizeFailures == 0,
                "capacity \(c.routeCapacity), \(c.routesInstalled) installed, \(c.routeMapFull) map-full")
        for r in routes { #expect(fastPath.installedValues(for: r).client != nil && fastPath.installedValues(for: r).peer != nil) }
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[11])))
    }

    /// A shrink the routes outgrow while it copies: more routes go up during the copy than the
    /// smaller maps hold, so the replay cannot place them; the resize is abandoned and counted as
    /// failed, the running maps (which took every change) keep all the routes and relay.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func aShrinkTheRoutesOutgrowMeanwhileIsAbandoned() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        let events = Mutex<[XDPFastPath.RouteMapResize]>([])
        fastPath.onRouteMapResize { event in events.withLock { $0.append(event) } }
        let routes = Self.routes(12)
        for r in routes.prefix(7) { fastPath.apply(.up(r)) }
        fastPath.settle()
        #expect(fastPath.routeCapacity == 32)
        let hold = ResizeHold(fastPath)
        for r in routes.prefix(7).dropFirst() { fastPath.apply(.down(r)) } // 1 of 32: shrink to 8
        #expect(hold.waitForCopy(), "the shrink never reached its swap")
        for r in routes.dropFirst() { fastPath.apply(.up(r)) } // 12 routes: more than 8
        hold.release(fastPath)
        fastPath.settle()
        let c = fastPath.counters
        #expect(c.routeMapResizes == 1 && c.routeMapResizeFailures == 1 && c.routeCapacity == 32 && c.routesInstalled == 12,
                "\(c.routeMapResizes) resizes, \(c.routeMapResizeFailures) failed, capacity \(c.routeCapacity)")
        #expect(events.withLock { $0.last?.failure } == "the routes added while they were copied do not fit in 8 entries")
        for r in routes { #expect(fastPath.installedValues(for: r).client != nil && fastPath.installedValues(for: r).peer != nil) }
        #expect(Self.relayedBothWays(try Self.exchange(lab, routes[11])))
    }

    /// Closing while a resize is in flight: `close` waits for it, the resize sees the close and
    /// does not swap, and the program is detached.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func closeDuringAResizeWaitsAndDetaches() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 64, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down() }
        let events = Mutex<[XDPFastPath.RouteMapResize]>([])
        fastPath.onRouteMapResize { event in events.withLock { $0.append(event) } }
        let program = fastPath.programID
        let hold = ResizeHold(fastPath), closed = DispatchSemaphore(value: 0)
        for r in Self.routes(7) { fastPath.apply(.up(r)) }
        #expect(hold.waitForCopy())
        #expect(try Self.attached(lab, [lab.relayInterface]) == [program], "the held resize has not swapped yet")
        let closer = Thread {
            fastPath.close()
            closed.signal()
        }
        closer.start()
        #expect(closed.wait(timeout: .now() + 0.5) == .timedOut, "close did not wait for the resize")
        hold.release(fastPath)
        #expect(closed.wait(timeout: .now() + 20) == .success)
        #expect(events.withLock { $0 }.map(\.failure) == ["the fast path was closed meanwhile"])
        #expect(try Self.detached(lab, [lab.relayInterface]), "detached on close")
    }

    /// Swapping the program loses nothing: ChannelData sent without pause on one route while the
    /// maps grow and shrink again and again (each time a new program loaded, every route copied and
    /// the program replaced on the link) all reaches the peer, relayed by XDP (nothing else in the
    /// lab would deliver it: no process listens on the relay side).
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"))
    func noDatagramIsLostWhileTheProgramIsSwapped() throws {
        let (lab, fastPath) = try Self.start(.native, routeEntries: 128, initialRouteEntries: 8, routeResizeInterval: .zero)
        defer { lab.down(); fastPath.close() }
        let routes = Self.routes(100)
        fastPath.apply(.up(routes[0]))
        let total = 3000
        let outcome = Mutex<Result<Set<UInt32>, any Error>?>(nil)
        let sender = Thread {
            let r = routes[0]
            let received = Result {
                try lab.run(in: lab.outNamespace) { () throws -> Set<UInt32> in
                    let client = try BlockingUDPSocket(bindTo: r.client)
                    let peer = try BlockingUDPSocket(bindTo: r.peer)
                    var seen = Set<UInt32>()
                    let listener = TransportAddress(ip: .v4(Self.relay4), port: Self.listenerPort)
                    for n in 0..<UInt32(total) {
                        let sequence: [UInt8] = [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
                        _ = client.send([0x40, 0x01, 0x00, 0x04] + sequence, to: listener)
                        while let d = peer.receive(timeoutMilliseconds: 0), d.bytes.count == 4 {
                            seen.insert(UInt32(d.bytes[0]) << 24 | UInt32(d.bytes[1]) << 16 | UInt32(d.bytes[2]) << 8 | UInt32(d.bytes[3]))
                        }
                        usleep(400)
                    }
                    while seen.count < total, let d = peer.receive(timeoutMilliseconds: 500), d.bytes.count == 4 {
                        seen.insert(UInt32(d.bytes[0]) << 24 | UInt32(d.bytes[1]) << 16 | UInt32(d.bytes[2]) << 8 | UInt32(d.bytes[3]))
                    }
                    return seen
                }
            }
            outcome.withLock { $0 = received }
        }
        sender.start()
        // Up to 100 routes and down to 1, over and over: 8 → 32 → 128 and back (4 swaps a cycle).
        var cycles = 0
        while outcome.withLock({ $0 == nil }) && cycles < 500 {
            for r in routes.dropFirst() { fastPath.apply(.up(r)) }
            fastPath.settle()
            for r in routes.dropFirst() { fastPath.apply(.down(r)) }
            fastPath.settle()
            cycles += 1
        }
        while outcome.withLock({ $0 == nil }) { usleep(10_000) }
        let seen = try #require(outcome.withLock { $0 }).get()
        let c = fastPath.counters
        print("xdp-resize: \(total) datagrams sent during \(c.routeMapResizes) swaps of the program (\(cycles) cycles), \(seen.count) arrived")
        #expect(c.routeMapResizes >= 8 && c.routeMapResizeFailures == 0, "\(c.routeMapResizes) resizes")
        #expect(seen.count == total, "\(total - seen.count) of \(total) lost")
        #expect(c[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == UInt64(total))
    }

    /// Holds `fastPath`'s next resize on its thread after the copy (before the replay and the
    /// swap) until `release`, for at most 20 s.
    final class ResizeHold: Sendable {
        private let copied = DispatchSemaphore(value: 0), released = DispatchSemaphore(value: 0)
        private let releasedInTime = Mutex(false)

        /// `seconds`: how long the resize stays held at most.
        init(_ fastPath: XDPFastPath, seconds: Double = 20) {
            fastPath.afterResizeCopies { [self] in
                copied.signal()
                let inTime = released.wait(timeout: .now() + seconds) == .success
                releasedInTime.withLock { $0 = inTime }
            }
        }

        /// Whether the resize reached the hold within 20 s.
        func waitForCopy() -> Bool { copied.wait(timeout: .now() + 20) == .success }

        /// Lets the held resize go on; later resizes are not held.
        func release(_ fastPath: XDPFastPath) {
            fastPath.afterResizeCopies(nil)
            released.signal()
        }

        /// Whether the resize stayed held until `release` (not released by the timeout).
        var wasReleased: Bool { releasedInTime.withLock { $0 } }
    }

    struct Exchange: Sendable {
        var atPeer: (bytes: [UInt8], from: TransportAddress)?
        var atClient: (bytes: [UInt8], from: TransportAddress)?
        var afterDown: [UInt8]?
    }

    /// One traffic case: the attach mode and each side's family.
    struct TrafficCase: Sendable, CustomTestStringConvertible {
        var mode: XDPMode
        var client: AddressFamily
        var peer: AddressFamily
        var testDescription: String { "\(mode) \(client == .ipv4 ? 4 : 6)→\(peer == .ipv4 ? 4 : 6)" }

        static let all = [TrafficCase(mode: .native, client: .ipv4, peer: .ipv4),
                          TrafficCase(mode: .generic, client: .ipv4, peer: .ipv4),
                          TrafficCase(mode: .native, client: .ipv6, peer: .ipv6),
                          TrafficCase(mode: .native, client: .ipv4, peer: .ipv6),
                          TrafficCase(mode: .native, client: .ipv6, peer: .ipv4)]
    }

    static let client6 = IPv6Address("2001:db8::2")!

    /// The program relays ChannelData both ways (RFC 8656 §12.4: "the ChannelData message is
    /// relayed ... as a UDP datagram" to the peer; §12.5 the reverse) and its per-CPU counters say
    /// so; after route down the same ChannelData is no longer relayed (it passes to the kernel as
    /// a map miss: no socket listens in this lab, so nothing reaches the peer). IPv4, IPv6 and
    /// across families: the entries carry the right addresses on the wire for each side.
    @Test(.enabled(if: isRoot, "XDP needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces)"),
          arguments: TrafficCase.all)
    func relaysChannelDataAndCountsIt(_ t: TrafficCase) throws {
        let mode = t.mode
        let (lab, fastPath) = try Self.start(mode)
        defer { lab.down(); fastPath.close() }
        let clientIP: IPAddress = t.client == .ipv4 ? .v4(Self.client4) : .v6(Self.client6)
        let peerIP: IPAddress = t.peer == .ipv4 ? .v4(Self.peer4) : .v6(Self.peer6)
        var r = Self.route(peer: peerIP)
        r.client.ip = clientIP
        fastPath.apply(.up(r))
        let listener = TransportAddress(ip: t.client == .ipv4 ? .v4(Self.relay4) : .v6(Self.relay6), port: Self.listenerPort)
        let allocation = TransportAddress(ip: t.peer == .ipv4 ? .v4(Self.relay4) : .v6(Self.relay6), port: 50001)
        let exchange = try lab.run(in: lab.outNamespace) { [r] () throws -> Exchange in
            let client = try BlockingUDPSocket(bindTo: r.client)
            let peer = try BlockingUDPSocket(bindTo: r.peer)
            var e = Exchange()
            // Channel 0x4001, length 5, "hello", 3 bytes of padding.
            _ = client.send([0x40, 0x01, 0x00, 0x05] + Array("hello".utf8) + [0, 0, 0], to: listener)
            e.atPeer = peer.receive(timeoutMilliseconds: 3000)
            _ = peer.send(Array("world!".utf8), to: allocation)
            e.atClient = client.receive(timeoutMilliseconds: 3000)
            // A STUN Binding request to the listener: not ChannelData, passed.
            _ = client.send([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 7, count: 12), to: listener)
            fastPath.apply(.down(r))
            _ = client.send([0x40, 0x01, 0x00, 0x05] + Array("again".utf8) + [0, 0, 0], to: listener)
            e.afterDown = peer.receive(timeoutMilliseconds: 500)?.bytes
            return e
        }
        #expect(exchange.atPeer?.bytes == Array("hello".utf8))
        #expect(exchange.atPeer?.from == allocation)
        #expect(exchange.atClient?.bytes == [0x40, 0x01, 0x00, 0x06] + Array("world!".utf8))
        #expect(exchange.atClient?.from == listener)
        #expect(exchange.afterDown == nil)
        let c = fastPath.counters
        #expect(c[TR_RELAYED_PACKETS_CLIENT_TO_PEER] == 1)
        #expect(c[TR_RELAYED_BYTES_CLIENT_TO_PEER] == 5)
        #expect(c[TR_RELAYED_PACKETS_PEER_TO_CLIENT] == 1)
        #expect(c[TR_RELAYED_BYTES_PEER_TO_CLIENT] == 6)
        #expect(c[TR_PASS_NOT_CHANNEL_DATA] == 1)
        #expect(c[TR_PASS_MAP_MISS] == 1)
        #expect(c.routesInstalled == 0)
    }
}
