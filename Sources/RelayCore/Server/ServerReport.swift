/// What a `Server` reports when its worker publishes: its counters and the gauges read from its
/// tables (`Server.metricsReport`). `metrics` declares every exported series of the core, once.
public struct ServerReport: Sendable, Equatable {
    public var statistics = ServerStatistics()
    /// Allocations whose sockets are open, by relayed address family (a dual-stack allocation
    /// counts once in each).
    public var activeIPv4 = 0
    public var activeIPv6 = 0

    public init() {}

    public init(statistics: ServerStatistics, activeIPv4: Int = 0, activeIPv6: Int = 0) {
        self.statistics = statistics
        self.activeIPv4 = activeIPv4
        self.activeIPv6 = activeIPv6
    }
}

extension MetricFamily {
    static let allocationsActive = MetricFamily(
        "relay_allocations_active", .gauge, labels: ["family"],
        help: "Allocations whose relay sockets are open, by relayed address family (a dual-stack allocation counts in both).")
    static let allocationsCreated = MetricFamily("relay_allocations_created_total", .counter, help: "Allocations created.")
    static let allocationsEnded = MetricFamily(
        "relay_allocations_ended_total", .counter, labels: ["reason"], help: "Allocations ended: expired, deleted by a Refresh with lifetime 0, or ended with the TCP/TLS connection they were made over.")
    static let bindFailures = MetricFamily(
        "relay_allocation_bind_failures_total", .counter, help: "Allocations refused because no relay port could be bound.")
    static let responses = MetricFamily(
        "relay_responses_total", .counter, labels: ["class", "code"], help: "Responses sent, by class and error code (none for successes).")
    static let responsesRetransmitted = MetricFamily(
        "relay_responses_retransmitted_total", .counter, help: "Responses answered from the transaction cache (retransmitted requests).")
    static let challengesBare = MetricFamily(
        "relay_challenges_bare_total", .counter,
        help: "401/438 sent as a bare ERROR-CODE, without REALM and NONCE (request too small for a full challenge within 3× its size).")
    static let responsesByTransport = MetricFamily(
        "relay_responses_by_transport_total", .counter, labels: ["transport", "class"],
        help: "The same responses as relay_responses_by_method_total, by the client's transport: udp, tcp, tls.")
    static let responsesByMethod = MetricFamily(
        "relay_responses_by_method_total", .counter, labels: ["method", "class"],
        help: "The same responses as relay_responses_total (cache replays excepted), by request method and class.")
    static let nonceChallenges = MetricFamily(
        "relay_nonce_challenges_total", .counter, labels: ["code"], help: "Nonce challenges sent: 401 (a NONCE to use) and 438 (a fresh one).")
    static let challengesRateLimited = MetricFamily(
        "relay_challenges_rate_limited_total", .counter, help: "401/438 not sent because the source exceeded its challenge rate.")
    static let relayedPackets = MetricFamily(
        "relay_relayed_packets_total", .counter, labels: ["direction"], help: "Datagrams relayed, by direction.")
    static let relayedBytes = MetricFamily(
        "relay_relayed_bytes_total", .counter, labels: ["direction"], help: "Application bytes relayed, by direction.")
    static let dataIndicationsSent = MetricFamily(
        "relay_data_indications_sent_total", .counter, help: "Peer datagrams sent to clients as Data indications.")
    static let sendIndicationsRelayed = MetricFamily(
        "relay_send_indications_relayed_total", .counter, help: "Send indications relayed to peers.")
    static let tcpConnects = MetricFamily(
        "relay_tcp_connects_total", .counter, labels: ["result"],
        help: "TCP allocations (RFC 6062): outgoing peer connections for Connect requests, started, succeeded, failed or timed out (447).")
    static let tcpPeerConnections = MetricFamily(
        "relay_tcp_peer_connections_total", .counter, labels: ["result"],
        help: "TCP allocations: incoming peer connections announced with ConnectionAttempt, or refused (no permission, peer policy, per-allocation limit).")
    static let tcpConnectionsBound = MetricFamily(
        "relay_tcp_connections_bound_total", .counter, help: "TCP allocations: ConnectionBind requests that joined a client data connection to its peer.")
    static let tcpBindTimeouts = MetricFamily(
        "relay_tcp_bind_timeouts_total", .counter, help: "TCP allocations: peer data connections closed because no ConnectionBind came within the timeout (30 s).")
    static let tcpConnectionsClosed = MetricFamily(
        "relay_tcp_connections_closed_total", .counter, help: "TCP allocations: peer data connections ended (either side closed, a timeout, the allocation ended).")
    static let permissionsRevokedByPolicy = MetricFamily(
        "relay_permissions_revoked_by_policy_total", .counter,
        help: "Permissions deleted by a reload whose peer policy denies their peer (their channels stay bound but relay nothing).")
}

extension ServerReport {
    /// Every series the core exports, in export order.
    public static let metrics: [MetricSeries<ServerReport>] = {
        typealias F = MetricFamily
        var m: [MetricSeries<ServerReport>] = [
            F.allocationsActive.series("ipv4") { $0.activeIPv4 },
            F.allocationsActive.series("ipv6") { $0.activeIPv6 },
            F.allocationsCreated.series { $0.statistics.allocationsCreated },
            F.allocationsEnded.series("expired") { $0.statistics.allocationsExpired },
            F.allocationsEnded.series("deleted") { $0.statistics.allocationsDeleted },
            F.allocationsEnded.series("connection_closed") { $0.statistics.allocationsEndedByConnectionClose },
            F.bindFailures.series { $0.statistics.bindFailures },

            F.responses.series("success", "none") { $0.statistics.responses.success },
            F.responses.series("error", "300") { $0.statistics.responses.tryAlternate300 },
            F.responses.series("error", "400") { $0.statistics.responses.badRequest400 },
            F.responses.series("error", "401") { $0.statistics.responses.unauthorized401 },
            F.responses.series("error", "403") { $0.statistics.responses.forbidden403 },
            F.responses.series("error", "420") { $0.statistics.responses.unknownAttribute420 },
            F.responses.series("error", "437") { $0.statistics.responses.allocationMismatch437 },
            F.responses.series("error", "438") { $0.statistics.responses.staleNonce438 },
            F.responses.series("error", "440") { $0.statistics.responses.addressFamilyNotSupported440 },
            F.responses.series("error", "441") { $0.statistics.responses.wrongCredentials441 },
            F.responses.series("error", "442") { $0.statistics.responses.unsupportedTransport442 },
            F.responses.series("error", "443") { $0.statistics.responses.peerAddressFamilyMismatch443 },
            F.responses.series("error", "446") { $0.statistics.responses.connectionAlreadyExists446 },
            F.responses.series("error", "447") { $0.statistics.responses.connectionFailure447 },
            F.responses.series("error", "486") { $0.statistics.responses.quotaReached486 },
            F.responses.series("error", "500") { $0.statistics.responses.serverError500 },
            F.responses.series("error", "508") { $0.statistics.responses.insufficientCapacity508 },
            F.responsesRetransmitted.series { $0.statistics.responses.retransmitted },
            F.challengesBare.series { $0.statistics.responses.bareChallenges },
        ]
        let methods: [(String, @Sendable (ServerStatistics.Responses) -> ServerStatistics.Responses.ByClass)] = [
            ("binding", { $0.binding }), ("allocate", { $0.allocate }), ("refresh", { $0.refresh }),
            ("create_permission", { $0.createPermission }), ("channel_bind", { $0.channelBind }),
            ("connect", { $0.connect }), ("connection_bind", { $0.connectionBind }),
            ("other", { $0.otherMethod }),
        ]
        for (method, counts) in methods {
            m.append(F.responsesByMethod.series(method, "success") { counts($0.statistics.responses).success })
            m.append(F.responsesByMethod.series(method, "error") { counts($0.statistics.responses).error })
        }
        for transport in ClientTransport.allCases {
            m.append(F.responsesByTransport.series(transport.label, "success") { $0.statistics.responses.byTransport[transport.rawValue].success })
            m.append(F.responsesByTransport.series(transport.label, "error") { $0.statistics.responses.byTransport[transport.rawValue].error })
        }
        m += [
            // RFC 8489 §9.2.4: a 401 carries the NONCE a client must use, a 438 a fresh one; both
            // are the server's nonce challenges.
            F.nonceChallenges.series("401") { $0.statistics.responses.unauthorized401 },
            F.nonceChallenges.series("438") { $0.statistics.responses.staleNonce438 },
            F.challengesRateLimited.series { $0.statistics.drops.challengeRateLimited },

            F.relayedPackets.series("client_to_peer") { $0.statistics.clientToPeer.packets },
            F.relayedPackets.series("peer_to_client") { $0.statistics.peerToClient.packets },
            F.relayedBytes.series("client_to_peer") { $0.statistics.clientToPeer.bytes },
            F.relayedBytes.series("peer_to_client") { $0.statistics.peerToClient.bytes },
            F.dataIndicationsSent.series { $0.statistics.dataIndicationsSent },
            F.sendIndicationsRelayed.series { $0.statistics.sendIndicationsRelayed },

            F.drops.series("source_port_zero") { $0.statistics.drops.sourcePortZero },
            F.drops.series("unknown_first_byte") { $0.statistics.drops.unknownFirstByte },
            F.drops.series("malformed") { $0.statistics.drops.malformed },
            F.drops.series("ignored_message") { $0.statistics.drops.ignoredMessage },
            F.drops.series("no_allocation") { $0.statistics.drops.noAllocation },
            F.drops.series("no_channel") { $0.statistics.drops.noChannel },
            F.drops.series("no_permission") { $0.statistics.drops.noPermission },
            F.drops.series("peer_denied") { $0.statistics.drops.peerDenied },
            F.drops.series("challenge_rate_limited") { $0.statistics.drops.challengeRateLimited },
            F.drops.series("pending_retransmission") { $0.statistics.drops.pendingRetransmission },
            F.drops.series("output_full") { $0.statistics.drops.outputFull },

            F.permissionsRevokedByPolicy.series { $0.statistics.permissionsRevokedByPolicy },

            F.tcpConnects.series("started") { $0.statistics.tcp.connectsStarted },
            F.tcpConnects.series("succeeded") { $0.statistics.tcp.connectsSucceeded },
            F.tcpConnects.series("failed") { $0.statistics.tcp.connectsFailed },
            F.tcpPeerConnections.series("announced") { $0.statistics.tcp.connectionAttemptsSent },
            F.tcpPeerConnections.series("refused") { $0.statistics.tcp.peerConnectionsRefused },
            F.tcpConnectionsBound.series { $0.statistics.tcp.connectionsBound },
            F.tcpBindTimeouts.series { $0.statistics.tcp.bindTimeouts },
            F.tcpConnectionsClosed.series { $0.statistics.tcp.connectionsClosed },
        ]
        return m
    }()
}
