import CUDP
import Glibc
import RelayCore
import STUN
import SocketAddressing

/// TCP allocations (RFC 6062) in the worker: the allocation's listening socket, the peer data
/// connections (accepted on it, or connected for a Connect), and the splice that joins a client
/// data connection to its peer once the core has accepted the ConnectionBind. The core decides
/// every step (`SocketRequest.listen`, `.connect`, `.abortConnect`, `.splice`,
/// `.closeConnection`); the worker carries them out and reports back (`peerConnected`,
/// `peerConnectionAccepted`, `connectionClosed`). Peer connections live in the same connection
/// table as client connections (`Role.peer`), so their sends, closes and limits are the same code.
///
/// Spliced bytes never reach the core: a chunk received on one side is appended to the other
/// side's output (encrypted first when the client side is TLS). When that output reaches
/// `--stream-write-buffer`, the receiving side stops reading until it drains to half
/// (backpressure: the sender's TCP window closes instead of the relay buffering without bound).
extension Worker {
    // MARK: The allocation's listening socket

    /// `SocketRequest.listen`: a TCP socket on the relay address, listening (RFC 6062 §5.1). It
    /// has SO_REUSEPORT so that the allocation's outgoing connections can bind the same address
    /// and port (Linux refuses a bind next to a listening socket otherwise).
    func listen(_ handle: SocketHandle, family: AddressFamily, port: UInt16) -> SocketOpenResult {
        guard let raw = freeSocketEntry(handle) else { return .failed(errno: EBUSY) }
        guard var address = relayBindAddress(family, port: port) else { return .failed(errno: EAFNOSUPPORT) }
        var options = Int32(CU_SO_REUSEPORT.rawValue)
        if family == .ipv6 { options |= Int32(CU_SO_V6ONLY.rawValue) }
        return install(cu_tcp_listener(&address, options, Int32(Self.peerListenBacklog)), at: raw, streamListener: true)
    }

    /// Peers connecting at once to one allocation, before the worker accepts them.
    static var peerListenBacklog: Int { 16 }

    /// A peer connected to an allocation's listening socket: a new peer connection, not read
    /// from, reported to the core (which announces it with ConnectionAttempt or closes it).
    func handleRelayAccept(_ c: cu_completion, now: Instant) {
        let raw = Int(UInt32(truncatingIfNeeded: c.user_data))
        let generation = UInt16(truncatingIfNeeded: c.user_data >> 32)
        let live = raw < sockets.count && sockets[raw].fd >= 0 && sockets[raw].generation == generation
            && sockets[raw].isStreamListener
        if live && c.cqe_flags & CU_CQE_F_MORE == 0 {
            sockets[raw].armed = false
            if !sockets[raw].awaitingRearm {
                sockets[raw].awaitingRearm = true
                pendingRearm.append(UInt32(raw))
            }
        }
        guard c.res >= 0 else {
            if c.res != -ECANCELED { statistics.streams.acceptErrors &+= 1 }
            return
        }
        let fd = c.res
        var address = cu_addr()
        guard live, cu_peer_address(fd, &address) == 0, let peer = address.transportAddress else {
            if live { statistics.streams.acceptErrors &+= 1 }
            _ = cu_stream_close(fd)
            return
        }
        guard openConnections < configuration.streams.maxConnections, let index = newConnectionSlot() else {
            statistics.streams.rejected[StreamRejectReason.totalLimit.rawValue] &+= 1
            _ = cu_stream_close(fd)
            return
        }
        _ = cu_stream_configure(fd)
        openPeerConnection(index, fd: fd, peer: peer, role: .peer, now: now)
        processor.peerConnectionAccepted(.connection(index: index), on: SocketHandle(raw: UInt32(raw)), from: peer,
                                         now: now, into: batch)
        flushOutbound(now: now)
    }

    // MARK: Outgoing connections (Connect)

    /// `SocketRequest.connect`: a non-blocking connect from the allocation's relayed address.
    /// Returns the outcome when it is known at once, nil when the answer comes later
    /// (`handleConnectCompletion`).
    func connectPeer(_ attempt: UInt32, from listener: SocketHandle, to peer: TransportAddress, now: Instant) -> PeerConnectResult? {
        let raw = Int(listener.raw)
        var local = cu_addr()
        guard listener.allocationIndex != nil, raw < sockets.count, sockets[raw].fd >= 0, sockets[raw].isStreamListener,
              cu_local_address(sockets[raw].fd, &local) == 0 else {
            statistics.streams.peerConnectErrors &+= 1
            return .failed(errno: EBADF)
        }
        guard openConnections < configuration.streams.maxConnections, let index = newConnectionSlot() else {
            statistics.streams.rejected[StreamRejectReason.totalLimit.rawValue] &+= 1
            return .failed(errno: EMFILE)
        }
        var remote = cu_addr(ip: peer.ip, port: peer.port)
        var inProgress: Int32 = 0
        let fd = cu_tcp_connect(&local, &remote, &inProgress)
        guard fd >= 0 else {
            freeConnection(index)
            statistics.streams.peerConnectErrors &+= 1
            return .failed(errno: -fd)
        }
        if inProgress == 0 {
            _ = cu_stream_configure(fd)
            openPeerConnection(index, fd: fd, peer: peer, role: .peer, now: now)
            return .connected(.connection(index: index))
        }
        openPeerConnection(index, fd: fd, peer: peer, role: .connecting(attempt: attempt), now: now)
        guard backend.pollOut(fd: fd, userData: UserData.connect(index, generation: connections[index].generation)) else {
            closeConnection(index, .error, now: now, notifyProcessor: false)
            return .failed(errno: EBUSY)
        }
        connectsInProgress[attempt] = index
        return nil
    }

    /// The outgoing connection became writable: connected, or failed (SO_ERROR says which).
    func handleConnectCompletion(_ c: cu_completion, now: Instant) {
        let index = Int(UInt32(truncatingIfNeeded: c.user_data))
        let generation = UInt16(truncatingIfNeeded: c.user_data >> 32)
        guard index < connections.count, connections[index].generation == generation, connections[index].state == .open,
              case .connecting(let attempt) = connections[index].role else { return }
        connectsInProgress[attempt] = nil
        let error = c.res < 0 ? -c.res : cu_socket_error(connections[index].fd)
        if error == 0 {
            connections[index].role = .peer
            _ = cu_stream_configure(connections[index].fd)
            processor.peerConnected(attempt: attempt, result: .connected(.connection(index: index)), now: now, into: batch)
        } else {
            closeConnection(index, .error, now: now, notifyProcessor: false)
            processor.peerConnected(attempt: attempt, result: .failed(errno: error), now: now, into: batch)
        }
        flushOutbound(now: now)
    }

    /// `SocketRequest.abortConnect`: the core gave up on the attempt.
    func abortConnect(_ attempt: UInt32) {
        guard let index = connectsInProgress.removeValue(forKey: attempt) else { return }
        closeConnection(index, .peerClosed, now: clock.now(), notifyProcessor: false)
    }

    func openPeerConnection(_ index: Int, fd: Int32, peer: TransportAddress, role: StreamConnection.Role, now: Instant) {
        var connection = StreamConnection()
        connection.state = .open
        connection.role = role
        connection.fd = fd
        connection.generation = connections[index].generation &+ 1
        connection.transport = .tcp
        connection.client = peer
        connection.openedAt = now.nanoseconds
        connection.lastMessageAt = now.nanoseconds
        connections[index] = connection
        openConnections += 1
        statistics.streams.peerConnectionsOpen += 1
    }

    // MARK: The splice

    /// `SocketRequest.splice`: from now on the two connections carry each other's bytes as-is.
    /// What the client sent after its ConnectionBind goes to the peer first; the peer is read from
    /// now on (what it sent before waited in its socket's receive buffer).
    func splice(client: SocketHandle, peer: SocketHandle, now: Instant) {
        guard let c = client.connectionIndex, let p = peer.connectionIndex, c < connections.count, p < connections.count,
              connections[c].state == .open, connections[p].state == .open,
              connections[c].role == .client, connections[p].role == .peer else { return }
        connections[c].partner = p
        connections[c].partnerGeneration = connections[p].generation
        connections[p].partner = c
        connections[p].partnerGeneration = connections[c].generation
        // No more framing on the client side.
        connections[c].reassembler = nil
        connections[c].partialSince = 0
        connections[c].lastMessageAt = now.nanoseconds
        connections[p].lastMessageAt = now.nanoseconds
        if connections[c].awaitingBindAnswer { releaseHeld(c, now: now) }
        armConnection(p)
    }

    /// Bytes received on a spliced connection: onto its partner's output.
    func forward(_ bytes: UnsafeRawBufferPointer, from index: Int, now: Instant) {
        let p = connections[index].partner
        guard p >= 0, p < connections.count, connections[p].generation == connections[index].partnerGeneration,
              connections[p].state == .open, let base = bytes.baseAddress, bytes.count > 0 else { return }
        connections[index].lastMessageAt = now.nanoseconds
        connections[p].lastMessageAt = now.nanoseconds
        if let tls = connections[p].tls {
            if !tls.send(bytes) { statistics.streams.droppedClosed &+= 1 }
            collectTLSOutput(p)
        } else {
            connections[p].pending.append(base, bytes.count)
            markForFlush(p)
        }
        // Backpressure: stop reading this side while the other side's output is full.
        if connections[p].queuedOutput >= configuration.streams.writeBufferBytes && !connections[index].pausedForPartner {
            connections[index].pausedForPartner = true
            statistics.streams.splicePauses &+= 1
            pauseReceive(index)
        }
    }

    /// Stops reading connection `index` (its sends go on).
    func pauseReceive(_ index: Int) {
        guard connections[index].receiveArmed else { return }
        backend.pauseStreamReceive(fd: connections[index].fd,
                                   userData: UserData.streamReceive(index, generation: connections[index].generation))
        if B.receiveStopsAtOnce { connections[index].receiveArmed = false }
    }

    /// After a send on spliced connection `index` completed: its partner reads again once the
    /// output has drained to half the limit.
    func resumePartner(of index: Int) {
        let q = connections[index].partner
        guard q >= 0, q < connections.count, connections[q].generation == connections[index].partnerGeneration,
              connections[q].state == .open, connections[q].pausedForPartner,
              connections[index].queuedOutput <= configuration.streams.writeBufferBytes / 2 else { return }
        connections[q].pausedForPartner = false
        armConnection(q)
    }

    /// `SocketRequest.closeConnection`: closed at once when nothing waits to be sent; else it
    /// stops being read and closes when its output has gone (or after the message timeout).
    func closeAfterFlush(_ index: Int, now: Instant) {
        guard index < connections.count, connections[index].state == .open else { return }
        guard connections[index].queuedOutput > 0 else {
            closeConnection(index, .peerClosed, now: now, notifyProcessor: false)
            return
        }
        connections[index].lingering = true
        connections[index].pausedForPartner = true
        connections[index].partner = -1
        connections[index].lastMessageAt = now.nanoseconds
        pauseReceive(index)
        markForFlush(index)
    }

    // MARK: ConnectionBind answers

    /// True for a STUN ConnectionBind request (RFC 6062 §6.1, method 0x00B, class request): after
    /// it the client's bytes may stop being STUN, so framing stops until the core has answered.
    @inline(__always) static func isConnectionBind(_ message: UnsafeRawBufferPointer) -> Bool {
        message.count >= 20 && message[0] == 0x00 && message[1] == 0x0B
    }

    /// The bytes connection `index` held while its ConnectionBind was answered: to the peer when
    /// it was spliced, else framed again (the answer was an error; the client may try again).
    func releaseHeld(_ index: Int, now: Instant) {
        connections[index].awaitingBindAnswer = false
        var held = connections[index].held
        connections[index].held = StreamBytes()
        defer { held.release() }
        guard let base = held.base, held.count > 0 else { return }
        if let failure = deliver(index, UnsafeRawBufferPointer(start: base, count: held.count), now: now) {
            closeConnection(index, failure, now: now)
        }
    }

    /// Connections whose ConnectionBind has been processed get their held bytes back (bounded
    /// rounds: each round frames what the last one held).
    func resolveBindAnswers(now: Instant) {
        guard !resolvingBindAnswers else { return }
        resolvingBindAnswers = true
        defer { resolvingBindAnswers = false }
        for _ in 0..<64 where !awaitingBindAnswer.isEmpty {
            let list = awaitingBindAnswer
            awaitingBindAnswer.removeAll(keepingCapacity: true)
            for index in list where index < connections.count && connections[index].state == .open
                && connections[index].awaitingBindAnswer {
                releaseHeld(index, now: now)
            }
            guard inboundCount > 0 || !awaitingBindAnswer.isEmpty else { break }
            runInbound(now: now)
        }
    }
}
