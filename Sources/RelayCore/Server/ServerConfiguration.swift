import STUN

/// Everything the core needs to know at construction. Every limit an authenticated client can push
/// against is here, so every table the core keeps is bounded by configuration.
public struct ServerConfiguration: Sendable {
    /// The addresses clients are told their relayed transport addresses live on (XOR-RELAYED-ADDRESS).
    /// A family without an address is not offered (RFC 8656 §7.2 step 7: 440).
    public var relayAddressIPv4: IPv4Address?
    public var relayAddressIPv6: IPv6Address?
    /// Allocation ports are chosen from this range.
    public var portRange: ClosedRange<UInt16> = 49152...65535
    /// The ports the relay listens on for clients, every transport and family (the shell sets
    /// them). A peer on an address of this host at one of these ports is never admitted: a client
    /// must not reach the relay's own listener through an allocation (TURN inside TURN).
    public var listenerPorts: [UInt16] = []
    /// Addresses of this host beyond the relay addresses (its interfaces, its bind addresses).
    /// They are treated as the relay's own (`PeerPolicy.relayAddresses`): a peer there is admitted
    /// only at a live relay port, unless an operator `allow` names it. Loopback and unspecified
    /// addresses always count as this host's.
    public var localAddresses: [IPAddress] = []
    public var realm: String = "turn-relay"
    /// SOFTWARE in responses to authenticated requests; nil sends none. Unauthenticated responses
    /// never carry it unless `softwareInUnauthenticatedResponses` (hardening notes §4.2.3: keep
    /// unauthenticated responses no larger than requests).
    public var software: String? = nil
    public var softwareInUnauthenticatedResponses: Bool = false
    /// Accept RFC 5766's channel numbers 0x4000-0x7FFF instead of RFC 8656's 0x4000-0x4FFF, in
    /// ChannelBind and when demultiplexing ChannelData (first bytes 0x40-0x7F). Off by default:
    /// RFC 8656 §12 "0x5000 through 0xFFFF: Reserved (For DTLS-SRTP multiplexing collision
    /// avoidance, see [RFC7983])". For clients that still draw from RFC 5766 §11's "0x4000
    /// through 0x7FFF" (coturn's turnutils_uclient), on a port that carries no DTLS or RTP.
    public var rfc5766ChannelNumbers: Bool = false

    // MARK: Authentication and peers

    /// Long-term credentials (RFC 8489 §9.2): static users, TURN REST secrets, Firezone secrets.
    public var credentials = CredentialStore()
    /// Which peers may be reached (SSRF defence). The relay addresses above are added to its
    /// `relayAddresses`, so two clients of this relay can always reach each other (hairpin).
    public var peerPolicy = PeerPolicy()
    /// RFC 8489 §9.2: nonces are stateless (timestamp + HMAC) and go stale after this; then 438.
    public var nonceLifetime: UInt64 = 600
    /// Advertise PASSWORD-ALGORITHMS (MD5 and SHA-256) in challenges (RFC 8489 §9.2.1 nonce cookie).
    public var advertisePasswordAlgorithms = true

    // MARK: Lifetimes (seconds)

    /// RFC 8656 §6: "the default lifetime value of 600 seconds (10 minutes)".
    public var defaultLifetime: UInt32 = 600
    /// RFC 8656 §7.2: "It is RECOMMENDED that the server use a maximum allowed lifetime value of no
    /// more than 3600 seconds (1 hour)."
    public var maxLifetime: UInt32 = 3600
    /// How long an Allocate may wait for the shell to open its sockets before it is abandoned.
    public var socketOpenTimeout: UInt64 = 10
    /// RFC 8656 §7.2: "The server MUST hold this reservation for at least 30 seconds".
    public var reservationLifetime: UInt64 = 30
    /// RFC 8656 §9: "The Permission Lifetime MUST be 300 seconds (= 5 minutes)." Another value
    /// is non-standard (coturn's `permission-lifetime`: "for test purposes"): for tests and special
    /// deployments only.
    public var permissionLifetime: UInt64 = 300
    /// RFC 8656 §12: "A channel binding lasts for 10 minutes unless refreshed." Another value is
    /// non-standard, like `permissionLifetime`.
    public var channelLifetime: UInt64 = 600
    /// How long an expired channel stays reserved (number and peer not rebindable to anything
    /// else). RFC 8656 §12: "the client MUST wait 5 minutes after the channel binding expires
    /// before attempting to bind the channel number to a different transport address". The RFC's
    /// 5 minutes are half its 10-minute binding; a shortened binding keeps that ratio (at least
    /// 1 s) so a test lifetime does not hold entries for minutes, and a binding of 10 minutes or
    /// more keeps the RFC's 5 minutes, the wait the client itself observes.
    public var channelCooldown: UInt64 { min(300, max(1, channelLifetime / 2)) }
    /// RFC 8489 §6.3.4: responses are remembered for 40 s (Ti, the transaction timeout) so that
    /// retransmissions get the same answer.
    public var transactionLifetime: UInt64 = 40

    // MARK: Quotas

    /// RFC 8656 §7.2 step 10: 486 when a username exceeds this. Counted by the server's
    /// `AllocationQuota`: across every server of the process when they share one (the relay's
    /// workers do, `TURNServerFactory`), else this server's own.
    public var maxAllocationsPerUsername: Int = 10
    /// All allocations, counted like `maxAllocationsPerUsername`; above it Allocate gets 508.
    public var maxAllocations: Int = 10_000
    /// CreatePermission/ChannelBind beyond this per allocation get 508.
    public var maxPermissionsPerAllocation: Int = 128
    public var maxChannelsPerAllocation: Int = 128
    /// Outstanding EVEN-PORT reservations made by this server (coturn CVE-2026-73215: reservations
    /// must not exhaust the port pool). The process-wide registry the workers share is bounded by
    /// the same number (`SharedReservationRegistry(capacity:)`); either limit gives 508.
    public var maxReservations: Int = 256
    /// Outstanding EVEN-PORT reservations per username, process-wide (RFC 8656 §7.2: "the server
    /// ... SHOULD define it based on the username"): beyond it an EVEN-PORT Allocate with R=1 gets
    /// 486, so one user cannot hold the shared registry full and starve the others (each
    /// reservation outlives its allocation by 30 s). The same number as
    /// `maxAllocationsPerUsername` unless set.
    public var maxReservationsPerUsername: Int? = nil
    /// Binds tried per family before an Allocate fails with 508.
    public var maxBindAttempts: Int = 4
    /// Entries of the retransmission cache.
    public var transactionCacheSize: Int = 4096
    /// 401/438 responses per source IP per second; above it requests are dropped silently.
    public var challengesPerSecondPerSource: Int = 10
    /// 401/438 responses a quiet source may receive at once before that rate applies (many
    /// clients behind one NAT address joining together); nil: the rate per second.
    public var challengeBurstPerSource: Int? = nil
    /// Slots of the fixed-size table behind that limit.
    public var challengeLimiterTableSize: Int = 4096

    // MARK: TCP allocations (RFC 6062)

    /// Serve REQUESTED-TRANSPORT TCP (RFC 6062): a relayed TCP address, Connect, ConnectionBind,
    /// ConnectionAttempt. Off: such an Allocate gets 442 (Unsupported Transport Protocol), as any
    /// transport the server does not offer (RFC 6062 §5.1 leaves it to "local policy").
    public var tcpAllocations: Bool = true
    /// Peer data connections (connecting, waiting for their ConnectionBind, or bound) per TCP
    /// allocation; a Connect beyond it gets 508, an incoming peer connection is closed.
    public var maxTCPConnectionsPerAllocation: Int = 32
    /// RFC 6062 §5.2: "If the connection attempt fails or times out, the server MUST return a 447
    /// (Connection Timeout or Failure) error. The timeout value MUST be at least 30 seconds."
    public var tcpConnectTimeout: UInt64 = 30
    /// RFC 6062 §5.2/§5.3: "If no ConnectionBind request associated with this peer data
    /// connection is received after 30 seconds, the peer data connection MUST be closed."
    public var tcpConnectionBindTimeout: UInt64 = 30
    /// The top 8 bits of every CONNECTION-ID this server hands out: the worker it runs on, so that
    /// a ConnectionBind arriving at another worker (its connection was accepted there) is passed
    /// to the one that holds the peer data connection.
    public var connectionIDWorker: UInt8 = 0

    // MARK: Kernel fast path

    /// Emit `RouteChange`s in the outbound batch (the shell has attached the XDP fast path).
    /// Off by default: without a fast path the core keeps no route bookkeeping.
    public var emitsChannelRoutes: Bool = false

    // MARK: Draining

    /// While draining, Allocate gets 300 (Try Alternate) with this ALTERNATE-SERVER when set,
    /// else 508 (Insufficient Capacity).
    public var alternateServer: TransportAddress? = nil

    public init(relayAddressIPv4: IPv4Address? = nil, relayAddressIPv6: IPv6Address? = nil) {
        self.relayAddressIPv4 = relayAddressIPv4
        self.relayAddressIPv6 = relayAddressIPv6
    }

    func relayAddress(_ family: AddressFamily) -> IPAddress? {
        switch family {
        case .ipv4: return relayAddressIPv4.map { .v4($0) }
        case .ipv6: return relayAddressIPv6.map { .v6($0) }
        }
    }
}
