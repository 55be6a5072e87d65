import CXDP
import RelayCore
import STUN

/// One channel route as the XDP program's two map entries (BPF/turn_router.h): client → peer in
/// `tr_client_routes`, peer → client in `tr_peer_routes`. Addresses are 16 bytes, IPv4 as
/// IPv4-mapped (RFC 4291 §2.5.5.2), ports and channel numbers in network byte order, padding zero
/// (the hash maps compare keys byte for byte).
public struct XDPRouteEntries {
    public var clientKey = tr_client_key()
    public var clientValue = tr_client_value()
    public var peerKey = tr_peer_key()
    public var peerValue = tr_peer_value()
}

/// Turns the core's `ChannelRoute`s into map entries. The core names the client and the peer;
/// the relay's own addresses in the entries are the ones on the wire at the attached interfaces
/// (the destination of what the relay receives): the relay's bound address for the peer's
/// family, the listener's address for the client's family.
public struct XDPRouteEncoding: Sendable, Equatable {
    /// Where allocation sockets receive, per family (nil: routes of that family are not installed).
    public var relayIPv4: IPv4Address?
    public var relayIPv6: IPv6Address?
    /// Where the listener receives, per family.
    public var listenerIPv4: IPv4Address?
    public var listenerIPv6: IPv6Address?
    /// The listener port clients send ChannelData to.
    public var listenerPort: UInt16

    public init(relayIPv4: IPv4Address?, relayIPv6: IPv6Address?, listenerIPv4: IPv4Address?,
                listenerIPv6: IPv6Address?, listenerPort: UInt16) {
        self.relayIPv4 = relayIPv4
        self.relayIPv6 = relayIPv6
        self.listenerIPv4 = listenerIPv4
        self.listenerIPv6 = listenerIPv6
        self.listenerPort = listenerPort
    }

    public enum Refusal: Error, Equatable {
        /// No address on the wire for this family (wildcard bind and no interface address).
        case noWireAddress(AddressFamily)
        /// The route's new destination is one of the relay's own addresses: `XDP_TX` would send
        /// it out of the interface instead of to this host (the program passes those anyway).
        case hairpin
    }

    func relayIP(_ family: AddressFamily) -> IPAddress? {
        family == .ipv4 ? relayIPv4.map(IPAddress.v4) : relayIPv6.map(IPAddress.v6)
    }

    func listenerIP(_ family: AddressFamily) -> IPAddress? {
        family == .ipv4 ? listenerIPv4.map(IPAddress.v4) : listenerIPv6.map(IPAddress.v6)
    }

    public func entries(for route: ChannelRoute) -> Result<XDPRouteEntries, Refusal> {
        guard let relay = relayIP(route.peer.family) else { return .failure(.noWireAddress(route.peer.family)) }
        guard let listener = listenerIP(route.client.family) else { return .failure(.noWireAddress(route.client.family)) }
        let own: Set<IPAddress> = [relay, listener]
        if own.contains(route.peer.ip) || own.contains(route.client.ip) { return .failure(.hairpin) }
        var e = XDPRouteEntries()
        let channel = route.channel.bigEndian
        let clientFamily = Self.family(route.client.family)
        let peerFamily = Self.family(route.peer.family)

        Self.store(route.client.ip, into: &e.clientKey.client_ip)
        e.clientKey.client_port = route.client.port.bigEndian
        e.clientKey.listener_port = listenerPort.bigEndian
        e.clientKey.channel = channel

        Self.store(relay, into: &e.clientValue.relay_ip)
        Self.store(route.peer.ip, into: &e.clientValue.peer_ip)
        e.clientValue.relay_port = route.relayPort.bigEndian
        e.clientValue.peer_port = route.peer.port.bigEndian
        e.clientValue.client_family = clientFamily
        e.clientValue.peer_family = peerFamily

        Self.store(route.peer.ip, into: &e.peerKey.peer_ip)
        Self.store(relay, into: &e.peerKey.relay_ip)
        e.peerKey.peer_port = route.peer.port.bigEndian
        e.peerKey.relay_port = route.relayPort.bigEndian

        Self.store(listener, into: &e.peerValue.listener_ip)
        Self.store(route.client.ip, into: &e.peerValue.client_ip)
        e.peerValue.listener_port = listenerPort.bigEndian
        e.peerValue.client_port = route.client.port.bigEndian
        e.peerValue.channel = channel
        e.peerValue.peer_family = peerFamily
        e.peerValue.client_family = clientFamily
        return .success(e)
    }

    static func family(_ f: AddressFamily) -> UInt8 {
        UInt8(f == .ipv4 ? TR_FAMILY_IPV4 : TR_FAMILY_IPV6)
    }

    /// The 16 wire bytes of `ip`: IPv6 as is, IPv4 as ::ffff:a.b.c.d.
    public static func bytes(_ ip: IPAddress) -> [UInt8] {
        switch ip {
        case .v4(let a):
            return [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + (0..<4).map { UInt8(truncatingIfNeeded: a.value >> (24 - 8 * $0)) }
        case .v6(let a):
            return (0..<8).map { UInt8(truncatingIfNeeded: a.high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: a.low >> (56 - 8 * $0)) }
        }
    }

    static func store<T>(_ ip: IPAddress, into field: inout T) {
        precondition(MemoryLayout<T>.size == 16)
        let b = bytes(ip)
        withUnsafeMutableBytes(of: &field) { raw in
            for i in 0..<16 { raw[i] = b[i] }
        }
    }
}
