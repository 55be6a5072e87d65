import RelayCore
import RelayIO
import STUN

/// A TURN `Server` as a worker's processor, plus the histograms the exporter prints: the size of
/// every datagram handed to the core and the sizes of its batches. Its `report` (asked for by the
/// worker about once a second) is one `RelaySnapshot` with the core's counters and these
/// histograms; reloads reach the server through the worker's `ReloadMailbox` (`apply`).
///
/// The added per-datagram work is one bucket increment for the packet-size histogram (a division
/// and an array store on a worker-owned array); per batch, two more for the batch sizes. Nothing
/// here is shared.
public final class InstrumentedServer: DatagramProcessor {
    public typealias Reload = TURNReload
    public let server: Server
    private var packetSizes = BucketCounts(.packetSize)
    private var inboundBatches = BucketCounts(.inboundBatch)
    private var outboundBatches = BucketCounts(.outboundBatch)

    public init(server: Server) {
        self.server = server
    }

    public func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch) {
        for datagram in inbound { packetSizes.recordPacketLength(datagram.length) }
        inboundBatches.record(inbound.count)
        let before = out.count
        server.process(inbound, now: now, into: out)
        outboundBatches.record(out.count &- before)
    }

    public func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch) {
        server.socketOpened(handle, result: result, now: now, into: out)
    }

    public func connectionClosed(_ handle: SocketHandle, client: TransportAddress, now: Instant, into out: OutboundBatch) {
        server.connectionClosed(handle, client: client, now: now, into: out)
    }

    public func peerConnected(attempt: UInt32, result: PeerConnectResult, now: Instant, into out: OutboundBatch) {
        server.peerConnected(attempt: attempt, result: result, now: now, into: out)
    }

    public func peerConnectionAccepted(_ handle: SocketHandle, on listener: SocketHandle, from peer: TransportAddress,
                                       now: Instant, into out: OutboundBatch) {
        server.peerConnectionAccepted(handle, on: listener, from: peer, now: now, into: out)
    }

    public func handleTimeout(now: Instant, into out: OutboundBatch) {
        server.handleTimeout(now: now, into: out)
    }

    public func nextTimeout() -> Instant? { server.nextTimeout() }

    public func drain(now: Instant, into out: OutboundBatch) {
        server.drain()
    }

    public func apply(_ reload: TURNReload, now: Instant, into out: OutboundBatch) {
        server.apply(reload, now: now, into: out)
    }

    public func report(now: Instant) -> (any Sendable)? { snapshot() }

    /// This worker's core counters and histograms as a snapshot.
    public func snapshot() -> RelaySnapshot {
        var s = RelaySnapshot(server.metricsReport)
        s[.packetSize] = packetSizes
        s[.inboundBatch] = inboundBatches
        s[.outboundBatch] = outboundBatches
        return s
    }
}

extension BucketCounts {
    /// `record` for the packet-size buckets (100, 200, ... 1500, +Inf) in O(1): the per-datagram
    /// cost is a division and one increment.
    @inline(__always)
    mutating func recordPacketLength(_ length: Int) {
        let index = length <= 100 ? 0 : min((length &+ 99) / 100 &- 1, counts.count &- 1)
        increment(bucket: index, value: length)
    }
}
