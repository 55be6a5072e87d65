import CXDP
import RelayCore

/// The XDP program's per-CPU counters (`tr_counters`, summed over the CPUs) and the loader's own:
/// what the fast path relayed, what it passed to the kernel and why, and its routes.
public struct XDPCounters: Sendable, Equatable {
    /// Indexed by `enum tr_counter` (BPF/turn_router.h).
    public var program = [UInt64](repeating: 0, count: Int(TR_COUNTER_COUNT.rawValue))
    /// Route ups refused because a route map was full (the channel stays on the io_uring path).
    public var routeMapFull: UInt64 = 0
    /// Route changes the maps refused for another reason, or that could not be encoded (no
    /// address on the wire for a family, a hairpin route): those channels stay on the io_uring path.
    public var routesNotInstalled: UInt64 = 0
    /// Route ups left on the io_uring path because the MAC addresses are swapped by default
    /// (`XDPNextHop.auto` on one interface) and the client or the peer is on an attached link.
    public var routesLeftOnLink: UInt64 = 0
    /// Times the route maps were resized to follow the routes, and resizes that failed (the maps
    /// then kept their size).
    public var routeMapResizes: UInt64 = 0
    public var routeMapResizeFailures: UInt64 = 0
    /// Gauges.
    public var routesInstalled: Int = 0
    /// Entries each route map holds now.
    public var routeCapacity: Int = 0
    public var interfacesAttached: Int = 0
    /// Interfaces named with --xdp-interface (attached or not).
    public var interfacesConfigured: Int = 0

    public init() {}

    public subscript(_ counter: tr_counter) -> UInt64 {
        get { program[Int(counter.rawValue)] }
        set { program[Int(counter.rawValue)] = newValue }
    }

    /// Each pass reason's label and counter index, in export order (`TR_PASS_TTL` is reserved and
    /// never counted, so it is not exported).
    public static let passReasons: [(label: String, counter: tr_counter)] = [
        ("not_ip_udp", TR_PASS_NOT_IP_UDP),
        ("ipv4_options_or_fragment", TR_PASS_IPV4_OPTIONS_OR_FRAGMENT),
        ("ipv6_extension_header", TR_PASS_IPV6_EXTENSION_HEADER),
        ("not_our_port", TR_PASS_NOT_OUR_PORT),
        ("not_channel_data", TR_PASS_NOT_CHANNEL_DATA),
        ("map_miss", TR_PASS_MAP_MISS),
        ("malformed_channel_data", TR_PASS_MALFORMED_CHANNEL_DATA),
        ("channel_length_beyond_datagram", TR_PASS_CHANNEL_LENGTH_BEYOND_DATAGRAM),
        ("oversized", TR_PASS_OVERSIZED),
        ("headroom", TR_PASS_HEADROOM),
        ("checksum_or_other", TR_PASS_CHECKSUM_OR_OTHER),
        ("partial_checksum", TR_PASS_PARTIAL_CHECKSUM),
        ("hairpin", TR_PASS_HAIRPIN),
        ("no_neigh", TR_PASS_NO_NEIGH),
        ("no_route", TR_PASS_NO_ROUTE),
        ("egress_not_attached", TR_PASS_EGRESS_NOT_ATTACHED),
    ]
}

extension MetricFamily {
    /// The relayed packets and bytes of both paths: the core counts what it relays (`userspace`),
    /// the XDP program what it relays in the driver (`xdp`).
    public static let relayedPacketsByDatapath = MetricFamily(
        "relay_relayed_packets_total", .counter, labels: ["direction", "datapath"],
        help: "Datagrams relayed, by direction and datapath (userspace: the io_uring path; xdp: the kernel fast path).")
    public static let relayedBytesByDatapath = MetricFamily(
        "relay_relayed_bytes_total", .counter, labels: ["direction", "datapath"],
        help: "Application bytes relayed, by direction and datapath (userspace: the io_uring path; xdp: the kernel fast path).")
    static let xdpPassed = MetricFamily(
        "relay_xdp_passed_packets_total", .counter, labels: ["reason"],
        help: "Packets the XDP program passed to the kernel (and so to the io_uring path), by reason.")
    static let xdpRouteMapFull = MetricFamily(
        "relay_xdp_route_map_full_total", .counter,
        help: "Channel routes not installed because an XDP route map was full (the channel stays on the io_uring path).")
    static let xdpRoutesNotInstalled = MetricFamily(
        "relay_xdp_routes_not_installed_total", .counter,
        help: "Channel routes not installed for another reason (no relay address on the wire for the family, a hairpin route, a map error).")
    static let xdpRoutesLeftOnLink = MetricFamily(
        "relay_xdp_routes_on_link_total", .counter,
        help: "Channel routes left on the io_uring path because the XDP program would swap MAC addresses (--xdp-next-hop auto on one interface) and the client or the peer is on an attached link, where that could send to the wrong host.")
    static let xdpRouteMapResizes = MetricFamily(
        "relay_xdp_route_map_resizes_total", .counter, labels: ["outcome"],
        help: "Times the XDP route maps were resized to follow the number of routes (outcome ok), or a resize failed and they kept their size (failed).")
    static let xdpRouteCapacity = MetricFamily(
        "relay_xdp_route_capacity", .gauge, help: "Entries each XDP route map holds now (it grows and shrinks with the routes).")
    static let xdpRoutesInstalled = MetricFamily(
        "relay_xdp_routes_installed", .gauge, help: "Channel routes installed in the XDP maps.")
    static let xdpInterfacesAttached = MetricFamily(
        "relay_xdp_interfaces_attached", .gauge, help: "Interfaces the XDP program is attached to.")
    static let xdpInterfacesConfigured = MetricFamily(
        "relay_xdp_interfaces_configured", .gauge,
        help: "Interfaces named with --xdp-interface; more than relay_xdp_interfaces_attached while one is missing (deleted, renamed, or refused).")
}

extension XDPCounters {
    /// Every series the fast path exports, in export order.
    public static let metrics: [MetricSeries<XDPCounters>] = {
        typealias F = MetricFamily
        var m: [MetricSeries<XDPCounters>] = [
            F.relayedPacketsByDatapath.series("client_to_peer", "xdp") { $0[TR_RELAYED_PACKETS_CLIENT_TO_PEER] },
            F.relayedPacketsByDatapath.series("peer_to_client", "xdp") { $0[TR_RELAYED_PACKETS_PEER_TO_CLIENT] },
            F.relayedBytesByDatapath.series("client_to_peer", "xdp") { $0[TR_RELAYED_BYTES_CLIENT_TO_PEER] },
            F.relayedBytesByDatapath.series("peer_to_client", "xdp") { $0[TR_RELAYED_BYTES_PEER_TO_CLIENT] },
        ]
        for (label, counter) in passReasons {
            m.append(F.xdpPassed.series(label) { $0[counter] })
        }
        m += [
            F.xdpRouteMapFull.series { $0.routeMapFull },
            F.xdpRoutesNotInstalled.series { $0.routesNotInstalled },
            F.xdpRoutesLeftOnLink.series { $0.routesLeftOnLink },
            F.xdpRouteMapResizes.series("ok") { $0.routeMapResizes },
            F.xdpRouteMapResizes.series("failed") { $0.routeMapResizeFailures },
            F.xdpRoutesInstalled.series { $0.routesInstalled },
            F.xdpRouteCapacity.series { $0.routeCapacity },
            F.xdpInterfacesAttached.series { $0.interfacesAttached },
            F.xdpInterfacesConfigured.series { $0.interfacesConfigured },
        ]
        return m
    }()
}
