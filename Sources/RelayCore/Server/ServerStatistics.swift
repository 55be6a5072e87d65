import STUN

/// Plain counters the shell and metrics read after each batch. Monotonic; never reset by the core.
public struct ServerStatistics: Sendable, Equatable {
    public struct Relay: Sendable, Equatable {
        public var packets = 0
        public var bytes = 0
    }

    /// Why a datagram produced nothing.
    public struct Drops: Sendable, Equatable {
        public var sourcePortZero = 0
        /// First byte neither STUN (0–3) nor ChannelData (0x40–0x4F): RFC 8656 §12 Table 3,
        /// "Reserved; MUST be dropped".
        public var unknownFirstByte = 0
        /// Not a well-formed STUN message or ChannelData frame.
        public var malformed = 0
        /// Responses and indications the server does not act on.
        public var ignoredMessage = 0
        public var noAllocation = 0
        public var noChannel = 0
        public var noPermission = 0
        public var peerDenied = 0
        /// 401/438 over the per-source limit.
        public var challengeRateLimited = 0
        /// A request for an allocation whose sockets are still opening (answered once open).
        public var pendingRetransmission = 0
        /// The outbound batch or its arena was full.
        public var outputFull = 0
    }

    /// Responses sent, by outcome.
    public struct Responses: Sendable, Equatable {
        public var success = 0
        public var tryAlternate300 = 0
        public var badRequest400 = 0
        public var unauthorized401 = 0
        public var forbidden403 = 0
        public var unknownAttribute420 = 0
        public var allocationMismatch437 = 0
        public var staleNonce438 = 0
        public var addressFamilyNotSupported440 = 0
        public var wrongCredentials441 = 0
        public var unsupportedTransport442 = 0
        public var peerAddressFamilyMismatch443 = 0
        /// RFC 6062 §6.3.
        public var connectionAlreadyExists446 = 0
        public var connectionFailure447 = 0
        public var quotaReached486 = 0
        public var serverError500 = 0
        public var insufficientCapacity508 = 0
        /// Replayed from the transaction cache.
        public var retransmitted = 0
        /// 401/438 sent as a bare ERROR-CODE, without REALM and NONCE, because the request was too
        /// small for a full challenge to stay within 3× its size (`Server.respond`).
        public var bareChallenges = 0

        /// One request method's responses by class (RFC 8489 §5: a response is a "success
        /// response" or an "error response").
        public struct ByClass: Sendable, Equatable {
            public var success = 0
            public var error = 0
        }

        /// The same responses (replays from the cache excepted) by the request's method.
        public var binding = ByClass()
        public var allocate = ByClass()
        public var refresh = ByClass()
        public var createPermission = ByClass()
        public var channelBind = ByClass()
        /// RFC 6062.
        public var connect = ByClass()
        public var connectionBind = ByClass()
        /// Any other method (the server answers those 400).
        public var otherMethod = ByClass()
        /// The same responses by the client's transport (`ClientTransport`: udp, tcp, tls).
        public var byTransport = [ByClass](repeating: ByClass(), count: ClientTransport.allCases.count)

        mutating func count(method: STUNMethod, success: Bool, transport: ClientTransport) {
            func bump(_ counts: inout ByClass) {
                if success { counts.success &+= 1 } else { counts.error &+= 1 }
            }
            bump(&byTransport[transport.rawValue])
            switch method {
            case .binding: bump(&binding)
            case .allocate: bump(&allocate)
            case .refresh: bump(&refresh)
            case .createPermission: bump(&createPermission)
            case .channelBind: bump(&channelBind)
            case .connect: bump(&connect)
            case .connectionBind: bump(&connectionBind)
            default: bump(&otherMethod)
            }
        }

        mutating func count(errorCode code: Int) {
            switch code {
            case 300: tryAlternate300 += 1
            case 400: badRequest400 += 1
            case 401: unauthorized401 += 1
            case 403: forbidden403 += 1
            case 420: unknownAttribute420 += 1
            case 437: allocationMismatch437 += 1
            case 438: staleNonce438 += 1
            case 440: addressFamilyNotSupported440 += 1
            case 441: wrongCredentials441 += 1
            case 442: unsupportedTransport442 += 1
            case 443: peerAddressFamilyMismatch443 += 1
            case 446: connectionAlreadyExists446 += 1
            case 447: connectionFailure447 += 1
            case 486: quotaReached486 += 1
            case 508: insufficientCapacity508 += 1
            default: serverError500 += 1
            }
        }
    }

    /// ChannelData client→peer and Send indications.
    public var clientToPeer = Relay()
    /// ChannelData and Data indications peer→client.
    public var peerToClient = Relay()
    public var dataIndicationsSent = 0
    public var sendIndicationsRelayed = 0
    public var drops = Drops()
    public var responses = Responses()
    public var allocationsCreated = 0
    public var allocationsExpired = 0
    public var allocationsDeleted = 0
    /// Allocations ended because the stream connection (TCP/TLS) they were made over closed.
    public var allocationsEndedByConnectionClose = 0
    public var bindFailures = 0
    /// Permissions deleted by a reload whose peer policy denies their peer (`Server.reload`).
    public var permissionsRevokedByPolicy = 0

    /// TCP allocations' peer data connections (RFC 6062).
    public struct TCP: Sendable, Equatable {
        /// Outgoing connections begun for Connect requests.
        public var connectsStarted = 0
        /// ... that connected (Connect success response with CONNECTION-ID).
        public var connectsSucceeded = 0
        /// ... that failed or timed out (447).
        public var connectsFailed = 0
        /// Incoming peer connections announced with a ConnectionAttempt indication.
        public var connectionAttemptsSent = 0
        /// Incoming peer connections closed at once: no permission, the peer policy, the
        /// per-allocation limit, or no TCP allocation behind the listener.
        public var peerConnectionsRefused = 0
        /// ConnectionBind requests that spliced a client data connection to its peer.
        public var connectionsBound = 0
        /// Peer data connections closed because no ConnectionBind came in time.
        public var bindTimeouts = 0
        /// Peer data connections ended (either side closed, timeouts, allocation end).
        public var connectionsClosed = 0
    }
    public var tcp = TCP()
}

/// The size of every table the core keeps, for tests and metrics. Everything here is bounded by
/// `ServerConfiguration`; unauthenticated traffic grows none of it.
public struct ServerTableSizes: Sendable, Equatable {
    public var allocations = 0
    public var allocationsByClient = 0
    public var usernames = 0
    public var permissions = 0
    public var channels = 0
    public var channelsByPeer = 0
    public var sockets = 0
    public var reservations = 0
    public var timers = 0
    public var transactionCache = 0
    /// RFC 6062 peer data connections.
    public var tcpConnections = 0

    public var total: Int {
        allocations + allocationsByClient + usernames + permissions + channels + channelsByPeer
            + sockets + reservations + timers + transactionCache + tcpConnections
    }
}
