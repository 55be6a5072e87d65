import RelayCore
import RelayIO

/// A TURN `Server` as a worker's processor, plus the operations duties that must happen on the
/// worker's own thread: copying its counters out (`SnapshotPublisher`, at most every interval and
/// at least every heartbeat) and applying reloads (`ReloadMailbox`).
///
/// The added per-datagram work is one bucket increment for the packet-size histogram (a division
/// and an array store on a worker-owned array); per batch, two more for the batch sizes. Nothing
/// here is shared: the snapshot is copied into the worker's `WorkerSlot` under its lock.
///
/// Publishing needs no thread of its own: `nextTimeout()` includes the publish deadline, so an idle
/// worker still wakes and calls `handleTimeout`, which publishes. The worker calls `nextTimeout()`
/// every loop, so a posted reload is applied within one loop (≤ the worker's longest sleep).
public final class InstrumentedServer: DatagramProcessor {
    public let server: Server
    private var publisher: SnapshotPublisher
    private var reloads: ReloadMailbox.Receiver?
    private var packetSizes = BucketCounts(.packetSize)
    private var inboundBatches = BucketCounts(.inboundBatch)
    private var outboundBatches = BucketCounts(.outboundBatch)
    private var dirty = true
    /// The worker's I/O counters as last handed over (`workerStatisticsDidUpdate`), published
    /// together with the core's so that one snapshot describes one worker.
    private var ioStatistics: WorkerStatistics?

    public init(server: Server, publisher: SnapshotPublisher, reloads: ReloadMailbox.Receiver? = nil) {
        self.server = server
        self.publisher = publisher
        self.reloads = reloads
    }

    public func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch) {
        applyReload()
        for datagram in inbound { packetSizes.recordPacketLength(datagram.length) }
        inboundBatches.record(inbound.count)
        let before = out.count
        server.process(inbound, now: now, into: out)
        outboundBatches.record(out.count &- before)
        dirty = true
        publishIfDue(now: now)
    }

    public func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch) {
        server.socketOpened(handle, result: result, now: now, into: out)
        dirty = true
    }

    public func handleTimeout(now: Instant, into out: OutboundBatch) {
        applyReload()
        if let due = server.nextTimeout(), due <= now {
            server.handleTimeout(now: now, into: out)
            dirty = true
        }
        publishIfDue(now: now)
    }

    public func nextTimeout() -> Instant? {
        applyReload()
        let publishAt = publisher.deadline(dirty: dirty)
        guard let core = server.nextTimeout() else { return publishAt }
        return min(core, publishAt)
    }

    public func drain(now: Instant, into out: OutboundBatch) {
        server.drain()
        dirty = true
    }

    public func workerStatisticsDidUpdate(_ statistics: WorkerStatistics, now: Instant) {
        ioStatistics = statistics
        dirty = true
        publishIfDue(now: now)
    }

    /// Copies the counters out now (the worker's last act, or a test's).
    public func publish(now: Instant) {
        publisher.publish(snapshot(), now: now)
        dirty = false
    }

    /// This worker's counters as a snapshot.
    public func snapshot() -> RelaySnapshot {
        var s = RelaySnapshot(server.statistics)
        let active = server.activeAllocationsByFamily
        s[.allocationsActiveIPv4] = active.ipv4
        s[.allocationsActiveIPv6] = active.ipv6
        s[.packetSize] = packetSizes
        s[.inboundBatch] = inboundBatches
        s[.outboundBatch] = outboundBatches
        if let ioStatistics { s.add(RelaySnapshot(ioStatistics)) }
        return s
    }

    private func publishIfDue(now: Instant) {
        if publisher.isDue(now: now, dirty: dirty) { publish(now: now) }
    }

    @inline(__always)
    private func applyReload() {
        guard reloads != nil, let update = reloads?.poll() else { return }
        server.reload(credentials: update.credentials, peerPolicy: update.peerPolicy)
        reloads?.acknowledge(update)
        dirty = true
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
