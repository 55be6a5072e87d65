import RelayCore

/// Counters of one worker. Every drop has its own counter.
public struct WorkerStatistics: Sendable, Equatable {
    public var datagramsReceived: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Receives the kernel coalesced (UDP_GRO) and the worker split.
    public var coalescedReceives: UInt64 = 0
    public var datagramsSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    public var sendCalls: UInt64 = 0
    /// sendmsg calls that carried a UDP_SEGMENT cmsg.
    public var segmentedSends: UInt64 = 0
    /// Multishot receives re-armed after ending (no F_MORE).
    public var receiveRearms: UInt64 = 0
    /// Multishot receives that ended because every buffer was held (ENOBUFS).
    public var receiveBuffersExhausted: UInt64 = 0
    public var droppedTruncated: UInt64 = 0
    public var droppedMalformedReceive: UInt64 = 0
    public var droppedGROSegments: UInt64 = 0
    public var droppedSendQueueFull: UInt64 = 0
    public var droppedTransmitBuffersFull: UInt64 = 0
    /// Datagrams the kernel refused with EAGAIN/ENOBUFS because the socket's send buffer was full.
    public var droppedSocketBufferFull: UInt64 = 0
    public var droppedOversize: UInt64 = 0
    public var droppedUnknownSocket: UInt64 = 0
    public var droppedInvalidOutbound: UInt64 = 0
    public var droppedBatchFull: UInt64 = 0
    public var sendErrors: UInt64 = 0
    public var lastSendErrno: Int32 = 0
    public var receiveErrors: UInt64 = 0
    /// io_uring: reaps that found the kernel holding completions the completion queue had no room
    /// for (a worker that fell behind by more than the queue holds), and completions the kernel
    /// dropped outright (each leaks a receive buffer or a send slot). Read from the ring.
    public var completionQueueOverflows: UInt64 = 0
    public var completionsLost: UInt64 = 0
    /// GSO sends the kernel refused and that were re-sent one datagram per sendmsg.
    public var segmentationFallbacks: UInt64 = 0
    /// What each refused GSO send showed, from its first single re-send: the kernel refuses GSO
    /// on this path (GSO turned off for the worker), the segment was too wide for the path (the
    /// largest GSO segment lowered), or the destination refuses the datagrams one by one as well
    /// (GSO kept).
    public var gsoFallbackDisabled: UInt64 = 0
    public var gsoFallbackSegmentLowered: UInt64 = 0
    public var gsoFallbackDestinationRefused: UInt64 = 0
    public var gsoDisabled: Bool = false
    public var allocationSocketsOpened: UInt64 = 0
    public var allocationSocketsFailed: UInt64 = 0
    public var allocationSocketsOpen: Int = 0
    /// Gauges: receive buffers the kernel can fill, free transmit buffers, sendmsg calls in flight.
    /// When the worker is idle the first two are back at their configured counts.
    public var receiveBuffersInKernel: Int = 0
    public var transmitBuffersFree: Int = 0
    public var sendsInFlight: Int = 0
    /// TURN over TCP and TLS: connections, bytes, framing, backpressure, TLS handshakes.
    public var streams = StreamStatistics()

    public init() {}
}

extension MetricFamily {
    static func io(_ name: String, _ help: String) -> MetricFamily {
        MetricFamily("relay_io_\(name)_total", .counter, help: help)
    }
    static let ioDatagramsReceived = io("datagrams_received", "Datagrams received by the workers (a coalesced receive counts each segment).")
    static let ioBytesReceived = io("bytes_received", "Payload bytes received by the workers.")
    static let ioDatagramsSent = io("datagrams_sent", "Datagrams the kernel accepted for sending.")
    static let ioBytesSent = io("bytes_sent", "Payload bytes the kernel accepted for sending.")
    static let ioSendCalls = io("send_calls", "sendmsg calls (one per datagram, or one per GSO run).")
    static let ioSegmentedSends = io("segmented_sends", "sendmsg calls that carried a UDP_SEGMENT (GSO) run.")
    static let ioCoalescedReceives = io("coalesced_receives", "Receives the kernel coalesced (UDP_GRO) and the worker split.")
    static let ioReceiveRearms = io("receive_rearms", "Multishot receives re-armed after they ended.")
    static let ioReceiveBuffersExhausted = io("receive_buffers_exhausted", "Multishot receives that ended because every receive buffer was held.")
    static let ioReceiveErrors = io("receive_errors", "Receive completions and waits that failed.")
    static let ioCompletionQueueOverflows = io("completion_queue_overflows", "io_uring: reaps that found completions the completion queue had no room for (the worker fell behind; the kernel kept them and multishot receives that did not fit were re-armed).")
    static let ioCompletionsLost = io("completions_lost", "io_uring: completions the kernel dropped on completion-queue overflow (each leaks a receive buffer or send slot).")
    static let ioSendErrors = io("send_errors", "Sends the kernel refused (other than a full socket buffer).")
    static let ioSegmentationFallbacks = io("segmentation_fallbacks", "GSO sends the kernel refused and that were re-sent one datagram per sendmsg.")
    static let ioGSOFallbacks = MetricFamily(
        "relay_io_gso_fallbacks_total", .counter, labels: ["cause"],
        help: "What each refused GSO send showed: gso_refused (GSO turned off for the worker), segment_too_large (largest GSO segment lowered), destination_refused (refused one by one too: GSO kept).")
    static let ioAllocationSocketsOpen = MetricFamily(
        "relay_io_allocation_sockets_open", .gauge, help: "Relay (allocation) sockets open.")
    static let ioAllocationSocketsOpened = io("allocation_sockets_opened", "Relay (allocation) sockets opened.")
    static let ioAllocationSocketsFailed = io("allocation_sockets_failed", "Relay (allocation) sockets that could not be opened.")
}

extension WorkerStatistics {
    /// Every series a worker's own counters export, in export order. Fields not listed here
    /// (`lastSendErrno`, `gsoDisabled`, the buffer and send gauges) are for logs and tests.
    public static let metrics: [MetricSeries<WorkerStatistics>] = {
        typealias F = MetricFamily
        return [
            F.ioDatagramsReceived.series(value: { $0.datagramsReceived }),
            F.ioBytesReceived.series(value: { $0.bytesReceived }),
            F.ioDatagramsSent.series(value: { $0.datagramsSent }),
            F.ioBytesSent.series(value: { $0.bytesSent }),
            F.ioSendCalls.series(value: { $0.sendCalls }),
            F.ioSegmentedSends.series(value: { $0.segmentedSends }),
            F.ioCoalescedReceives.series(value: { $0.coalescedReceives }),
            F.ioReceiveRearms.series(value: { $0.receiveRearms }),
            F.ioReceiveBuffersExhausted.series(value: { $0.receiveBuffersExhausted }),
            F.ioReceiveErrors.series(value: { $0.receiveErrors }),
            F.ioCompletionQueueOverflows.series(value: { $0.completionQueueOverflows }),
            F.ioCompletionsLost.series(value: { $0.completionsLost }),
            F.ioSendErrors.series(value: { $0.sendErrors }),
            F.ioSegmentationFallbacks.series(value: { $0.segmentationFallbacks }),
            F.ioGSOFallbacks.series("gso_refused", value: { $0.gsoFallbackDisabled }),
            F.ioGSOFallbacks.series("segment_too_large", value: { $0.gsoFallbackSegmentLowered }),
            F.ioGSOFallbacks.series("destination_refused", value: { $0.gsoFallbackDestinationRefused }),
            F.ioAllocationSocketsOpen.series(value: { $0.allocationSocketsOpen }),
            F.ioAllocationSocketsOpened.series(value: { $0.allocationSocketsOpened }),
            F.ioAllocationSocketsFailed.series(value: { $0.allocationSocketsFailed }),

            F.drops.series("send_queue_full", value: { $0.droppedSendQueueFull }),
            F.drops.series("transmit_buffers_full", value: { $0.droppedTransmitBuffersFull }),
            F.drops.series("socket_buffer_full", value: { $0.droppedSocketBufferFull }),
            F.drops.series("truncated", value: { $0.droppedTruncated }),
            F.drops.series("malformed_receive", value: { $0.droppedMalformedReceive }),
            F.drops.series("gro_segments", value: { $0.droppedGROSegments }),
            F.drops.series("batch_full", value: { $0.droppedBatchFull }),
            F.drops.series("oversize", value: { $0.droppedOversize }),
            F.drops.series("unknown_socket", value: { $0.droppedUnknownSocket }),
            F.drops.series("invalid_outbound", value: { $0.droppedInvalidOutbound }),
        ] + StreamStatistics.metrics
    }()

    /// The sum over workers of every series of `family` (e.g. every drop reason).
    public static func total(_ family: MetricFamily, over workers: [WorkerStatistics]) -> Int {
        metrics.lazy.filter { $0.family == family }.reduce(0) { sum, series in
            workers.reduce(sum) { $0 &+ series.value($1) }
        }
    }

    /// The series of `family` whose sum over workers is not zero, as `label=sum` (label values
    /// joined by `/`) in declaration order, space-separated; "none" when every one is zero. The
    /// exit line says which drops a run had, not only how many.
    public static func nonZero(_ family: MetricFamily, over workers: [WorkerStatistics]) -> String {
        let parts = metrics.filter { $0.family == family }.compactMap { series -> String? in
            let sum = workers.reduce(0) { $0 &+ series.value($1) }
            return sum == 0 ? nil : "\(series.labelValues.joined(separator: "/"))=\(sum)"
        }
        return parts.isEmpty ? "none" : parts.joined(separator: " ")
    }
}
