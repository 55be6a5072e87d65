import CUDP
import Glibc
import RelayCore
import STUN
import SocketAddressing

/// TURN over TCP and TLS in the worker (RFC 8656 §3.1). The worker accepts on its own stream
/// listeners (multishot accept), receives each connection's bytes into the same provided buffers
/// as datagrams (multishot recv), decrypts TLS in user space (`TLSServerSession`; this kernel has
/// no kTLS), frames the stream into messages (`StreamReassembler`) and hands each message to the
/// core like a datagram, with the connection's handle (`SocketHandle.connection`) as its socket.
/// What the core sends to that handle is written to the connection (ChannelData padded to a
/// multiple of 4, RFC 8656 §12.5), encrypted for TLS, and sent with one send in flight per
/// connection. No thread per connection: every connection of a worker lives in this loop.
///
/// A framed message is copied into the worker's staging area (with the headroom and tailroom
/// every inbound datagram has) because the core may forward it after the chunk it came in was
/// given back; its `bufferID` is `WorkerLimits.stagedBufferID`, which the send path copies like
/// an arena datagram.
extension Worker {

    // MARK: Listeners

    func armStreamListeners() {
        for index in streamListeners.indices where !streamListeners[index].armed {
            if backend.armAccept(fd: streamListeners[index].fd, userData: UserData.accept(index)) {
                streamListeners[index].armed = true
            }
        }
    }

    func handleAccept(_ c: cu_completion, now: Instant) {
        let listener = Int(UInt32(truncatingIfNeeded: c.user_data))
        guard listener < streamListeners.count else {
            if c.res >= 0 { _ = cu_close(c.res) }
            return
        }
        if c.cqe_flags & CU_CQE_F_MORE == 0 { streamListeners[listener].armed = false }
        guard c.res >= 0 else {
            if c.res != -ECANCELED { statistics.streams.acceptErrors &+= 1 }
            return
        }
        let fd = c.res
        let transport = streamListeners[listener].transport
        var peer = cu_addr()
        guard cu_peer_address(fd, &peer) == 0, let client = peer.transportAddress else {
            statistics.streams.acceptErrors &+= 1
            _ = cu_stream_close(fd)
            return
        }
        let limits = configuration.streams
        var reject: StreamRejectReason?
        if openConnections >= limits.maxConnections {
            reject = .totalLimit
        } else if transport == .tls && statistics.streams.handshakesInProgress >= limits.maxHandshakes {
            reject = .handshakeLimit
        }
        var tls: (any TLSServerSession)?
        if reject == nil && transport == .tls {
            tls = limits.tls?.makeSession()
            if tls == nil { reject = .noCertificate }
        }
        // Last, since it counts the connection in (process-wide) when it admits it.
        if reject == nil && !limits.sourceCounts.acquire(client.ip, limit: limits.maxConnectionsPerSource) {
            reject = .perSourceLimit
        }
        if let reject {
            statistics.streams.rejected[reject.rawValue] &+= 1
            _ = cu_stream_close(fd)
            return
        }
        guard let index = newConnectionSlot() else {
            limits.sourceCounts.release(client.ip)
            statistics.streams.rejected[StreamRejectReason.totalLimit.rawValue] &+= 1
            _ = cu_stream_close(fd)
            return
        }
        _ = cu_stream_configure(fd)
        var connection = StreamConnection()
        connection.state = .open
        connection.fd = fd
        connection.generation = connections[index].generation &+ 1
        connection.transport = transport
        connection.client = client
        connection.reassembler = StreamReassembler(maxMessageBytes: limits.maxMessageBytes,
                                                   rfc5766Channels: limits.rfc5766ChannelNumbers)
        connection.tls = tls
        connection.openedAt = now.nanoseconds
        connection.lastMessageAt = now.nanoseconds
        connections[index] = connection
        openConnections += 1
        statistics.streams.accepted[transport.rawValue] &+= 1
        statistics.streams.open[transport.rawValue] += 1
        if transport == .tls { statistics.streams.handshakesInProgress += 1 }
        armConnection(index)
    }

    /// A free index in the connection table (grown when none is free), or nil at the table's limit.
    func newConnectionSlot() -> Int? {
        if let free = freeConnections.popLast() { return free }
        let index = connections.count
        guard index < 1 << 24 else { return nil }  // well inside SocketHandle's 2^30 connection indices
        connections.append(StreamConnection())
        return index
    }

    func armConnection(_ index: Int) {
        let c = connections[index]
        guard c.state == .open, !c.receiveArmed, !c.pausedForPartner, c.role != .peer || c.isSpliced,
              c.handingOffTo < 0 else { return }
        if case .connecting = c.role { return }
        if backend.armStreamReceive(fd: c.fd, userData: UserData.streamReceive(index, generation: c.generation)) {
            connections[index].receiveArmed = true
        } else if !c.awaitingRearm {
            connections[index].awaitingRearm = true
            pendingStreamRearm.append(index)
        }
    }

    func rearmStreams() {
        if streamListeners.contains(where: { !$0.armed }) { armStreamListeners() }
        guard !pendingStreamRearm.isEmpty, rx.inRing > 0 else { return }
        let waiting = pendingStreamRearm
        pendingStreamRearm.removeAll(keepingCapacity: true)
        for index in waiting where index < connections.count {
            connections[index].awaitingRearm = false
            armConnection(index)
        }
    }

    // MARK: Receive

    func handleStreamReceive(_ c: cu_completion, now: Instant) {
        let index = Int(UInt32(truncatingIfNeeded: c.user_data))
        let generation = UInt16(truncatingIfNeeded: c.user_data >> 32)
        let buffer = Int(c.buffer_id)
        let hasBuffer = c.has_buffer != 0 && buffer < rx.count
        if hasBuffer { rx.received(buffer) }
        defer { if hasBuffer { rx.release(buffer) } }
        guard index < connections.count, connections[index].generation == generation,
              connections[index].state == .open else { return }
        if c.cqe_flags & CU_CQE_F_MORE == 0 {
            connections[index].receiveArmed = false
            // Its receive has ended: a connection on its way to another worker can go.
            if connections[index].handingOffTo >= 0 {
                handoffsReady.append((index, connections[index].generation))
            }
        }
        if c.res == 0 {
            closeConnection(index, .clientClosed, now: now)
            return
        }
        if c.res < 0 {
            if c.res == -ENOBUFS {
                statistics.receiveBuffersExhausted &+= 1
                if !connections[index].awaitingRearm {
                    connections[index].awaitingRearm = true
                    pendingStreamRearm.append(index)
                }
            } else if c.res != -ECANCELED {
                closeConnection(index, .error, now: now)
            } else if !connections[index].receiveArmed && !connections[index].awaitingRearm {
                // A cancelled receive (a splice that paused, then resumed before the cancel
                // finished): armed again unless it is still paused (`armConnection` decides).
                connections[index].awaitingRearm = true
                pendingStreamRearm.append(index)
            }
            return
        }
        if !connections[index].receiveArmed && !connections[index].awaitingRearm {
            connections[index].awaitingRearm = true
            pendingStreamRearm.append(index)
        }
        guard hasBuffer else { return }
        let length = Int(c.payload_length)
        let transport = connections[index].transport
        if connections[index].role == .peer {
            statistics.streams.peerBytesReceived &+= UInt64(length)
        } else {
            statistics.streams.bytesReceived[transport.rawValue] &+= UInt64(length)
        }
        let bytes = UnsafeRawBufferPointer(start: rx.slot(buffer), count: length)
        if let tls = connections[index].tls {
            var failure: StreamCloseReason?
            let outcome = tls.receive(bytes) { plaintext in
                if failure == nil { failure = deliver(index, plaintext, now: now) }
            }
            // A TLS record begun and not finished after the handshake: a record trickled byte
            // by byte is a slowloris too, bounded like a partial message.
            if tls.handshakeComplete && tls.hasPartialRecord {
                if connections[index].partialSince == 0 { connections[index].partialSince = now.nanoseconds }
            } else if !(connections[index].reassembler?.hasPartialMessage ?? false) {
                connections[index].partialSince = 0
            }
            if !connections[index].handshakeDone && tls.handshakeComplete {
                connections[index].handshakeDone = true
                statistics.streams.handshakesInProgress -= 1
                statistics.streams.handshakesCompleted &+= 1
            }
            // Handshake records (or an alert) to send back, even when closing next.
            collectTLSOutput(index)
            switch outcome {
            case .ok: break
            case .closed: failure = failure ?? .clientClosed
            case .failed: failure = failure ?? .tlsError
            }
            if let failure {
                // The alert goes out with closeConnection's last words.
                closeConnection(index, failure, now: now)
            }
        } else if let failure = deliver(index, bytes, now: now) {
            closeConnection(index, failure, now: now)
        }
    }

    /// Plaintext received on connection `index`: to its partner when spliced (RFC 6062 data
    /// connections), held while its ConnectionBind is being answered, else framed for the core.
    func deliver(_ index: Int, _ bytes: UnsafeRawBufferPointer, now: Instant) -> StreamCloseReason? {
        // Closing once its output is out: what still arrives has nowhere to go.
        if connections[index].lingering { return nil }
        if connections[index].handingOffTo >= 0 {
            if let base = bytes.baseAddress { connections[index].held.append(base, bytes.count) }
            return nil
        }
        if connections[index].isSpliced {
            forward(bytes, from: index, now: now)
            return nil
        }
        if connections[index].awaitingBindAnswer {
            if let base = bytes.baseAddress { connections[index].held.append(base, bytes.count) }
            return nil
        }
        guard connections[index].role == .client else { return nil }
        return frame(index, bytes, now: now)
    }

    /// Frames plaintext of connection `index` into messages for the core. Returns why the
    /// connection must close, if it must.
    func frame(_ index: Int, _ bytes: UnsafeRawBufferPointer, now: Instant) -> StreamCloseReason? {
        guard var reassembler = connections[index].reassembler.take() else { return nil }
        let handle = SocketHandle.connection(index: index, tls: connections[index].transport == .tls)
        let client = connections[index].client
        let result = reassembler.consume(bytes, stoppingAfter: { message in
            defer { connections[index].messagesFramed += 1 }
            guard Self.isConnectionBind(message) else {
                stage(message, from: client, on: handle)
                return false
            }
            if let owner = handoffTarget(index, message), let base = message.baseAddress {
                // Not for this worker's core: the message moves with the connection.
                connections[index].handingOffTo = owner
                connections[index].held.append(base, message.count)
            } else {
                stage(message, from: client, on: handle)
            }
            return true
        })
        if connections[index].state == .open && connections[index].reassembler == nil && !connections[index].isSpliced {
            connections[index].reassembler = reassembler
        }
        if let stop = result.stoppedAfter, connections[index].state == .open, connections[index].handingOffTo >= 0 {
            if stop < bytes.count, let base = bytes.baseAddress {
                connections[index].held.append(base + stop, bytes.count - stop)
            }
            beginHandoff(index)
        } else if let stop = result.stoppedAfter, connections[index].state == .open {
            // RFC 6062 §5.4: after a successful ConnectionBind the connection carries the
            // peer's bytes as-is. Until the core has answered, what follows is held unframed.
            connections[index].awaitingBindAnswer = true
            awaitingBindAnswer.append(index)
            if stop < bytes.count, let base = bytes.baseAddress {
                connections[index].held.append(base + stop, bytes.count - stop)
            }
        }
        let transport = connections[index].transport.rawValue
        statistics.streams.messagesReceived[transport] &+= UInt64(result.messages)
        statistics.streams.oversizeMessages &+= UInt64(result.oversize)
        if result.messages > 0 { connections[index].lastMessageAt = now.nanoseconds }
        if result.invalid != nil { return .framing }
        if reassembler.hasPartialMessage {
            if connections[index].partialSince == 0 || result.messages > 0 { connections[index].partialSince = now.nanoseconds }
        } else {
            connections[index].partialSince = 0
        }
        return nil
    }

    /// Copies one framed message into the staging area and queues it for the core.
    func stage(_ message: UnsafeRawBufferPointer, from client: TransportAddress, on handle: SocketHandle) {
        let room = InboundDatagram.headroom + message.count + InboundDatagram.tailroom
        let needed = (room + 15) & ~15
        if stagingUsed + needed > stagingCapacity || inboundCount >= inboundCapacity {
            runInbound(now: clock.now())
        }
        guard stagingUsed + needed <= stagingCapacity, let source = message.baseAddress else {
            statistics.streams.oversizeMessages &+= 1
            return
        }
        let bytes = staging + stagingUsed + InboundDatagram.headroom
        bytes.copyMemory(from: source, byteCount: message.count)
        stagingUsed += needed
        appendInbound(InboundDatagram(socket: handle, source: client, bytes: bytes, length: message.count,
                                      bufferID: WorkerLimits.stagedBufferID))
    }

    // MARK: Send

    /// An outbound datagram for a connection: appended to its output (ChannelData padded, RFC 8656
    /// §12.5: "Over TCP and TLS-over-TCP, the ChannelData message MUST be padded to a multiple of
    /// four bytes"), encrypted first for TLS. Sent after the batch (`flushStreams`).
    func writeToConnection(_ datagram: OutboundDatagram, now: Instant) {
        guard let index = datagram.socket.connectionIndex, index < connections.count,
              connections[index].state == .open else {
            statistics.streams.droppedClosed &+= 1
            return
        }
        let first = datagram.length > 0 ? datagram.bytes.load(as: UInt8.self) : 0
        let padding = first & 0xC0 == 0x40 ? (4 - datagram.length & 3) & 3 : 0
        let limit = configuration.streams.writeBufferBytes
        // TLS adds a record header and tag per record (29 bytes for TLS 1.3 with AES-GCM).
        let overhead = connections[index].tls == nil ? 0 : 64
        let queued = connections[index].pending.count + connections[index].sending.count
        if queued + datagram.length + padding + overhead > limit {
            statistics.streams.droppedWriteBufferFull &+= 1
            if connections[index].fullSince == 0 { connections[index].fullSince = now.nanoseconds }
            return
        }
        connections[index].fullSince = 0
        if let tls = connections[index].tls {
            // One TLS write per message, its padding included (one record, not two).
            let ok = withUnsafeTemporaryAllocation(byteCount: datagram.length + padding, alignment: 8) { plain in
                plain.baseAddress!.copyMemory(from: datagram.bytes, byteCount: datagram.length)
                (plain.baseAddress! + datagram.length).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
                return tls.send(UnsafeRawBufferPointer(plain))
            }
            if !ok { statistics.streams.droppedClosed &+= 1 }
            collectTLSOutput(index)
            return
        } else {
            connections[index].pending.append(datagram.bytes, datagram.length, zeros: padding)
        }
        markForFlush(index)
    }

    func collectTLSOutput(_ index: Int) {
        guard let tls = connections[index].tls else { return }
        var any = false
        tls.takeOutput { ciphertext in
            guard let base = ciphertext.baseAddress, ciphertext.count > 0 else { return }
            connections[index].pending.append(base, ciphertext.count)
            any = true
        }
        if any { markForFlush(index) }
    }

    @inline(__always) func markForFlush(_ index: Int) {
        guard !connections[index].queuedForFlush else { return }
        connections[index].queuedForFlush = true
        connectionsToFlush.append(index)
    }

    /// Starts a send on every connection with output and none in flight.
    func flushStreams() {
        guard !connectionsToFlush.isEmpty else { return }
        let list = connectionsToFlush
        connectionsToFlush.removeAll(keepingCapacity: true)
        for index in list where index < connections.count {
            connections[index].queuedForFlush = false
            startSend(index)
        }
    }

    func startSend(_ index: Int) {
        guard connections[index].state == .open, !connections[index].sendInFlight,
              connections[index].pending.count > 0 else { return }
        connections[index].beginSend()
        submitStreamSend(index)
    }

    func submitStreamSend(_ index: Int) {
        let c = connections[index]
        guard let base = c.sending.base else { return }
        if backend.sendStream(fd: c.fd, bytes: base + c.sentOffset, length: c.sending.count - c.sentOffset,
                              userData: UserData.streamSend(index, generation: c.generation)) {
            connections[index].sendInFlight = true
        } else {
            // No submission entry now: try again after this loop turn.
            connections[index].abandonSend()
            markForFlush(index)
        }
    }

    func handleStreamSendCompletion(_ c: cu_completion, now: Instant) {
        let index = Int(UInt32(truncatingIfNeeded: c.user_data))
        let generation = UInt16(truncatingIfNeeded: c.user_data >> 32)
        guard index < connections.count, connections[index].generation == generation,
              connections[index].sendInFlight else { return }
        connections[index].sendInFlight = false
        if connections[index].state == .closing {
            connections[index].sending.release()
            freeConnection(index)
            return
        }
        guard c.res > 0 else {
            closeConnection(index, c.res == 0 || c.res == -EPIPE || c.res == -ECONNRESET ? .clientClosed : .error, now: now)
            return
        }
        if connections[index].role == .peer {
            statistics.streams.peerBytesSent &+= UInt64(c.res)
        } else {
            statistics.streams.bytesSent[connections[index].transport.rawValue] &+= UInt64(c.res)
        }
        connections[index].sentOffset += Int(c.res)
        if connections[index].sentOffset < connections[index].sending.count {
            submitStreamSend(index)
            return
        }
        // All sent: nothing is kept for an idle connection.
        connections[index].sending.release()
        connections[index].sentOffset = 0
        if connections[index].pending.count > 0 { startSend(index) }
        if connections[index].isSpliced { resumePartner(of: index) }
        if connections[index].handingOffTo >= 0 && connections[index].queuedOutput == 0 && !connections[index].receiveArmed {
            handoffsReady.append((index, connections[index].generation))
        }
        if connections[index].lingering && connections[index].queuedOutput == 0 {
            closeConnection(index, .peerClosed, now: now, notifyProcessor: false)
        }
    }

    // MARK: Close

    /// Ends connection `index`: what it sent before is processed first (an Allocate still in the
    /// batch must not outlive it), then the core ends its allocation (or, for an RFC 6062 data
    /// connection, closes its partner), then the socket closes. `notifyProcessor` false: the core
    /// asked for the close itself (`SocketRequest.closeConnection`), or never knew the connection.
    func closeConnection(_ index: Int, _ reason: StreamCloseReason, now: Instant, notifyProcessor: Bool = true) {
        guard index < connections.count, connections[index].state == .open else { return }
        if notifyProcessor && inboundCount > 0 { runInbound(now: now) }
        guard connections[index].state == .open else { return }
        let c = connections[index]
        connections[index].state = .closing
        if notifyProcessor {
            processor.connectionClosed(.connection(index: index, tls: c.transport == .tls), client: c.client, now: now, into: batch)
            flushOutbound(now: now)
        }
        if case .connecting(let attempt) = c.role {
            connectsInProgress[attempt] = nil
            backend.cancelReceive(fd: c.fd, userData: UserData.connect(index, generation: c.generation))
        } else if c.receiveArmed {
            backend.cancelReceive(fd: c.fd, userData: UserData.streamReceive(index, generation: c.generation))
        }
        // Last words, best effort and without waiting: a TLS alert (why the handshake failed), or
        // the answers already produced. Only when nothing is in flight, so the order holds.
        if reason != .error && reason != .clientClosed && !connections[index].sendInFlight,
           let base = connections[index].pending.base {
            _ = send(c.fd, base, connections[index].pending.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
        }
        _ = cu_stream_close(c.fd)
        openConnections -= 1
        if c.role == .client {
            configuration.streams.sourceCounts.release(c.client.ip)
            statistics.streams.open[c.transport.rawValue] -= 1
            statistics.streams.closed[reason.rawValue][c.transport.rawValue] &+= 1
            if c.transport == .tls && !c.handshakeDone {
                statistics.streams.handshakesInProgress -= 1
                statistics.streams.handshakeFailures &+= 1
            }
        } else {
            statistics.streams.peerConnectionsOpen -= 1
        }
        // The partner is closed by the core (it learns of this close above), or was closed first.
        if c.isSpliced, c.partner < connections.count, connections[c.partner].generation == c.partnerGeneration {
            connections[c.partner].partner = -1
            if connections[c.partner].pausedForPartner {
                connections[c.partner].pausedForPartner = false
                armConnection(c.partner)
            }
        }
        connections[index].fd = -1
        connections[index].tls = nil
        connections[index].reassembler = nil
        connections[index].pending.release()
        connections[index].held.release()
        connections[index].awaitingBindAnswer = false
        connections[index].partner = -1
        connections[index].pausedForPartner = false
        connections[index].lingering = false
        connections[index].handingOffTo = -1
        connections[index].adopted = false
        connections[index].messagesFramed = 0
        connections[index].receiveArmed = false
        // A send in flight keeps its bytes (and the slot) until its completion.
        if !connections[index].sendInFlight {
            connections[index].sending.release()
            freeConnection(index)
        }
    }

    func freeConnection(_ index: Int) {
        connections[index].state = .free
        connections[index].role = .client
        connections[index].generation &+= 1
        freeConnections.append(index)
    }

    /// Once a second: handshakes, partial messages, idle connections and full write buffers that
    /// ran out of time.
    func sweepStreams(now: Instant) {
        guard openConnections > 0, now.nanoseconds &- lastStreamSweep >= 1_000_000_000 else { return }
        lastStreamSweep = now.nanoseconds
        let limits = configuration.streams
        let t = now.nanoseconds
        var buffered = 0
        for index in connections.indices where connections[index].state == .open {
            let c = connections[index]
            buffered += c.buffered
            if c.lingering {
                if t &- c.lastMessageAt > limits.messageTimeoutNanoseconds {
                    closeConnection(index, .peerClosed, now: now, notifyProcessor: false)
                }
            } else if c.transport == .tls && !c.handshakeDone && t &- c.openedAt > limits.handshakeTimeoutNanoseconds {
                closeConnection(index, .handshakeTimeout, now: now)
            } else if c.partialSince != 0 && t &- c.partialSince > limits.messageTimeoutNanoseconds {
                closeConnection(index, .messageTimeout, now: now)
            } else if c.role == .client && !c.isSpliced && t &- c.lastMessageAt > limits.idleTimeoutNanoseconds {
                closeConnection(index, .idleTimeout, now: now)
            } else if c.fullSince != 0 && t &- c.fullSince > limits.writeBufferCloseAfterNanoseconds {
                closeConnection(index, .writeBufferFull, now: now)
            }
        }
        statistics.streams.bufferedBytes = buffered
    }

    /// At stop: every connection closes (its allocation with it). Peer data connections and
    /// connects in progress close with their allocations.
    func closeAllConnections(now: Instant) {
        for index in connections.indices where connections[index].state == .open {
            closeConnection(index, .shutdown, now: now)
        }
        for listener in streamListeners { _ = cu_close(listener.fd) }
        streamListeners.removeAll()
    }
}

extension Optional {
    /// The value, leaving nil in its place (so a struct held in an array can be mutated without
    /// an exclusive access to the array for the duration).
    @inline(__always) mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
