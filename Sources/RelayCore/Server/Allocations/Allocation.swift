import STUN

/// One relayed transport address of an allocation: an allocation socket the shell opens on the relay
/// address of `family`.
struct RelaySocket {
    /// Where the socket is in its life: the shell has been asked to open it (the `attempt`-th bind
    /// for this family; a failed bind is retried on another port, boundedly), or it is open.
    enum State: Equatable {
        case opening(attempt: Int)
        case open
    }

    /// Whose port range the port belongs to.
    enum PortOwner: Equatable {
        /// This server's slice (or its own EVEN-PORT reservation): released into its allocator.
        case thisServer
        /// Claimed from another server's reservation: when this address goes away, the port is given
        /// back to the registry for its owner.
        case otherServer
    }

    var handle: SocketHandle
    var family: AddressFamily
    var port: UInt16
    var state: State
    /// RFC 8656 §6: "the time-to-expiry for each relayed transport address". A dual allocation's
    /// two addresses are refreshed (and deleted) separately (§8.1).
    var expiresAt: Instant
    var timer: TimerID
    var portOwner: PortOwner = .thisServer

    var isOpen: Bool { state == .open }

    var attempts: Int {
        switch state {
        case .opening(let attempt): attempt
        case .open: 0
        }
    }
}

/// An allocation (RFC 8656 §6): "the relayed transport address or addresses; the 5-tuple; the
/// authentication information; the time-to-expiry for each relayed transport address; a list of
/// permissions ...; a list of channel-to-peer bindings". The permissions and channels live in the
/// `PeerTable`, keyed by the allocation.
///
/// The hot path does not read this struct: ChannelData forwarding uses `SocketEntry` and the
/// peer table, so the cold fields here (strings, keys) are never touched per packet.
struct Allocation {
    /// Where an allocation is in its life. It is created `opening` (its sockets asked for, the
    /// success response not sent) and becomes `active` when every socket is open; it leaves the
    /// table when it is deleted, expires or fails to open.
    enum Lifecycle {
        /// Waiting for the shell to open the sockets; the success response goes out once every
        /// socket is open. A retransmitted Allocate is ignored meanwhile.
        case opening(PendingAllocate)
        /// Relaying; requests other than Allocate are served.
        case active(Granted)
    }

    /// What the success response said beyond the addresses, to say it again to a retransmission
    /// that outlived the transaction cache.
    struct Granted {
        var reservationToken: UInt64?
        var addressError: (family: AddressFamily, code: Int)?
    }

    var client: ClientSocket
    /// The username that authenticated the Allocate; later requests must use the same one
    /// (RFC 8656 §5: otherwise "441 (Wrong Credentials)").
    var username: String
    var ipv4: RelaySocket?
    var ipv6: RelaySocket?
    /// The Allocate transaction that created this allocation: a retransmission of it is answered
    /// from the transaction cache, or ignored while the sockets are still being opened.
    var allocateTransaction: TransactionID
    var lifecycle: Lifecycle
    /// UDP (RFC 8656), or TCP (RFC 6062: the relayed addresses listen for and make TCP
    /// connections; no channels, no Send or Data indications).
    var relayTransport: RelayTransport = .udp

    func relay(for family: AddressFamily) -> RelaySocket? {
        family == .ipv4 ? ipv4 : ipv6
    }

    var relays: [RelaySocket] {
        var out: [RelaySocket] = []
        if let ipv4 { out.append(ipv4) }
        if let ipv6 { out.append(ipv6) }
        return out
    }

    var relayCount: Int { (ipv4 == nil ? 0 : 1) + (ipv6 == nil ? 0 : 1) }

    var isActive: Bool {
        if case .active = lifecycle { return true }
        return false
    }

    var pending: PendingAllocate? {
        if case .opening(let pending) = lifecycle { return pending }
        return nil
    }

    /// When the last relayed address expires.
    var expiresAt: Instant { max(ipv4?.expiresAt ?? Instant(nanoseconds: 0), ipv6?.expiresAt ?? Instant(nanoseconds: 0)) }

    /// The relayed address of `family`, modified in place.
    mutating func withRelay<R>(_ family: AddressFamily, _ body: (inout RelaySocket) -> R) -> R? {
        if family == .ipv4 {
            guard ipv4 != nil else { return nil }
            return body(&ipv4!)
        }
        guard ipv6 != nil else { return nil }
        return body(&ipv6!)
    }

    mutating func setRelay(_ relay: RelaySocket?, _ family: AddressFamily) {
        if family == .ipv4 { ipv4 = relay } else { ipv6 = relay }
    }

    /// Changes the pending Allocate of an opening allocation (no-op when active).
    mutating func updatePending(_ body: (inout PendingAllocate) -> Void) {
        guard case .opening(var pending) = lifecycle else { return }
        body(&pending)
        lifecycle = .opening(pending)
    }

    /// Sets the time-to-expiry of the relayed addresses of `families` (every one when nil).
    mutating func setExpiry(_ families: [AddressFamily]? = nil, at expiresAt: Instant, timers: inout TimerQueue) {
        for family in families ?? [.ipv4, .ipv6] {
            _ = withRelay(family) { relay in
                relay.expiresAt = expiresAt
                timers.reschedule(relay.timer, at: expiresAt)
            }
        }
    }
}

/// What the Allocate success response needs once the sockets are open.
struct PendingAllocate {
    var transactionID: TransactionID
    var lifetimeSeconds: UInt32
    var reservationToken: UInt64?
    /// RFC 8656 §7.2 step 9: a partial dual-stack success carries ADDRESS-ERROR-CODE.
    var addressError: (family: AddressFamily, code: Int)?
    var signer: ResponseSigner
    /// EVEN-PORT was requested: a retried bind keeps the port even.
    var evenPort: Bool
    /// The port is the one a RESERVATION-TOKEN named: a failed bind is not retried elsewhere
    /// (RFC 8656 §7.2: "the server uses the previously reserved transport address corresponding
    /// to the included token (if it is still available)").
    var usesReservedPort = false
    var timer: TimerID
}

/// Everything an Allocate decided, for `Server.createAllocation`: who, which relayed addresses,
/// and what the success response will say.
struct AllocationPlan {
    var client: ClientSocket
    var username: String
    var transactionID: TransactionID
    var signer: ResponseSigner
    /// The ports chosen (or claimed), one per family.
    var relays: [(family: AddressFamily, port: UInt16)]
    var lifetime: UInt32
    var evenPort: Bool
    /// A RESERVATION-TOKEN named the port.
    var usesReservedPort: Bool
    /// Whose port range the relays' ports belong to.
    var portOwner: RelaySocket.PortOwner
    /// EVEN-PORT with R=1: port N+1 reserved under this token (RFC 8656 §7.2).
    var newReservation: (token: UInt64, port: UInt16)?
    var addressError: (family: AddressFamily, code: Int)?
    var relayTransport: RelayTransport = .udp
}

/// Per allocation socket: which allocation it belongs to. Indexed by
/// `SocketHandle.allocationIndex`, so the peer→client path finds its allocation with an array read.
struct SocketEntry {
    enum State: UInt8 {
        /// Not in use; on the free list.
        case free
        /// Asked to open for `allocation`, no answer yet.
        case opening
        /// Open for `allocation`: datagrams on it are relayed.
        case open
        /// Its allocation let go of it while the open was in flight: the handle is reused only
        /// after the shell answered (and is not on the free list until then).
        case orphaned
    }

    /// Meaningful in `opening` and `open`.
    var allocation: UInt32
    var family: AddressFamily
    var state: State
    var client: ClientSocket

    static let free = SocketEntry(allocation: .max, family: .ipv4, state: .free,
                                  client: ClientSocket(TransportAddress(ip: .v4(.any), port: 0)))
}

/// A permission (RFC 8656 §9): "an IP address and an associated time-to-expiry".
struct Permission {
    var expiresAt: Instant
    var timer: TimerID
}

/// A channel binding (RFC 8656 §12): "a channel number; a transport address (of the peer); and a
/// time-to-expiry timer".
struct Channel {
    var allocation: AllocationID
    var peer: PeerSocket
    /// The allocation socket of the peer's family (fixed for the allocation's life).
    var relayHandle: SocketHandle
    /// That socket's port (fixed too: channels exist only on active allocations). Read only to
    /// build the channel's `ChannelRoute`; it sits in padding, so the entry is no larger.
    var relayPort: UInt16 = 0
    /// False during the 5-minute cooldown after expiry: no data flows, but neither the number nor
    /// the peer can be bound to something else.
    var isBound: Bool
    /// A permission for the peer's IP exists. Kept in step with the permission table (set when one
    /// is installed, cleared when it expires) so the fast path needs no permission lookup.
    var isPermitted: Bool
    /// The peer is not simply allowed by the peer policy: it is on an address of this host
    /// (`Server.PeerAdmission.ownAddress`), so each datagram is relayed only while the peer's port
    /// is a live relay allocation, or a reload's policy no longer admits it. Such a channel is
    /// checked per datagram and never gets a `ChannelRoute`.
    var checksPeer: Bool = false
    /// The peer's IP reaches this host (`PeerPolicy.reachesThisHost`: its own addresses, loopback,
    /// unspecified), even where an operator `allow` admits it without a per-datagram check: the
    /// kernel fast path sends out of an interface, so such a channel never gets a `ChannelRoute`.
    var peerIsLocal: Bool = false
    var expiresAt: Instant
    var timer: TimerID
}

/// The peer→client index entry: the channel a peer is bound to.
struct PeerChannel {
    var number: ChannelNumber
    var isBound: Bool
    /// Mirrors `Channel.isPermitted`.
    var isPermitted: Bool
}

/// A port held back by EVEN-PORT with the R bit (RFC 8656 §7.2: "the relayed transport address
/// with port N+1 is assigned a token and reserved for a future allocation").
struct Reservation {
    var family: AddressFamily
    var port: UInt16
    var timer: TimerID
}

/// Free allocation-socket indices, reused oldest first, so a handle that was just closed is not
/// handed out again at once (a late datagram for the old socket then finds no allocation).
struct SocketFreeList {
    private var items: [Int] = []
    private var head = 0

    var count: Int { items.count - head }

    mutating func push(_ index: Int) { items.append(index) }

    mutating func pop() -> Int? {
        guard head < items.count else { return nil }
        let value = items[head]
        head += 1
        if head > 64 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        return value
    }
}
