/// Every counter and gauge the relay exports, in one fixed list. A worker's snapshot is an array
/// of plain integers indexed by this enum, so publishing and summing never hash a name.
///
/// Names follow Prometheus conventions (`_total` on counters, base units in the name); the same
/// names go to OTLP. Label sets are fixed per name (Prometheus wants one label schema per family).
public enum RelaySeries: Int, CaseIterable, Sendable {
    // Allocations (RelayCore).
    case allocationsActiveIPv4
    case allocationsActiveIPv6
    case allocationsCreated
    case allocationsExpired
    case allocationsDeleted
    case allocationBindFailures

    // Responses by class and error code (RelayCore).
    case responsesSuccess
    case responses300, responses400, responses401, responses403, responses420, responses437, responses438
    case responses440, responses441, responses442, responses443, responses486, responses500, responses508
    case responsesRetransmitted
    case responsesBareChallenges

    // Responses by request method and class (RelayCore; replays from the cache are not in these).
    case responsesBindingSuccess, responsesBindingError
    case responsesAllocateSuccess, responsesAllocateError
    case responsesRefreshSuccess, responsesRefreshError
    case responsesCreatePermissionSuccess, responsesCreatePermissionError
    case responsesChannelBindSuccess, responsesChannelBindError
    case responsesOtherMethodSuccess, responsesOtherMethodError

    // Authentication.
    case nonceChallenges401
    case nonceChallenges438
    case challengesRateLimited

    // Relayed traffic (RelayCore).
    case relayedPacketsClientToPeer
    case relayedPacketsPeerToClient
    case relayedBytesClientToPeer
    case relayedBytesPeerToClient
    case dataIndicationsSent
    case sendIndicationsRelayed

    // Drops, core side.
    case dropSourcePortZero
    case dropUnknownFirstByte
    case dropMalformed
    case dropIgnoredMessage
    case dropNoAllocation
    case dropNoChannel
    case dropNoPermission
    case dropPeerDenied
    case dropRateLimited
    case dropPendingRetransmission
    case dropOutputFull

    // Drops, I/O side (RelayIO workers).
    case dropSendQueueFull
    case dropTransmitBuffersFull
    case dropSocketBufferFull
    case dropTruncated
    case dropMalformedReceive
    case dropGROSegments
    case dropBatchFull
    case dropOversize
    case dropUnknownSocket
    case dropInvalidOutbound

    // I/O (RelayIO workers).
    case ioDatagramsReceived
    case ioBytesReceived
    case ioDatagramsSent
    case ioBytesSent
    case ioSendCalls
    case ioSegmentedSends
    case ioCoalescedReceives
    case ioReceiveRearms
    case ioReceiveBuffersExhausted
    case ioReceiveErrors
    case ioSendErrors
    case ioSegmentationFallbacks
    case ioGSOFallbackDisabled
    case ioGSOFallbackSegmentLowered
    case ioGSOFallbackDestinationRefused
    case ioAllocationSocketsOpen
    case ioAllocationSocketsOpened
    case ioAllocationSocketsFailed

    public enum Kind: Sendable {
        /// Monotonic; summed over workers and exported as a counter.
        case counter
        /// A level; summed over workers and exported as a gauge.
        case gauge
    }

    public var kind: Kind {
        switch self {
        case .allocationsActiveIPv4, .allocationsActiveIPv6, .ioAllocationSocketsOpen: return .gauge
        default: return .counter
        }
    }

    /// The metric name and its labels.
    public var metric: (name: String, labels: [(String, String)]) {
        switch self {
        case .allocationsActiveIPv4: return ("relay_allocations_active", [("family", "ipv4")])
        case .allocationsActiveIPv6: return ("relay_allocations_active", [("family", "ipv6")])
        case .allocationsCreated: return ("relay_allocations_created_total", [])
        case .allocationsExpired: return ("relay_allocations_ended_total", [("reason", "expired")])
        case .allocationsDeleted: return ("relay_allocations_ended_total", [("reason", "deleted")])
        case .allocationBindFailures: return ("relay_allocation_bind_failures_total", [])

        case .responsesSuccess: return Self.response("success", "none")
        case .responses300: return Self.response("error", "300")
        case .responses400: return Self.response("error", "400")
        case .responses401: return Self.response("error", "401")
        case .responses403: return Self.response("error", "403")
        case .responses420: return Self.response("error", "420")
        case .responses437: return Self.response("error", "437")
        case .responses438: return Self.response("error", "438")
        case .responses440: return Self.response("error", "440")
        case .responses441: return Self.response("error", "441")
        case .responses442: return Self.response("error", "442")
        case .responses443: return Self.response("error", "443")
        case .responses486: return Self.response("error", "486")
        case .responses500: return Self.response("error", "500")
        case .responses508: return Self.response("error", "508")
        case .responsesRetransmitted: return ("relay_responses_retransmitted_total", [])
        case .responsesBareChallenges: return ("relay_challenges_bare_total", [])
        case .responsesBindingSuccess: return Self.byMethod("binding", "success")
        case .responsesBindingError: return Self.byMethod("binding", "error")
        case .responsesAllocateSuccess: return Self.byMethod("allocate", "success")
        case .responsesAllocateError: return Self.byMethod("allocate", "error")
        case .responsesRefreshSuccess: return Self.byMethod("refresh", "success")
        case .responsesRefreshError: return Self.byMethod("refresh", "error")
        case .responsesCreatePermissionSuccess: return Self.byMethod("create_permission", "success")
        case .responsesCreatePermissionError: return Self.byMethod("create_permission", "error")
        case .responsesChannelBindSuccess: return Self.byMethod("channel_bind", "success")
        case .responsesChannelBindError: return Self.byMethod("channel_bind", "error")
        case .responsesOtherMethodSuccess: return Self.byMethod("other", "success")
        case .responsesOtherMethodError: return Self.byMethod("other", "error")

        case .nonceChallenges401: return ("relay_nonce_challenges_total", [("code", "401")])
        case .nonceChallenges438: return ("relay_nonce_challenges_total", [("code", "438")])
        case .challengesRateLimited: return ("relay_challenges_rate_limited_total", [])

        case .relayedPacketsClientToPeer: return ("relay_relayed_packets_total", [("direction", "client_to_peer")])
        case .relayedPacketsPeerToClient: return ("relay_relayed_packets_total", [("direction", "peer_to_client")])
        case .relayedBytesClientToPeer: return ("relay_relayed_bytes_total", [("direction", "client_to_peer")])
        case .relayedBytesPeerToClient: return ("relay_relayed_bytes_total", [("direction", "peer_to_client")])
        case .dataIndicationsSent: return ("relay_data_indications_sent_total", [])
        case .sendIndicationsRelayed: return ("relay_send_indications_relayed_total", [])

        case .dropSourcePortZero: return Self.drop("source_port_zero")
        case .dropUnknownFirstByte: return Self.drop("unknown_first_byte")
        case .dropMalformed: return Self.drop("malformed")
        case .dropIgnoredMessage: return Self.drop("ignored_message")
        case .dropNoAllocation: return Self.drop("no_allocation")
        case .dropNoChannel: return Self.drop("no_channel")
        case .dropNoPermission: return Self.drop("no_permission")
        case .dropPeerDenied: return Self.drop("peer_denied")
        case .dropRateLimited: return Self.drop("challenge_rate_limited")
        case .dropPendingRetransmission: return Self.drop("pending_retransmission")
        case .dropOutputFull: return Self.drop("output_full")
        case .dropSendQueueFull: return Self.drop("send_queue_full")
        case .dropTransmitBuffersFull: return Self.drop("transmit_buffers_full")
        case .dropSocketBufferFull: return Self.drop("socket_buffer_full")
        case .dropTruncated: return Self.drop("truncated")
        case .dropMalformedReceive: return Self.drop("malformed_receive")
        case .dropGROSegments: return Self.drop("gro_segments")
        case .dropBatchFull: return Self.drop("batch_full")
        case .dropOversize: return Self.drop("oversize")
        case .dropUnknownSocket: return Self.drop("unknown_socket")
        case .dropInvalidOutbound: return Self.drop("invalid_outbound")

        case .ioDatagramsReceived: return ("relay_io_datagrams_received_total", [])
        case .ioBytesReceived: return ("relay_io_bytes_received_total", [])
        case .ioDatagramsSent: return ("relay_io_datagrams_sent_total", [])
        case .ioBytesSent: return ("relay_io_bytes_sent_total", [])
        case .ioSendCalls: return ("relay_io_send_calls_total", [])
        case .ioSegmentedSends: return ("relay_io_segmented_sends_total", [])
        case .ioCoalescedReceives: return ("relay_io_coalesced_receives_total", [])
        case .ioReceiveRearms: return ("relay_io_receive_rearms_total", [])
        case .ioReceiveBuffersExhausted: return ("relay_io_receive_buffers_exhausted_total", [])
        case .ioReceiveErrors: return ("relay_io_receive_errors_total", [])
        case .ioSendErrors: return ("relay_io_send_errors_total", [])
        case .ioSegmentationFallbacks: return ("relay_io_segmentation_fallbacks_total", [])
        case .ioGSOFallbackDisabled: return ("relay_io_gso_fallbacks_total", [("cause", "gso_refused")])
        case .ioGSOFallbackSegmentLowered: return ("relay_io_gso_fallbacks_total", [("cause", "segment_too_large")])
        case .ioGSOFallbackDestinationRefused: return ("relay_io_gso_fallbacks_total", [("cause", "destination_refused")])
        case .ioAllocationSocketsOpen: return ("relay_io_allocation_sockets_open", [])
        case .ioAllocationSocketsOpened: return ("relay_io_allocation_sockets_opened_total", [])
        case .ioAllocationSocketsFailed: return ("relay_io_allocation_sockets_failed_total", [])
        }
    }

    private static func response(_ cls: String, _ code: String) -> (String, [(String, String)]) {
        ("relay_responses_total", [("class", cls), ("code", code)])
    }

    private static func byMethod(_ method: String, _ cls: String) -> (String, [(String, String)]) {
        ("relay_responses_by_method_total", [("method", method), ("class", cls)])
    }

    private static func drop(_ reason: String) -> (String, [(String, String)]) {
        ("relay_drops_total", [("reason", reason)])
    }
}
