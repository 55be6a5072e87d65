/// What `PeerPolicy.evaluate` says about a peer address.
public enum PeerDecision: Hashable, Sendable {
    /// The relay may send to this peer.
    case allowed
    /// Refused: 403 on CreatePermission/ChannelBind, silent drop for a Send indication.
    case denied
    /// One of the relay's own addresses. The server allows it only for ports of its own relay
    /// port range, so two clients of this relay can reach each other (hairpin) while the relay's
    /// listening, admin and metrics ports stay unreachable. An operator allow covering the
    /// address (and no operator deny) makes it `allowed` instead.
    case relaySelf
}
