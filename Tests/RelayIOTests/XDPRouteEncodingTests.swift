import RelayCore
@testable import RelayIO
import STUN
import Testing

/// Which of the relay's addresses go into the XDP routes: those on the wire at the attached
/// interface (BPF/turn_router.h: "the destination address of the packets the relay receives").
@Suite struct XDPRouteEncodingTests {
    static let interface = XDPInterfaces.Interface(
        name: "eth0", index: 2, mtu: 1500,
        addresses: [.v6(IPv6Address("fe80::1")!), .v4(IPv4Address(10, 0, 0, 5)), .v6(IPv6Address("2001:db8::5")!),
                    .v4(IPv4Address(10, 0, 0, 6))])

    static func settings(listen4: IPv4Address?, listen6: IPv6Address?) -> XDPSettings {
        XDPSettings(interfaces: ["eth0"], objectPath: "/dev/null", listenerPort: 3478, relayPorts: 50000...50100,
                    listenIPv4: listen4, listenIPv6: listen6)
    }

    @Test func specificBindAddressesAreUsedAsTheyAre() {
        let e = XDPFastPath.wireEncoding(Self.settings(listen4: IPv4Address(192, 0, 2, 1), listen6: IPv6Address("2001:db8::9")),
                                         interfaces: [Self.interface])
        #expect(e.relayIPv4 == IPv4Address(192, 0, 2, 1) && e.listenerIPv4 == IPv4Address(192, 0, 2, 1))
        #expect(e.relayIPv6 == IPv6Address("2001:db8::9") && e.listenerIPv6 == IPv6Address("2001:db8::9"))
    }

    /// A wildcard bind: the interface's first address of the family, never an IPv6 link-local one.
    @Test func wildcardsTakeTheInterfacesFirstAddress() {
        let e = XDPFastPath.wireEncoding(Self.settings(listen4: .any, listen6: .any), interfaces: [Self.interface])
        #expect(e.relayIPv4 == IPv4Address(10, 0, 0, 5) && e.listenerIPv4 == IPv4Address(10, 0, 0, 5))
        #expect(e.relayIPv6 == IPv6Address("2001:db8::5") && e.listenerIPv6 == IPv6Address("2001:db8::5"))
    }

    /// --xdp-ip4/--xdp-ip6 (Firezone's EBPF_INT4_ADDR/EBPF_INT6_ADDR) win, for a served family only.
    @Test func explicitWireAddressesWinForServedFamilies() {
        var s = Self.settings(listen4: .any, listen6: nil)
        s.wireIPv4 = IPv4Address(10, 0, 0, 6)
        s.wireIPv6 = IPv6Address("2001:db8::6")
        let e = XDPFastPath.wireEncoding(s, interfaces: [Self.interface])
        #expect(e.relayIPv4 == IPv4Address(10, 0, 0, 6) && e.listenerIPv4 == IPv4Address(10, 0, 0, 6))
        #expect(e.relayIPv6 == nil && e.listenerIPv6 == nil)
    }

    /// An interface created again under its name joins the running program only if the relay's
    /// addresses on the wire stay those the routes were written with: with a wildcard bind they
    /// come from the interface, so one back without its addresses (yet), or with others, waits
    /// (the link watch checks again at each address change); with specific ones it always fits.
    @Test func anInterfaceBackUnderItsNameMustKeepTheWireAddresses() {
        let wildcard = Self.settings(listen4: .any, listen6: nil)
        let encoding = XDPFastPath.wireEncoding(wildcard, interfaces: [Self.interface])
        var bare = Self.interface
        bare.index = 9
        bare.addresses = []
        let bareWhy = XDPFastPath.refusal(toAttach: bare, beside: [], settings: wildcard, encoding: encoding)
        #expect(bareWhy?.hasPrefix("the relay's addresses on the wire would be none, not 10.0.0.5 as") == true, "\(bareWhy ?? "nil")")
        var other = bare
        other.addresses = [.v4(IPv4Address(10, 0, 0, 7))]
        let otherWhy = XDPFastPath.refusal(toAttach: other, beside: [], settings: wildcard, encoding: encoding)
        #expect(otherWhy?.hasPrefix("the relay's addresses on the wire would be 10.0.0.7, not 10.0.0.5 as") == true, "\(otherWhy ?? "nil")")
        var same = bare
        same.addresses = [.v4(IPv4Address(10, 0, 0, 5))]
        #expect(XDPFastPath.refusal(toAttach: same, beside: [], settings: wildcard, encoding: encoding) == nil)

        let specific = Self.settings(listen4: IPv4Address(192, 0, 2, 1), listen6: nil)
        let fixed = XDPFastPath.wireEncoding(specific, interfaces: [Self.interface])
        #expect(XDPFastPath.refusal(toAttach: bare, beside: [], settings: specific, encoding: fixed) == nil)
    }

    /// A route of a family without an address on the wire, and a route whose peer is the relay's
    /// own address (XDP_TX would send it out of the interface), are refused, never installed.
    @Test func routesWithoutAWireAddressOrToTheRelayItselfAreRefused() {
        let e = XDPFastPath.wireEncoding(Self.settings(listen4: IPv4Address(10, 0, 0, 5), listen6: nil), interfaces: [Self.interface])
        let client = TransportAddress(ip: .v4(IPv4Address(192, 0, 2, 7)), port: 40000)
        func route(_ peer: IPAddress) -> ChannelRoute {
            ChannelRoute(client: client, channel: 0x4000, peer: TransportAddress(ip: peer, port: 41000),
                         relaySocket: SocketHandle(raw: 2), relayPort: 50001)
        }
        #expect(throws: Never.self) { try e.entries(for: route(.v4(IPv4Address(198, 51, 100, 1)))).get() }
        #expect(throws: XDPRouteEncoding.Refusal.noWireAddress(.ipv6)) {
            try e.entries(for: route(.v6(IPv6Address("2001:db8::77")!))).get()
        }
        #expect(throws: XDPRouteEncoding.Refusal.hairpin) { try e.entries(for: route(.v4(IPv4Address(10, 0, 0, 5)))).get() }
    }

    /// The route maps hold --max-allocations × --max-channels routes, between 1,024 and 262,144.
    @Test func routeMapsAreSizedFromTheLimits() {
        #expect(XDPSettings.routeEntries(allocations: 100, channels: 128) == 12_800)
        #expect(XDPSettings.routeEntries(allocations: 1, channels: 1) == 1024)
        #expect(XDPSettings.routeEntries(allocations: 10_000, channels: 128) == 262_144)
        #expect(XDPSettings.routeEntries(allocations: Int.max, channels: 2) == 262_144)
    }
}
