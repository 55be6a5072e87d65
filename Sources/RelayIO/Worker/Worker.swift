import CUDP
import Glibc
import RelayCore
import STUN
import SocketAddressing

/// One event loop on one thread: its own backend (io_uring ring or epoll + batched syscalls),
/// buffers, sockets and processor. Nothing in it is
/// shared with other workers; it is created on, and only touched by, its own thread.
///
/// The loop: reap a batch of completions → hand the received datagrams to the processor in one
/// `process` call → carry out its socket requests (answering `socketOpened` at once) → turn its
/// outbound datagrams into sends (GSO runs) → give unheld buffers back → sleep in the backend's
/// `submitAndWait` (io_uring: submit and wait on the ring; batched syscalls: flush the queued
/// sendmmsg runs and `epoll_wait`) until a completion or the processor's next timer (≤ 1 s).
final class Worker<P: DatagramProcessor, B: IOBackend> {
    /// This worker's number (0...), the top byte of the CONNECTION-IDs its core hands out.
    let index: Int
    let configuration: WorkerConfiguration
    let processor: P
    let clock: RelayClock
    let control: WorkerControl
    /// Where configuration updates arrive (nil: the worker takes none).
    var reloads: ReloadMailbox<P.Reload>.Receiver?
    /// `reloads`' posted generation and the last one this worker took: checked at the top of
    /// every loop turn without touching the generic receiver (see `applyReload`).
    let reloadPosted: ReloadGeneration?
    var reloadSeen: UInt64
    let backend: B
    let rx: ReceiveBufferPool
    let tx: TransmitBufferPool
    /// Copies of stream messages larger than a transmit buffer, while their sends are in flight.
    let largeTransmit = LargeTransmitBuffers(capacity: 64)
    let batch: OutboundBatch

    let inbound: UnsafeMutablePointer<InboundDatagram>
    let inboundCapacity: Int
    var inboundCount = 0
    /// Receive buffers held by the datagrams in `inbound` (one hold each).
    let heldBuffers: UnsafeMutablePointer<Int>
    var heldCount = 0

    let completions: UnsafeMutablePointer<cu_completion>

    /// Indexed by `SocketHandle.raw`: 0 and 1 are the listeners, 2... allocation sockets.
    var sockets: [WorkerSocketEntry]
    var pendingRearm: [UInt32] = []
    /// Swapped with `pendingRearm` while re-arming, so neither array is ever copied.
    var rearmScratch: [UInt32] = []

    let sends: SendTable
    var gsoEnabled: Bool
    /// Largest segment size still tried with GSO (lowered when the kernel refuses a size).
    var gsoMaxSegment = 65535

    var statistics = WorkerStatistics()
    var drained = false
    var lastPublish: UInt64 = 0

    // Streams (TURN over TCP/TLS, `Worker+Streams`).
    var streamListeners: [(fd: Int32, transport: StreamTransport, armed: Bool)] = []
    /// Indexed by `SocketHandle.connectionIndex`.
    var connections: [StreamConnection] = []
    var freeConnections: [Int] = []
    var openConnections = 0
    var connectionsToFlush: [Int] = []
    var pendingStreamRearm: [Int] = []
    var lastStreamSweep: UInt64 = 0
    /// Framed stream messages waiting for the core (each with headroom and tailroom); emptied
    /// after every `process` call.
    let staging: UnsafeMutableRawPointer
    let stagingCapacity: Int
    var stagingUsed = 0

    /// Outgoing peer connections in progress (RFC 6062 Connect): attempt → connection index.
    var connectsInProgress: [UInt32: Int] = [:]
    /// Client connections whose ConnectionBind the core has not answered yet (their later bytes
    /// are held, unframed).
    var awaitingBindAnswer: [Int] = []
    var resolvingBindAnswers = false
    /// Connections ready to move to another worker (index, generation), posted after the reap.
    var handoffsReady: [(index: Int, generation: UInt16)] = []

    init(index: Int = 0, configuration: WorkerConfiguration, listeners: [(SocketHandle, Int32)], processor: P, clock: RelayClock,
         control: WorkerControl, reloads: ReloadMailbox<P.Reload>.Receiver? = nil,
         streamListeners: [(fd: Int32, transport: StreamTransport)] = []) throws(RelayIOError) {
        self.index = index
        self.configuration = configuration
        self.processor = processor
        self.clock = clock
        self.control = control
        self.reloads = reloads
        reloadPosted = reloads?.posted
        reloadSeen = reloads?.seen ?? 0
        guard let rx = ReceiveBufferPool(count: configuration.receiveBuffers,
                                         payloadCapacity: configuration.receivePayloadCapacity,
                                         maxSegments: max(1, configuration.maxGROSegments)),
              let tx = TransmitBufferPool(count: configuration.transmitBuffers,
                                          slotBytes: configuration.transmitBufferBytes)
        else { throw .configuration("receive buffers must be a power of two ≤ 32768; capacities > 0") }
        self.rx = rx
        self.tx = tx
        backend = try B(configuration: configuration, receiveBuffers: rx)
        sends = SendTable(count: backend.sendSlotCount)
        batch = OutboundBatch(capacity: configuration.outboundCapacity, arenaBytes: configuration.outboundArenaBytes)
        inboundCapacity = max(configuration.inboundCapacity, configuration.maxGROSegments + 1)
        inbound = .allocate(capacity: inboundCapacity)
        heldBuffers = .allocate(capacity: inboundCapacity)
        completions = .allocate(capacity: WorkerLimits.completionCapacity)
        gsoEnabled = configuration.enableGSO
        sockets = [WorkerSocketEntry](repeating: WorkerSocketEntry(), count: 2)
        sockets.reserveCapacity(1024)
        pendingRearm.reserveCapacity(1024)
        rearmScratch.reserveCapacity(1024)
        for (handle, fd) in listeners where handle.raw < 2 {
            sockets[Int(handle.raw)].fd = fd
        }
        self.streamListeners = streamListeners.map { ($0.fd, $0.transport, false) }
        stagingCapacity = streamListeners.isEmpty ? 16 : max(256 * 1024, 2 * (configuration.streams.maxMessageBytes + 96))
        staging = .allocate(byteCount: stagingCapacity, alignment: 16)
    }

    deinit {
        for entry in sockets where entry.fd >= 0 { _ = cu_close(entry.fd) }
        for c in connections where c.fd >= 0 { _ = cu_stream_close(c.fd) }
        for listener in streamListeners { _ = cu_close(listener.fd) }
        // Tearing the backend down ends every request still using the buffers; only then free them.
        backend.shutdown()
        inbound.deinitialize(count: inboundCount)
        inbound.deallocate()
        heldBuffers.deallocate()
        completions.deallocate()
        staging.deallocate()
        for i in connections.indices {
            connections[i].pending.release()
            connections[i].sending.release()
        }
    }

    public var currentStatistics: WorkerStatistics {
        var s = statistics
        s.gsoDisabled = !gsoEnabled && configuration.enableGSO
        s.allocationSocketsOpen = sockets.dropFirst(2).reduce(0) { $0 + ($1.fd >= 0 ? 1 : 0) }
        s.receiveBuffersInKernel = rx.inRing
        s.transmitBuffersFree = tx.freeCount
        s.sendsInFlight = sends.count - sends.freeCount
        (s.completionQueueOverflows, s.completionsLost) = backend.completionOverflow
        return s
    }

    // MARK: - The loop

    func run() {
        armWake()
        for raw in 0..<2 where sockets[raw].fd >= 0 { arm(UInt32(raw)) }
        armStreamListeners()
        while true {
            let flags = control.flags
            if flags & WorkerControl.stopFlag != 0 { break }
            applyReload()
            if let hub = configuration.streamHandoffs { adoptHandoffs(from: hub) }
            if flags & WorkerControl.drainFlag != 0 && !drained {
                drained = true
                processor.drain(now: clock.now(), into: batch)
                flushOutbound(now: clock.now())
            }
            var now = clock.now()
            // Sleep no longer than the next report is due (reports are the worker's heartbeat).
            let reportDue = lastPublish &+ configuration.statisticsIntervalNanoseconds
            var wait = min(configuration.maxWaitNanoseconds, reportDue > now.nanoseconds ? reportDue - now.nanoseconds : 0)
            if let due = processor.nextTimeout() {
                wait = due <= now ? 0 : min(wait, due.nanoseconds - now.nanoseconds)
            }
            let rc = backend.submitAndWait(wait)
            if rc < 0 && rc != -EBUSY && rc != -EAGAIN { statistics.receiveErrors &+= 1 }
            reapAll()
            now = clock.now()
            if let due = processor.nextTimeout(), due <= now {
                processor.handleTimeout(now: now, into: batch)
                flushOutbound(now: now)
            }
            rx.flushReturns(backend)
            rearmPending()
            if !streamListeners.isEmpty {
                rearmStreams()
                sweepStreams(now: now)
                flushStreams()
            }
            publishStatistics(now: now)
        }
        closeAllConnections(now: clock.now())
        closeUnadoptedHandoffs()
        // Collect what already completed so the final statistics show buffers returned.
        _ = backend.submitAndWait(0)
        reapAll()
        rx.flushReturns(backend)
        publish(now: clock.now(), stopped: true)
    }

    /// The worker's one publication: its counters and its processor's, into its `WorkerControl`
    /// (one lock per interval, none per packet).
    func publishStatistics(now: Instant) {
        if now.nanoseconds &- lastPublish >= configuration.statisticsIntervalNanoseconds {
            lastPublish = now.nanoseconds
            publish(now: now, stopped: false)
        }
    }

    func publish(now: Instant, stopped: Bool) {
        control.publish(WorkerReport(statistics: currentStatistics, processor: processor.report(now: now),
                                     publishedAt: now, stopped: stopped))
    }

    /// One atomic load when nothing was posted. (The worker is generic over its processor and
    /// runs unspecialized for it, so `reloads?.poll()` itself looks up the metadata of the update's
    /// type in the runtime's caches: the mailbox's own symbols alone were 0.6 % of the relay's
    /// profile at TLS 5k pps when it was polled at every loop turn.)
    @inline(__always) func applyReload() {
        guard let posted = reloadPosted, posted.current != reloadSeen else { return }
        defer { reloadSeen = reloads?.seen ?? reloadSeen }
        guard let update = reloads?.poll() else { return }
        let now = clock.now()
        processor.apply(update.value, now: now, into: batch)
        flushOutbound(now: now)
        reloads?.acknowledge(update)
    }

    /// Reaps everything ready, in bounded rounds so timers and sends keep their turn.
    func reapAll() {
        for _ in 0..<16 {
            let n = backend.reap(into: completions, max: WorkerLimits.completionCapacity)
            for i in 0..<n { handle(completions[i]) }
            if n < WorkerLimits.completionCapacity { break }
        }
        if inboundCount > 0 || !awaitingBindAnswer.isEmpty { runInbound(now: clock.now()) }
        if !handoffsReady.isEmpty { finishHandoffs() }
    }

    func handle(_ c: cu_completion) {
        switch UserData.kind(c.user_data) {
        case UserData.receiveKind: handleReceive(c)
        case UserData.sendKind: handleSendCompletion(c)
        case UserData.streamReceiveKind: handleStreamReceive(c, now: clock.now())
        case UserData.streamSendKind: handleStreamSendCompletion(c, now: clock.now())
        case UserData.acceptKind: handleAccept(c, now: clock.now())
        case UserData.relayAcceptKind: handleRelayAccept(c, now: clock.now())
        case UserData.connectKind: handleConnectCompletion(c, now: clock.now())
        case UserData.wakeKind:
            var value: UInt64 = 0
            _ = read(control.wakeFD, &value, 8)
            armWake()
        default: break  // cancel results
        }
    }

    // MARK: - Receive

    func arm(_ raw: UInt32) {
        let entry = sockets[Int(raw)]
        guard entry.fd >= 0, !entry.armed else { return }
        let armed = entry.isStreamListener
            ? backend.armAccept(fd: entry.fd, userData: UserData.relayAccept(raw, generation: entry.generation))
            : backend.armReceive(fd: entry.fd, userData: UserData.receive(raw, generation: entry.generation))
        if armed {
            sockets[Int(raw)].armed = true
        } else if !entry.awaitingRearm {
            sockets[Int(raw)].awaitingRearm = true
            pendingRearm.append(raw)
        }
    }

    func armWake() {
        backend.pollIn(fd: control.wakeFD, userData: UserData.wake)
    }

    /// Re-arms receives that ended, once buffers are back in the ring (re-arming into an empty ring
    /// would only end again with ENOBUFS; the datagrams wait in the socket meanwhile).
    func rearmPending() {
        guard !pendingRearm.isEmpty, rx.inRing > 0 else { return }
        swap(&pendingRearm, &rearmScratch)
        defer { rearmScratch.removeAll(keepingCapacity: true) }
        for raw in rearmScratch where Int(raw) < sockets.count {
            sockets[Int(raw)].awaitingRearm = false
            if sockets[Int(raw)].fd >= 0 && !sockets[Int(raw)].armed {
                statistics.receiveRearms &+= 1
                arm(raw)
            }
        }
    }

    func handleReceive(_ c: cu_completion) {
        let raw = UInt32(truncatingIfNeeded: c.user_data)
        let generation = UInt16(truncatingIfNeeded: c.user_data >> 32)
        let buffer = Int(c.buffer_id)
        let hasBuffer = c.has_buffer != 0 && buffer < rx.count
        if hasBuffer { rx.received(buffer) }
        let live = Int(raw) < sockets.count && sockets[Int(raw)].fd >= 0 && sockets[Int(raw)].generation == generation
        if live && c.cqe_flags & CU_CQE_F_MORE == 0 {
            // The multishot ended (buffer exhaustion, error): receive again once possible.
            sockets[Int(raw)].armed = false
            if !sockets[Int(raw)].awaitingRearm {
                sockets[Int(raw)].awaitingRearm = true
                pendingRearm.append(raw)
            }
        }
        guard c.res >= 0, live, hasBuffer else {
            if c.res == -ENOBUFS {
                statistics.receiveBuffersExhausted &+= 1
            } else if c.res < 0 && c.res != -ECANCELED {
                statistics.receiveErrors &+= 1
            }
            if hasBuffer { rx.release(buffer) }
            return
        }
        guard c.valid != 0, let source = c.source.transportAddress else {
            statistics.droppedMalformedReceive &+= 1
            rx.release(buffer)
            return
        }
        if c.msg_flags & UInt32(MSG_TRUNC) != 0 {
            statistics.droppedTruncated &+= 1
            rx.release(buffer)
            return
        }
        appendReceived(c, buffer: buffer, socket: SocketHandle(raw: raw), source: source)
    }

    /// Hands the datagram(s) of one receive to the inbound batch. A coalesced (UDP_GRO) receive
    /// holds `length / segment` datagrams back to back; the core may write headroom before and
    /// tailroom after each of them, which would overwrite the neighbour, so the segments are
    /// spread apart inside the slot first: segment k moves from `k·seg` to `k·(seg + 72)`
    /// (8 bytes tailroom + 64 bytes headroom between neighbours). The slot's slack after the
    /// kernel's part is sized for `maxGROSegments` gaps. Moving is the one copy GRO costs;
    /// segment 0 stays in place.
    func appendReceived(_ c: cu_completion, buffer: Int, socket: SocketHandle, source: TransportAddress) {
        let payload = rx.slot(buffer) + ReceiveBufferPool.payloadOffset
        let length = Int(c.payload_length)
        let segment = Int(c.gro_segment)
        let segments = segment == 0 || segment >= length ? 1 : (length + segment - 1) / segment
        var keep = min(segments, max(1, configuration.maxGROSegments))
        let room = rx.stride - ReceiveBufferPool.payloadOffset - InboundDatagram.tailroom
        func segmentLength(_ k: Int) -> Int { segments == 1 ? length : min(segment, length - k * segment) }
        while keep > 1 && (keep - 1) * (segment + ReceiveBufferPool.segmentGap) + segmentLength(keep - 1) > room {
            keep -= 1
        }
        if inboundCount + keep > inboundCapacity { runInbound(now: clock.now()) }
        statistics.droppedGROSegments &+= UInt64(segments - keep)
        heldBuffers[heldCount] = buffer
        heldCount += 1
        if segments == 1 {
            appendInbound(InboundDatagram(socket: socket, source: source, bytes: payload, length: length,
                                          bufferID: UInt32(buffer)))
            return
        }
        statistics.coalescedReceives &+= 1
        let pitch = segment + ReceiveBufferPool.segmentGap
        var k = keep - 1
        while k > 0 {
            memmove(payload + k * pitch, payload + k * segment, segmentLength(k))
            k -= 1
        }
        for k in 0..<keep {
            appendInbound(InboundDatagram(socket: socket, source: source, bytes: payload + k * pitch,
                                          length: segmentLength(k), bufferID: UInt32(buffer)))
        }
    }

    @inline(__always) func appendInbound(_ d: InboundDatagram) {
        (inbound + inboundCount).initialize(to: d)
        inboundCount += 1
        statistics.datagramsReceived &+= 1
        statistics.bytesReceived &+= UInt64(d.length)
    }

    func runInbound(now: Instant) {
        if inboundCount > 0 {
            processor.process(UnsafeBufferPointer(start: inbound, count: inboundCount), now: now, into: batch)
            inbound.deinitialize(count: inboundCount)
            inboundCount = 0
        }
        flushOutbound(now: now)
        // Sends took their own holds on the buffers they point into (or copied staged messages);
        // drop the batch's.
        for i in 0..<heldCount { rx.release(heldBuffers[i]) }
        heldCount = 0
        stagingUsed = 0
        rx.flushReturns(backend)
        if !awaitingBindAnswer.isEmpty { resolveBindAnswers(now: now) }
    }

    // MARK: - Outbound: route changes, socket requests, then datagrams

    func flushOutbound(now: Instant) {
        // Route changes first, in order: a route is down before its allocation's socket closes.
        var routes = applyRouteChanges(from: 0)
        var i = 0
        // socketOpened may add requests (another port after a failed bind); bounded.
        while i < batch.socketRequests.count && i < 4096 {
            switch batch.socketRequests[i] {
            case .open(let handle, let family, let port):
                let result = open(handle, family: family, port: port)
                processor.socketOpened(handle, result: result, now: now, into: batch)
                routes = applyRouteChanges(from: routes)
            case .listen(let handle, let family, let port):
                let result = listen(handle, family: family, port: port)
                processor.socketOpened(handle, result: result, now: now, into: batch)
                routes = applyRouteChanges(from: routes)
            case .close(let handle):
                close(handle)
            case .connect(let attempt, let from, let peer):
                if let result = connectPeer(attempt, from: from, to: peer, now: now) {
                    processor.peerConnected(attempt: attempt, result: result, now: now, into: batch)
                }
            case .abortConnect(let attempt):
                abortConnect(attempt)
            case .splice(let client, let peer):
                splice(client: client, peer: peer, now: now)
            case .closeConnection(let handle):
                if let index = handle.connectionIndex { closeAfterFlush(index, now: now) }
            }
            i += 1
        }
        submitSends(now: now)
        statistics.droppedBatchFull &+= UInt64(batch.droppedFull)
        batch.reset()
        flushStreams()
    }

    /// Hands `batch.routeChanges[start...]` to the route sink; returns the new end.
    /// Nothing to do (the usual case: no route changed) costs one comparison.
    @inline(__always) func applyRouteChanges(from start: Int) -> Int {
        let end = batch.routeChanges.count
        guard end > start, let sink = configuration.routeSink else { return end }
        for k in start..<end { sink.apply(batch.routeChanges[k]) }
        return end
    }

    /// The relay address of `family` at `port`, to bind an allocation's socket to.
    func relayBindAddress(_ family: AddressFamily, port: UInt16) -> cu_addr? {
        switch family {
        case .ipv4: (configuration.relayBindIPv4 ?? configuration.listenIPv4).map { cu_addr(ip: .v4($0), port: port) }
        case .ipv6: (configuration.relayBindIPv6 ?? configuration.listenIPv6).map { cu_addr(ip: .v6($0), port: port) }
        }
    }

    /// The socket entry for an allocation handle the core asked to open, grown into place; nil
    /// when the handle is not one or is in use.
    func freeSocketEntry(_ handle: SocketHandle) -> Int? {
        guard let index = handle.allocationIndex, index < 1 << 22 else { return nil }
        let raw = Int(handle.raw)
        if raw >= sockets.count {
            sockets.append(contentsOf: repeatElement(WorkerSocketEntry(), count: raw + 1 - sockets.count))
        }
        return sockets[raw].fd < 0 ? raw : nil
    }

    func open(_ handle: SocketHandle, family: AddressFamily, port: UInt16) -> SocketOpenResult {
        guard let raw = freeSocketEntry(handle) else { return .failed(errno: EBUSY) }
        guard var address = relayBindAddress(family, port: port) else { return .failed(errno: EAFNOSUPPORT) }
        // No SO_REUSEPORT: an allocation's port must belong to exactly one socket.
        var options: Int32 = family == .ipv6 ? Int32(CU_SO_V6ONLY.rawValue) : 0
        if configuration.enableGRO { options |= Int32(CU_SO_GRO.rawValue) }
        if configuration.disableChecksumsForTesting { options |= Int32(CU_SO_NO_CHECK.rawValue) }
        var gro: Int32 = 0
        let fd = cu_udp_socket(&address, options, Int32(clamping: configuration.socketBufferBytes), &gro)
        return install(fd, at: raw, streamListener: false)
    }

    /// Puts a socket the core asked for (`fd`, or -errno) in its entry and arms it: receives for a
    /// UDP socket, accepts for a TCP allocation's listener.
    func install(_ fd: Int32, at raw: Int, streamListener: Bool) -> SocketOpenResult {
        guard fd >= 0 else {
            statistics.allocationSocketsFailed &+= 1
            return .failed(errno: -fd)
        }
        statistics.allocationSocketsOpened &+= 1
        sockets[raw].fd = fd
        sockets[raw].generation &+= 1
        sockets[raw].armed = false
        sockets[raw].isStreamListener = streamListener
        arm(UInt32(raw))
        return .opened
    }

    func close(_ handle: SocketHandle) {
        let raw = Int(handle.raw)
        guard handle.allocationIndex != nil, raw < sockets.count, sockets[raw].fd >= 0 else { return }
        let entry = sockets[raw]
        if entry.armed {
            backend.cancelReceive(fd: entry.fd, userData: entry.isStreamListener
                ? UserData.relayAccept(handle.raw, generation: entry.generation)
                : UserData.receive(handle.raw, generation: entry.generation))
        }
        _ = cu_close(entry.fd)
        sockets[raw].fd = -1
        sockets[raw].armed = false
        // Completions still carrying the old generation are recognised as stale.
        sockets[raw].generation &+= 1
    }

    @inline(__always) func fd(for handle: SocketHandle) -> Int32 {
        let raw = Int(handle.raw)
        return raw < sockets.count ? sockets[raw].fd : -1
    }
}

/// One of a worker's UDP sockets (listeners, allocations' relayed sockets) or a TCP allocation's
/// listening socket, indexed by `SocketHandle.raw`. Declared outside `Worker` on purpose: a type
/// nested in the generic worker is generic itself, and as the worker runs unspecialized for its
/// processor, every access to an array of it went through the unspecialized `Array` with a
/// runtime metadata lookup, per packet.
struct WorkerSocketEntry {
    var fd: Int32 = -1
    var generation: UInt16 = 0
    var armed = false
    var awaitingRearm = false
    /// A TCP allocation's listening socket (`SocketRequest.listen`): armed for accepts.
    var isStreamListener = false
}

/// The worker's constants, outside the generic `Worker` so that reading one costs nothing at run
/// time (a static member of the generic class is reached through its metadata).
enum WorkerLimits {
    /// Completions reaped in one go.
    static let completionCapacity = 512
    /// GSO limits: at most 64 segments (UDP_MAX_SEGMENTS on older kernels) and the whole run must
    /// fit one IP datagram.
    static let maxRunBytes = 65000
    /// The `bufferID` of a message framed from a stream and copied into the staging area
    /// (`Worker.stage`): the send path copies it like an arena datagram.
    static let stagedBufferID = UInt32.max
}
