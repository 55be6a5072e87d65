import STUN

/// A channel binding the kernel fast path (XDP) may relay on the core's behalf, in both directions:
/// ChannelData from `client` on `channel` goes to `peer` from the allocation's port `relayPort`,
/// and UDP from `peer` to `relayPort` goes to `client` as ChannelData on `channel`.
///
/// The core is the one authority over routes. It emits `RouteChange.up` when a binding becomes
/// usable for relaying (bound, its peer permitted, its allocation active) and `RouteChange.down`
/// when it stops being usable, in the same `OutboundBatch` as the change that caused it. The shell
/// applies route changes, in order, before anything else in the batch (before socket requests, so a
/// closed allocation port never keeps a route). The core never emits a route for a peer its policy
/// denies or for a peer on this host's own addresses (those need a per-datagram liveness check).
///
/// Addresses are as the core sees them (the client's source transport address, the peer's
/// transport address); which address is on the wire at an interface is the shell's business.
public struct ChannelRoute: Hashable, Sendable {
    /// The client's transport address (its source as received on the listener).
    public var client: TransportAddress
    /// The channel number (0x4000-0x4FFF, or up to 0x7FFF with RFC 5766 channel numbers).
    public var channel: UInt16
    /// The peer's transport address; its family is the family of the relayed address used.
    public var peer: TransportAddress
    /// The allocation socket the core relays this peer through (the peer's family).
    public var relaySocket: SocketHandle
    /// That socket's port (the relayed transport address's port).
    public var relayPort: UInt16

    @inlinable
    public init(client: TransportAddress, channel: UInt16, peer: TransportAddress, relaySocket: SocketHandle, relayPort: UInt16) {
        self.client = client
        self.channel = channel
        self.peer = peer
        self.relaySocket = relaySocket
        self.relayPort = relayPort
    }
}

/// A change to the set of routes the kernel fast path may use (see `ChannelRoute`).
public enum RouteChange: Hashable, Sendable {
    /// The binding is usable: relaying it outside the core is allowed from now on.
    case up(ChannelRoute)
    /// The binding is no longer usable: the shell removes the route before it applies anything
    /// else in this batch.
    case down(ChannelRoute)
}
