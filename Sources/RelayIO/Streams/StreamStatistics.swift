import RelayCore

/// The client transports a stream connection can have.
public enum StreamTransport: Int, Sendable, CaseIterable {
    case tcp = 0
    case tls = 1
    public var label: String { self == .tcp ? "tcp" : "tls" }
}

/// Why a stream connection ended (the `reason` label of `relay_stream_connections_closed_total`).
public enum StreamCloseReason: Int, Sendable, CaseIterable {
    /// The client closed it (end of stream, TLS close_notify).
    case clientClosed = 0
    /// A receive or send failed (reset, broken pipe).
    case error
    /// The stream lost its framing: a first byte that starts no message, a STUN length that is not
    /// a multiple of 4, a missing magic cookie (garbage before the first message included).
    case framing
    /// Part of a message arrived and the rest did not within `--stream-message-timeout` (slowloris).
    case messageTimeout
    /// No message at all within `--stream-idle-timeout`.
    case idleTimeout
    /// The TLS handshake did not finish within `--tls-handshake-timeout`.
    case handshakeTimeout
    /// TLS failed: a bad handshake, an alert from the client, a renegotiation attempt.
    case tlsError
    /// The client did not read what it was sent and its write buffer reached `--stream-write-buffer`.
    case writeBufferFull
    /// The relay stopped.
    case shutdown
    /// A client data connection (RFC 6062) closed because its peer data connection closed, or its
    /// allocation ended.
    case peerClosed

    public var label: String {
        switch self {
        case .clientClosed: "client_closed"
        case .error: "error"
        case .framing: "framing"
        case .messageTimeout: "message_timeout"
        case .idleTimeout: "idle_timeout"
        case .handshakeTimeout: "handshake_timeout"
        case .tlsError: "tls_error"
        case .writeBufferFull: "write_buffer_full"
        case .shutdown: "shutdown"
        case .peerClosed: "peer_closed"
        }
    }
}

/// Why an accepted connection was closed at once.
public enum StreamRejectReason: Int, Sendable, CaseIterable {
    /// `--max-connections` open already.
    case totalLimit = 0
    /// `--max-connections-per-source` open already from its address.
    case perSourceLimit
    /// `--max-tls-handshakes` handshakes in progress already.
    case handshakeLimit
    /// No TLS certificate is loaded.
    case noCertificate

    public var label: String {
        switch self {
        case .totalLimit: "total_limit"
        case .perSourceLimit: "per_source_limit"
        case .handshakeLimit: "handshake_limit"
        case .noCertificate: "no_certificate"
        }
    }
}

/// A worker's stream counters (TURN over TCP and TLS), by transport where it matters.
public struct StreamStatistics: Sendable, Equatable {
    public var accepted = [UInt64](repeating: 0, count: StreamTransport.allCases.count)
    /// [reason][transport]
    public var closed = [[UInt64]](repeating: [0, 0], count: StreamCloseReason.allCases.count)
    public var rejected = [UInt64](repeating: 0, count: StreamRejectReason.allCases.count)
    public var acceptErrors: UInt64 = 0
    public var bytesReceived = [UInt64](repeating: 0, count: 2)
    public var bytesSent = [UInt64](repeating: 0, count: 2)
    public var messagesReceived = [UInt64](repeating: 0, count: 2)
    /// Messages whose framed size exceeded the largest the relay takes; skipped, the connection kept.
    public var oversizeMessages: UInt64 = 0
    /// Messages for a client dropped because its write buffer was full (backpressure).
    public var droppedWriteBufferFull: UInt64 = 0
    /// Messages for a connection that had closed.
    public var droppedClosed: UInt64 = 0
    /// TLS handshakes completed, and failed (any reason, timeouts included).
    public var handshakesCompleted: UInt64 = 0
    public var handshakeFailures: UInt64 = 0
    /// Gauges.
    public var open = [Int](repeating: 0, count: 2)
    public var handshakesInProgress = 0
    /// Bytes held for connections now: partial messages and unsent output.
    public var bufferedBytes = 0
    /// TCP allocations' peer data connections (RFC 6062): open now (gauge), and bytes received
    /// from and sent to peers.
    public var peerConnectionsOpen = 0
    public var peerBytesReceived: UInt64 = 0
    public var peerBytesSent: UInt64 = 0
    /// Outgoing peer connections that could not be started (socket, bind, connect refused at once).
    public var peerConnectErrors: UInt64 = 0
    /// Times a spliced connection stopped reading because its partner's output was full.
    public var splicePauses: UInt64 = 0
    /// Client connections passed to another worker (their ConnectionBind names a peer data
    /// connection there), and taken over from one.
    public var connectionsMovedOut: UInt64 = 0
    public var connectionsMovedIn: UInt64 = 0

    public init() {}

    public func closed(_ reason: StreamCloseReason, _ transport: StreamTransport) -> UInt64 {
        closed[reason.rawValue][transport.rawValue]
    }
}

extension MetricFamily {
    static let streamAccepted = MetricFamily(
        "relay_stream_connections_accepted_total", .counter, labels: ["transport"],
        help: "Client connections accepted (TURN over TCP and TLS).")
    static let streamClosed = MetricFamily(
        "relay_stream_connections_closed_total", .counter, labels: ["transport", "reason"],
        help: "Client connections closed, by transport and reason (client_closed, error, framing, message_timeout, idle_timeout, handshake_timeout, tls_error, write_buffer_full, shutdown).")
    static let streamRejected = MetricFamily(
        "relay_stream_connections_rejected_total", .counter, labels: ["reason"],
        help: "Client connections closed at once on accept: total_limit, per_source_limit, handshake_limit, no_certificate.")
    static let streamOpen = MetricFamily(
        "relay_stream_connections_open", .gauge, labels: ["transport"], help: "Client connections open.")
    static let streamBytes = MetricFamily(
        "relay_stream_bytes_total", .counter, labels: ["transport", "direction"],
        help: "Bytes on client connections as on the wire (TLS records included), received and sent.")
    static let streamMessages = MetricFamily(
        "relay_stream_messages_received_total", .counter, labels: ["transport"],
        help: "STUN and ChannelData messages framed from client connections.")
    static let streamHandshakes = MetricFamily(
        "relay_tls_handshakes_total", .counter, labels: ["result"], help: "TLS handshakes completed and failed.")
    static let streamHandshakesInProgress = MetricFamily(
        "relay_tls_handshakes_in_progress", .gauge, help: "TLS handshakes in progress.")
    static let peerConnectionsOpen = MetricFamily(
        "relay_tcp_peer_connections_open", .gauge,
        help: "TCP allocations (RFC 6062): peer data connections open (connected or accepted, bound or waiting for ConnectionBind).")
    static let peerBytes = MetricFamily(
        "relay_tcp_peer_bytes_total", .counter, labels: ["direction"],
        help: "TCP allocations: bytes received from and sent to peers over peer data connections.")
    static let peerConnectErrors = MetricFamily(
        "relay_tcp_peer_connect_errors_total", .counter,
        help: "TCP allocations: outgoing peer connections that could not even be started (socket, bind or connect refused at once).")
    static let splicePauses = MetricFamily(
        "relay_tcp_splice_pauses_total", .counter,
        help: "TCP allocations: times one side of a data connection pair stopped being read because the other side's write buffer was full.")
    static let streamMoved = MetricFamily(
        "relay_stream_connections_moved_total", .counter, labels: ["direction"],
        help: "Client connections moved between workers: an RFC 6062 ConnectionBind naming a peer data connection another worker holds (out), taken over (in).")
    static let streamBuffered = MetricFamily(
        "relay_stream_buffered_bytes", .gauge, help: "Bytes held for client connections: partial messages and unsent output.")
}

extension StreamStatistics {
    static var metrics: [MetricSeries<WorkerStatistics>] {
        typealias F = MetricFamily
        var m: [MetricSeries<WorkerStatistics>] = []
        for t in StreamTransport.allCases {
            m.append(F.streamAccepted.series(t.label, value: { $0.streams.accepted[t.rawValue] }))
            m.append(F.streamOpen.series(t.label, value: { $0.streams.open[t.rawValue] }))
            m.append(F.streamBytes.series(t.label, "received", value: { $0.streams.bytesReceived[t.rawValue] }))
            m.append(F.streamBytes.series(t.label, "sent", value: { $0.streams.bytesSent[t.rawValue] }))
            m.append(F.streamMessages.series(t.label, value: { $0.streams.messagesReceived[t.rawValue] }))
            for r in StreamCloseReason.allCases {
                m.append(F.streamClosed.series(t.label, r.label, value: { $0.streams.closed[r.rawValue][t.rawValue] }))
            }
        }
        for r in StreamRejectReason.allCases {
            m.append(F.streamRejected.series(r.label, value: { $0.streams.rejected[r.rawValue] }))
        }
        m.append(F.streamHandshakes.series("completed", value: { $0.streams.handshakesCompleted }))
        m.append(F.streamHandshakes.series("failed", value: { $0.streams.handshakeFailures }))
        m.append(F.streamHandshakesInProgress.series(value: { $0.streams.handshakesInProgress }))
        m.append(F.streamBuffered.series(value: { $0.streams.bufferedBytes }))
        m.append(F.peerConnectionsOpen.series(value: { $0.streams.peerConnectionsOpen }))
        m.append(F.peerBytes.series("received", value: { $0.streams.peerBytesReceived }))
        m.append(F.peerBytes.series("sent", value: { $0.streams.peerBytesSent }))
        m.append(F.peerConnectErrors.series(value: { $0.streams.peerConnectErrors }))
        m.append(F.splicePauses.series(value: { $0.streams.splicePauses }))
        m.append(F.streamMoved.series("out", value: { $0.streams.connectionsMovedOut }))
        m.append(F.streamMoved.series("in", value: { $0.streams.connectionsMovedIn }))
        m.append(F.drops.series("stream_oversize_message", value: { $0.streams.oversizeMessages }))
        m.append(F.drops.series("stream_write_buffer_full", value: { $0.streams.droppedWriteBufferFull }))
        m.append(F.drops.series("stream_closed", value: { $0.streams.droppedClosed }))
        return m
    }
}
