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

    public init() {}
}
