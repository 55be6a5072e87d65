import STUN

/// One relayed transport address of an allocation: an allocation socket the shell opens on the relay
/// address of `family`.
struct RelaySocket {
    var handle: SocketHandle
    var family: AddressFamily
    var port: UInt16
    var isOpen: Bool
    /// Binds tried for this family so far (a failed bind is retried on another port, boundedly).
    var attempts: Int
    /// RFC 8656 §6: "the time-to-expiry for each relayed transport address". A dual allocation's
    /// two addresses are refreshed (and deleted) separately (§8.1).
    var expiresAt: Instant
    var timer: TimerID
    /// The port came from another server's reservation (outside this server's port range): when
    /// this address goes away, the port is given back to the registry for its owner.
    var claimed = false
}

/// An allocation (RFC 8656 §6): "the relayed transport address or addresses; the 5-tuple; the
/// authentication information; the time-to-expiry for each relayed transport address; a list of
/// permissions ...; a list of channel-to-peer bindings".
///
/// The hot path does not read this struct: ChannelData forwarding uses `SocketEntry` and the
/// channel table, so the cold fields here (strings, keys) are never touched per packet.
struct Allocation {
    var client: ClientSocket
    /// The username that authenticated the Allocate; later requests must use the same one
    /// (RFC 8656 §5: otherwise "441 (Wrong Credentials)").
    var username: String
    var ipv4: RelaySocket?
    var ipv6: RelaySocket?
    /// The peers with a permission and the channel numbers in use (bound or cooling down), so
    /// that deleting an allocation touches only its own entries. Bounded by the per-allocation quotas.
    var permissions: Set<IPAddress> = []
    var channels: Set<ChannelNumber> = []
    /// The Allocate transaction that created this allocation: a retransmission of it is answered
    /// from the transaction cache, or ignored while the sockets are still being opened.
    var allocateTransaction: TransactionID
    /// Set while waiting for the shell to open the sockets; the success response goes out once
    /// every socket is open.
    var pending: PendingAllocate?
    /// What the success response said beyond the addresses, to say it again to a retransmission
    /// that outlived the transaction cache.
    var reservationToken: UInt64? = nil
    var addressError: (family: AddressFamily, code: Int)? = nil

    func relay(for family: AddressFamily) -> RelaySocket? {
        family == .ipv4 ? ipv4 : ipv6
    }

    var relays: [RelaySocket] {
        var out: [RelaySocket] = []
        if let ipv4 { out.append(ipv4) }
        if let ipv6 { out.append(ipv6) }
        return out
    }

    var isActive: Bool { pending == nil }

    /// When the last relayed address expires.
    var expiresAt: Instant { relays.map(\.expiresAt).max() ?? Instant(nanoseconds: 0) }

    mutating func setRelay(_ relay: RelaySocket?, _ family: AddressFamily) {
        if family == .ipv4 { ipv4 = relay } else { ipv6 = relay }
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

/// Per allocation socket: which allocation it belongs to. Indexed by
/// `SocketHandle.allocationIndex`, so the peer→client path finds its allocation with an array read.
struct SocketEntry {
    /// `UInt32.max` when the handle is free.
    var allocation: UInt32
    var family: AddressFamily
    var isOpen: Bool
    var client: ClientSocket
    /// Freed while its open was in flight: the handle is reused only after the shell answered.
    var awaitingOpenAnswer = false

    static let free = SocketEntry(allocation: .max, family: .ipv4, isOpen: false,
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
    /// False during the 5-minute cooldown after expiry: no data flows, but neither the number nor
    /// the peer can be bound to something else.
    var isBound: Bool
    /// A permission for the peer's IP exists. Kept in step with the permission table (set when one
    /// is installed, cleared when it expires) so the fast path needs no permission lookup.
    var isPermitted: Bool
    /// The peer is on an address of this host (`Server.PeerAdmission.ownAddress`): each datagram
    /// is relayed only while the peer's port is a live relay allocation.
    var peerIsOwnAddress: Bool = false
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
