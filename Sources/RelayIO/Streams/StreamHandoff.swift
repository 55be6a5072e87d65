import CUDP
import RelayCore
import STUN
import Synchronization

/// A client connection moving to another worker: its socket, its TLS session and the plaintext
/// it sent that the new worker has not framed yet (its ConnectionBind first).
///
/// Why connections move: RFC 6062 has a client open a new TCP connection for each peer data
/// connection and send ConnectionBind on it. SO_REUSEPORT hands that connection to any worker,
/// but the peer data connection (and the allocation) live on the worker whose core made the
/// CONNECTION-ID (its top 8 bits, `ServerConfiguration.connectionIDWorker`). The worker that
/// accepted it stops reading it, and once its receive has ended and its output has gone, posts it
/// here; the owner adopts it and frames the ConnectionBind as if it had read it itself. A
/// connection moves at most once, and only when the ConnectionBind is the first message it sent.
/// (coturn does the same: its connection id carries the relay server's id.)
struct StreamHandoff: @unchecked Sendable {
    // @unchecked: `tls` is a class used by one thread at a time; the worker that posts it stops
    // touching it before posting, and the hub's lock orders the two threads' accesses.
    var fd: Int32
    var transport: StreamTransport
    var client: TransportAddress
    var tls: (any TLSServerSession)?
    var handshakeDone: Bool
    var openedAt: UInt64
    /// Owned by the handoff until adopted (or freed by `release`).
    var plaintext: StreamBytes

    mutating func release() {
        plaintext.release()
    }
}

/// The mailboxes through which workers pass connections to each other: one per worker, woken
/// through the worker's eventfd. Checking costs one atomic load when nothing was posted.
public final class StreamHandoffHub: Sendable {
    public let workerCount: Int
    private let pending = Atomic<UInt64>(0)
    private let boxes: Mutex<[[StreamHandoff]]>
    private let wakers = Mutex<[Int: @Sendable () -> Void]>([:])

    public init(workers: Int) {
        precondition(workers > 0 && workers <= 64)
        workerCount = workers
        boxes = Mutex([[StreamHandoff]](repeating: [], count: workers))
    }

    func register(worker: Int, wake: @escaping @Sendable () -> Void) {
        wakers.withLock { $0[worker] = wake }
    }

    /// False when `worker` is not one of the hub's (the caller still owns the connection).
    func post(_ handoff: StreamHandoff, to worker: Int) -> Bool {
        guard worker >= 0 && worker < workerCount else { return false }
        boxes.withLock { $0[worker].append(handoff) }
        pending.bitwiseOr(1 << UInt64(worker), ordering: .releasing)
        wakers.withLock { $0[worker] }?()
        return true
    }

    /// What was posted to `worker` since it last looked.
    @inline(__always)
    func take(worker: Int) -> [StreamHandoff] {
        let bit: UInt64 = 1 << UInt64(worker)
        guard pending.load(ordering: .acquiring) & bit != 0 else { return [] }
        pending.bitwiseAnd(~bit, ordering: .acquiringAndReleasing)
        return boxes.withLock { boxes in
            defer { boxes[worker].removeAll() }
            return boxes[worker]
        }
    }

    /// At stop: what nobody adopted is closed.
    func drain(worker: Int) -> [StreamHandoff] {
        boxes.withLock { boxes in
            defer { boxes[worker].removeAll() }
            return boxes[worker]
        }
    }
}

extension Worker {
    /// The worker a ConnectionBind framed on connection `index` must move to, or nil when this
    /// worker's core takes it: no other workers, the connection came from one already, it is
    /// not the connection's first message (it may hold an allocation here), or the
    /// CONNECTION-ID is this worker's or names no worker.
    func handoffTarget(_ index: Int, _ message: UnsafeRawBufferPointer) -> Int? {
        guard let hub = configuration.streamHandoffs, !connections[index].adopted, connections[index].messagesFramed == 0,
              connections[index].role == .client, !connections[index].isSpliced,
              let parsed = try? STUNMessage.parse(message), let id = (try? parsed.connectionID()) ?? nil else { return nil }
        let owner = Int(id >> 24)
        return owner != self.index && owner < hub.workerCount ? owner : nil
    }

    /// Stops reading connection `index`; it moves once its receive has ended (`finishHandoffs`).
    func beginHandoff(_ index: Int) {
        pauseReceive(index)
        if !connections[index].receiveArmed { handoffsReady.append((index, connections[index].generation)) }
    }

    /// Posts the connections whose receive has ended and whose output has gone to their workers.
    func finishHandoffs() {
        let ready = handoffsReady
        handoffsReady.removeAll(keepingCapacity: true)
        for (index, generation) in ready where index < connections.count {
            let c = connections[index]
            guard c.generation == generation, c.state == .open, c.handingOffTo >= 0, !c.receiveArmed,
                  !c.sendInFlight, c.queuedOutput == 0, let hub = configuration.streamHandoffs else { continue }
            let handoff = StreamHandoff(fd: c.fd, transport: c.transport, client: c.client, tls: c.tls,
                                        handshakeDone: c.handshakeDone, openedAt: c.openedAt, plaintext: c.held)
            backend.forgetStream(fd: c.fd)
            // Ownership of the socket, the TLS session and the held bytes moves with it.
            connections[index].held = StreamBytes()
            connections[index].tls = nil
            connections[index].fd = -1
            guard hub.post(handoff, to: c.handingOffTo) else {
                var lost = handoff
                lost.release()
                _ = cu_stream_close(c.fd)
                configuration.streams.sourceCounts.release(c.client.ip)
                forgetMovedConnection(index, c)
                continue
            }
            statistics.streams.connectionsMovedOut &+= 1
            forgetMovedConnection(index, c)
        }
    }

    /// This worker's bookkeeping of a connection that left (or was lost on the way): no close is
    /// counted, the socket is not closed here.
    private func forgetMovedConnection(_ index: Int, _ c: StreamConnection) {
        // The connection stays counted against its source address (process-wide): it is still open.
        openConnections -= 1
        statistics.streams.open[c.transport.rawValue] -= 1
        connections[index].reassembler = nil
        connections[index].pending.release()
        connections[index].sending.release()
        connections[index].handingOffTo = -1
        connections[index].messagesFramed = 0
        freeConnection(index)
    }

    /// Takes over the connections other workers posted: each is framed from its held plaintext
    /// (its ConnectionBind first) and read from here on. The limits of this worker apply.
    func adoptHandoffs(from hub: StreamHandoffHub) {
        let arrived = hub.take(worker: index)
        guard !arrived.isEmpty else { return }
        let now = clock.now()
        let limits = configuration.streams
        for var handoff in arrived {
            defer { handoff.release() }
            guard openConnections < limits.maxConnections, let slot = newConnectionSlot() else {
                statistics.streams.rejected[StreamRejectReason.totalLimit.rawValue] &+= 1
                limits.sourceCounts.release(handoff.client.ip)
                _ = cu_stream_close(handoff.fd)
                continue
            }
            var connection = StreamConnection()
            connection.state = .open
            connection.fd = handoff.fd
            connection.generation = connections[slot].generation &+ 1
            connection.transport = handoff.transport
            connection.client = handoff.client
            connection.reassembler = StreamReassembler(maxMessageBytes: limits.maxMessageBytes,
                                                       rfc5766Channels: limits.rfc5766ChannelNumbers)
            connection.tls = handoff.tls
            connection.handshakeDone = handoff.handshakeDone
            connection.openedAt = handoff.openedAt
            connection.lastMessageAt = now.nanoseconds
            connection.adopted = true
            connections[slot] = connection
            openConnections += 1
            statistics.streams.open[handoff.transport.rawValue] += 1
            statistics.streams.connectionsMovedIn &+= 1
            if let base = handoff.plaintext.base,
               let failure = deliver(slot, UnsafeRawBufferPointer(start: base, count: handoff.plaintext.count), now: now) {
                closeConnection(slot, failure, now: now)
                continue
            }
            armConnection(slot)
        }
        runInbound(now: now)
    }

    /// At stop: connections posted here and never adopted are closed.
    func closeUnadoptedHandoffs() {
        guard let hub = configuration.streamHandoffs else { return }
        for var handoff in hub.drain(worker: index) {
            _ = cu_stream_close(handoff.fd)
            configuration.streams.sourceCounts.release(handoff.client.ip)
            handoff.release()
        }
    }
}
