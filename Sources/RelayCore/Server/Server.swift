import STUN

/// The TURN server (RFC 8656 over RFC 8489) as a pure state machine. No I/O: the shell feeds it
/// batches of received datagrams and timer ticks and carries out what it writes into an
/// `OutboundBatch` (datagrams and socket requests).
///
/// ```
///  process(batch) ──▶ per datagram, by socket and first byte:
///     allocation socket ──▶ peer datagram: permission? ─▶ channel bound? ─▶ ChannelData (in place)
///                                                        └─▶ Data indication (in place)
///     listener, 0x40–0x4F ──▶ ChannelData: channel bound? permission? ─▶ to peer (in place)
///     listener, 0x00–0x03 ──▶ STUN: request ─▶ retransmission? ─▶ auth ─▶ method handler ─▶ response
///                                   Send indication ─▶ to peer (in place)
///  socketOpened ──▶ pending Allocate complete? ─▶ success response (or another port, or 508)
///  handleTimeout ──▶ expire allocations, permissions, channels, reservations, pending Allocates
/// ```
///
/// "In place" means the outbound datagram points into the received buffer (origin `.received`):
/// headers go into the buffer's headroom, padding into its tailroom, the payload is not copied.
/// Responses are encoded into the batch's arena.
///
/// Every table is bounded by `ServerConfiguration` and nothing is remembered for a request that
/// did not authenticate (nonces are stateless; the 401/438 limiter is a fixed-size table).
public final class Server {
    public private(set) var configuration: ServerConfiguration
    public internal(set) var statistics = ServerStatistics()
    /// True after `drain()`: existing allocations keep working, new ones are refused.
    public private(set) var isDraining = false
    /// `configuration.rfc5766ChannelNumbers`, and the highest channel number it admits (0x4FFF or
    /// 0x7FFF), read on the fast path.
    let rfc5766ChannelNumbers: Bool
    let highestChannelNumber: UInt16

    var random: any RandomNumberGenerator
    var timers = TimerQueue()
    var ports: PortAllocator
    var transactions: TransactionCache

    /// Allocations with their client index, per-username counts and socket entries.
    var allocations = AllocationTable()
    /// Permissions and channel bindings, with the indices the fast paths read (channels keyed by
    /// the client's 5-tuple and by peer, seeded from `random`: see `KeyedTable`).
    var peers: PeerTable
    /// The peer data connections of TCP allocations (RFC 6062), by CONNECTION-ID.
    var tcpConnections = TCPConnectionTable()
    /// The reservations this server made (it owns their ports), by token.
    var reservations: [UInt64: Reservation] = [:]
    /// Where reservation tokens are registered and claimed: shared by the servers of one process
    /// (`ReservationRegistry`), consulted on the Allocate slow path only.
    let reservationRegistry: any ReservationRegistry
    let registryMember: Int
    /// `maxAllocations` and `maxAllocationsPerUsername`, counted across the servers of the process
    /// (`AllocationQuota`), consulted on the Allocate slow path and when an allocation ends.
    let allocationQuota: any AllocationQuota
    /// The live allocation ports of the whole process (shared by its servers): the only ports at
    /// which a peer on this host's own address is admitted.
    let liveRelayPorts: LiveRelayPorts
    /// Ports claimed from another server's reservation whose allocation has ended: given back to
    /// the registry by the `.giveBackClaimedPorts` timer, i.e. on a later call, after the shell has
    /// closed their sockets (it carries out a batch's socket requests before calling the core
    /// again), so that the owner can never bind a port whose old socket is still open.
    var claimedPortsToGiveBack: [(port: UInt16, family: AddressFamily)] = []

    var nonces: NonceAuthority
    /// HMAC states of the long-term keys that recently verified a request (see `CredentialKeyCache`).
    var credentialKeys: CredentialKeyCache
    /// The nonce each recently authenticated client last presented (see `ValidatedNonceCache`).
    var validatedNonces: ValidatedNonceCache
    var challengeLimiter: ChallengeRateLimiter
    var peerPolicy: PeerPolicy
    /// RFC 8489 §14.4 USERHASH → username, for the static users (time-limited usernames cannot be
    /// recovered from their hash: their set is not enumerable).
    var usernameByUserhash: [[UInt8]: String] = [:]

    /// `reservationRegistry`: the registry shared with the other servers of the process (one per
    /// worker); nil gives this server a registry of its own (`configuration.maxReservations`).
    /// `allocationQuota`: the allocation counts shared with the other servers of the process; nil
    /// gives this server counts of its own (then `maxAllocations` and `maxAllocationsPerUsername`
    /// are this server's alone).
    /// `liveRelayPorts`: shared with the other servers of the process; nil gives this server its own.
    public init(configuration: ServerConfiguration, random: any RandomNumberGenerator, now: Instant,
                reservationRegistry: (any ReservationRegistry)? = nil, allocationQuota: (any AllocationQuota)? = nil,
                liveRelayPorts: LiveRelayPorts? = nil) {
        self.configuration = configuration
        self.allocationQuota = allocationQuota ?? UnsharedAllocationQuota()
        self.liveRelayPorts = liveRelayPorts ?? LiveRelayPorts()
        let registry = reservationRegistry ?? UnsharedReservationRegistry(capacity: configuration.maxReservations)
        self.reservationRegistry = registry
        registryMember = registry.join()
        rfc5766ChannelNumbers = configuration.rfc5766ChannelNumbers
        highestChannelNumber = configuration.rfc5766ChannelNumbers ? ChannelNumber.validRFC5766.upperBound : ChannelNumber.valid.upperBound
        self.random = random
        ports = PortAllocator(range: configuration.portRange)
        transactions = TransactionCache(capacity: configuration.transactionCacheSize,
                                        lifetimeSeconds: configuration.transactionLifetime)
        var key: [UInt8] = []
        key.reserveCapacity(32)
        for _ in 0..<4 {
            let word = self.random.next()
            for shift in stride(from: 0, to: 64, by: 8) { key.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        nonces = NonceAuthority(key: key, lifetimeSeconds: configuration.nonceLifetime,
                                advertisePasswordAlgorithms: configuration.advertisePasswordAlgorithms)
        challengeLimiter = ChallengeRateLimiter(perSecond: configuration.challengesPerSecondPerSource,
                                                burst: configuration.challengeBurstPerSource,
                                                tableSize: configuration.challengeLimiterTableSize,
                                                seed: self.random.next())
        peerPolicy = Self.effectivePolicy(configuration)
        usernameByUserhash = Self.userhashIndex(configuration)
        let channelSeed = self.random.next()
        peers = PeerTable(channelSeed: channelSeed, peerSeed: self.random.next(), tracksRoutes: configuration.emitsChannelRoutes)
        credentialKeys = CredentialKeyCache(seed: self.random.next())
        validatedNonces = ValidatedNonceCache(seed: self.random.next())
    }

    /// Processes a batch of received datagrams.
    public func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch) {
        for datagram in inbound {
            process(datagram, now: now, into: out)
        }
    }

    /// The shell's answer to a `SocketRequest.open`.
    public func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch) {
        handleSocketOpened(handle, result: result, now: now, out: out)
    }

    /// The shell closed (or lost) the stream connection `handle` (TCP or TLS), whose client is at
    /// `client`. The allocation made over it ends now, with its permissions, channels and relayed
    /// addresses: RFC 8656 names an allocation by its 5-tuple, whose transport here is that
    /// connection, so no later request can name it, and nothing could reach the client to relay to.
    ///
    /// A peer or client data connection of a TCP allocation (RFC 6062) ends its pair instead.
    public func connectionClosed(_ handle: SocketHandle, client: TransportAddress, now: Instant, into out: OutboundBatch) {
        guard handle.isConnection, !dataConnectionClosed(handle, out: out), let id = allocations.id(of: ClientSocket(client, receivedOn: handle)) else { return }
        deleteAllocation(id, now: now, out: out)
        statistics.allocationsEndedByConnectionClose &+= 1
    }

    /// Expires allocations, permissions, channels and reservations due at or before `now`.
    public func handleTimeout(now: Instant, into out: OutboundBatch) {
        while let target = timers.popExpired(now: now) {
            expire(target, now: now, out: out)
        }
    }

    /// The earliest instant at which `handleTimeout` has work, or nil.
    public func nextTimeout() -> Instant? { timers.nextDeadline }

    /// Stops accepting new allocations; existing ones keep relaying, refreshing and binding until
    /// they expire or are deleted. Allocate gets 300 (Try Alternate) when `alternateServer` is
    /// configured (RFC 8656 §7.2 step 11), else 508 (Insufficient Capacity).
    public func drain() { isDraining = true }

    /// Replaces the credentials and the peer policy (e.g. on SIGHUP). Existing allocations stay;
    /// their next request authenticates against the new credentials. The new policy applies to
    /// existing permissions and channels at once (`enforcePeerPolicy`): permissions to peers it
    /// denies are revoked, and the routes that stop being usable go down in `out`.
    public func reload(credentials: CredentialStore, peerPolicy policy: PeerPolicy, now: Instant, into out: OutboundBatch) {
        configuration.credentials = credentials
        // A cached key may come from a password or secret that is gone now.
        credentialKeys.removeAll()
        configuration.peerPolicy = policy
        peerPolicy = Self.effectivePolicy(configuration)
        usernameByUserhash = Self.userhashIndex(configuration)
        enforcePeerPolicy(out: out)
    }

    /// Live allocations (including ones waiting for their sockets).
    public var allocationCount: Int { allocations.count }

    /// The routes up now: every `.up` emitted so far without its `.down`, in no particular order
    /// (empty unless `configuration.emitsChannelRoutes`). For a shell that has to rebuild its maps
    /// (it re-attached its fast path, or retries routes a full map refused); it costs a copy, so
    /// not per batch.
    public var channelRoutes: [ChannelRoute] { peers.routesUp }

    public var tableSizes: ServerTableSizes {
        var sizes = ServerTableSizes()
        sizes.allocations = allocations.slotCount
        sizes.allocationsByClient = allocations.count
        sizes.usernames = allocations.usernameCount
        sizes.permissions = peers.permissionCount
        sizes.channels = peers.channelCount
        sizes.channelsByPeer = peers.channelByPeerCount
        sizes.sockets = allocations.socketCount
        sizes.reservations = reservations.count
        sizes.timers = timers.count
        sizes.transactionCache = transactions.count
        sizes.tcpConnections = tcpConnections.count
        return sizes
    }

    // MARK: - Demultiplexing

    @inline(__always)
    func process(_ datagram: InboundDatagram, now: Instant, into out: OutboundBatch) {
        // Scanners send from port 0; no reply can reach it (and sendmsg fails with EINVAL).
        guard datagram.source.port != 0 else {
            statistics.drops.sourcePortZero &+= 1
            return
        }
        if let index = datagram.socket.allocationIndex {
            relayFromPeer(datagram, socketIndex: index, now: now, out: out)
            return
        }
        guard datagram.length > 0 else {
            statistics.drops.malformed &+= 1
            return
        }
        // RFC 8656 §12, Table 3: "[0..3] STUN", "[64..79] TURN Channel", "Others: Reserved; MUST be
        // dropped". With `rfc5766ChannelNumbers`, [64..127] (RFC 5766 §11's 0x4000-0x7FFF).
        switch DatagramKind(firstByte: datagram.bytes.load(as: UInt8.self), rfc5766Channels: rfc5766ChannelNumbers) {
        case .channelData: relayFromClient(datagram, out: out)
        case .stun: handleSTUN(datagram, now: now, out: out)
        case .other: statistics.drops.unknownFirstByte &+= 1
        }
    }

    // MARK: - Fast path

    /// ChannelData from a client: forward `bytes[4..<4+length]` from the received buffer to the
    /// peer, from the allocation socket of the peer's family.
    ///
    /// RFC 8656 §12.6: "If the ChannelData message is received on a channel that is not bound to
    /// any peer, then the message is silently discarded." and "the receipt of a ChannelData message
    /// MUST NOT refresh either the channel binding or the permission towards the peer."
    @inline(__always)
    func relayFromClient(_ datagram: InboundDatagram, out: OutboundBatch) {
        guard let frame = ChannelData.parse(UnsafeRawBufferPointer(start: datagram.bytes, count: datagram.length),
                                            highestChannel: highestChannelNumber) else {
            statistics.drops.malformed &+= 1
            return
        }
        // One lookup: the channel is keyed by the client's 5-tuple and the channel number.
        let client = ClientSocket(datagram.source, receivedOn: datagram.socket)
        guard let channel = peers.channel(ChannelKey(client: client, number: ChannelNumber(frame.channel))), channel.isBound else {
            if allocations.id(of: client) == nil {
                statistics.drops.noAllocation &+= 1
            } else {
                statistics.drops.noChannel &+= 1
            }
            return
        }
        // A bound channel implies a permission was installed with it, but permissions expire after
        // 300 s unless refreshed (RFC 8656 §12.1: "permissions need to be refreshed more frequently
        // than channels"); relaying needs a live one in both directions.
        guard channel.isPermitted else {
            statistics.drops.noPermission &+= 1
            return
        }
        // A peer on this host's own address only while its port is a live allocation (hairpin).
        if channel.checksPeer && !ownAddressPeerIsLive(channel.peer.address) {
            statistics.drops.peerDenied &+= 1
            return
        }
        let sent = out.append(OutboundDatagram(
            socket: channel.relayHandle, destination: channel.peer.address,
            bytes: UnsafeRawPointer(datagram.bytes + ChannelData.headerLength), length: frame.payloadLength,
            origin: .received(bufferID: datagram.bufferID)))
        guard sent else {
            statistics.drops.outputFull &+= 1
            return
        }
        statistics.clientToPeer.packets &+= 1
        statistics.clientToPeer.bytes &+= frame.payloadLength
    }

    /// A datagram from a peer on an allocation socket. RFC 8656 §11.3: permission check first,
    /// then "If a channel is bound, then processing proceeds as described in Section 12.7"
    /// (ChannelData, written into the headroom in front of the payload: no copy), else "the
    /// server forms and sends a Data indication".
    @inline(__always)
    func relayFromPeer(_ datagram: InboundDatagram, socketIndex: Int, now: Instant, out: OutboundBatch) {
        guard let entry = allocations.openSocket(at: socketIndex) else {
            statistics.drops.noAllocation &+= 1
            return
        }
        let allocation = AllocationID(index: entry.allocation)
        let peer = PeerSocket(datagram.source)
        // RFC 8656 §6: "a list of permissions for each relayed transport address". Permissions
        // are keyed by IP, so the family check keeps them per relayed address.
        // RFC 8656 §9: "If no match is found, relaying is not permitted and the server silently
        // discards the UDP datagram."
        guard peer.address.family == entry.family else {
            statistics.drops.noPermission &+= 1
            return
        }
        // A peer with a channel carries its permission state in the channel entry: one lookup.
        let channel = peers.peerChannel(PeerChannelKey(allocation: allocation, peer: peer))
        let permitted = channel?.isPermitted ?? peers.hasPermission(PermissionKey(allocation: allocation, peer: peer.address.ip))
        guard permitted else {
            statistics.drops.noPermission &+= 1
            return
        }
        guard let channel, channel.isBound, datagram.length <= Int(UInt16.max) else {
            sendDataIndication(datagram, peer: peer, client: entry.client, out: out)
            return
        }
        let header = datagram.bytes - ChannelData.headerLength
        ChannelData.writeHeader(to: header, channel: channel.number.rawValue, payloadLength: UInt16(datagram.length))
        let sent = out.append(OutboundDatagram(
            socket: entry.client.via, destination: entry.client.address,
            bytes: UnsafeRawPointer(header), length: datagram.length + ChannelData.headerLength,
            origin: .received(bufferID: datagram.bufferID)))
        guard sent else {
            statistics.drops.outputFull &+= 1
            return
        }
        statistics.peerToClient.packets &+= 1
        statistics.peerToClient.bytes &+= datagram.length
    }
}

extension Server {
    /// The per-datagram check of a channel with `checksPeer`: its port is a live relay allocation.
    /// That is the whole of `isPeerAllowed` for such a channel: its IP is not denied (a reload that
    /// denies it revokes the permission, which the fast path checks first), and a port the policy
    /// refuses it at (a listener port, after a reload made the IP this host's) is never a live
    /// relay port (the listener holds it). Out of line: only those channels take it, and inlining
    /// it into the fast path (with the IPv4-mapped canonicalization) cost every ChannelData datagram.
    @inline(never)
    func ownAddressPeerIsLive(_ peer: TransportAddress) -> Bool { isLiveRelayPort(peer) }

    static func effectivePolicy(_ configuration: ServerConfiguration) -> PeerPolicy {
        let own = [configuration.relayAddress(.ipv4), configuration.relayAddress(.ipv6)].compactMap { $0 }
            + configuration.localAddresses
        let policy = configuration.peerPolicy
        return PeerPolicy(allow: policy.allow, deny: policy.deny, relayAddresses: policy.relayAddresses + own)
    }

    static func userhashIndex(_ configuration: ServerConfiguration) -> [[UInt8]: String] {
        var index: [[UInt8]: String] = [:]
        for username in configuration.credentials.staticUsers.keys {
            index[userhash(username: username, realm: configuration.realm)] = username
        }
        return index
    }
}
