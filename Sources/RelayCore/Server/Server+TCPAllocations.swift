import STUN

// TCP allocations (RFC 6062): Connect, ConnectionBind, ConnectionAttempt and the peer data
// connections' lives. The core decides; the shell makes the connections (`SocketRequest.listen`,
// `.connect`, `.splice`, `.closeConnection`) and reports what happened to them
// (`peerConnected`, `peerConnectionAccepted`, `connectionClosed`). Bytes on a bound pair never
// reach the core.

extension Server {
    // MARK: Events from the shell

    /// The shell's answer to `SocketRequest.connect(attempt:...)`.
    ///
    /// RFC 6062 §5.2: "If the connection attempt fails or times out, the server MUST return a 447
    /// (Connection Timeout or Failure) error." "If the connection is successful, it is now called a
    /// peer data connection. ... The server MUST include the CONNECTION-ID attribute in the Connect
    /// success response."
    public func peerConnected(attempt id: UInt32, result: PeerConnectResult, now: Instant, into out: OutboundBatch) {
        guard let connection = tcpConnections.connection(id), case let .connecting(transactionID, signer) = connection.state,
              let allocation = allocations.allocation(connection.allocation) else {
            // Given up already (timeout, allocation gone): a late success is closed.
            if case .connected(let handle) = result { out.socketRequests.append(.closeConnection(handle)) }
            return
        }
        switch result {
        case .connected(let handle):
            let timer = timers.schedule(.tcpConnection(id), at: now.adding(seconds: configuration.tcpConnectionBindTimeout))
            timers.cancel(connection.timer)
            tcpConnections.setState(id, .awaitingBind(peer: handle), timer: timer)
            statistics.tcp.connectsSucceeded &+= 1
            sendDeferred(.connect, transactionID: transactionID, signer: signer, to: allocation.client,
                         now: now, out: out) { writer in
                writer.appendUInt32(.connectionID, id)
            }
        case .failed:
            endTCPConnection(id, out: out)
            statistics.tcp.connectsFailed &+= 1
            sendDeferred(.connect, error: .connectionTimeoutOrFailure, transactionID: transactionID, signer: signer,
                             to: allocation.client, now: now, out: out)
        }
    }

    /// A peer connected to the relayed transport address of a TCP allocation (`listener`, the
    /// allocation's `.listen` handle) and the shell accepted it as `handle`, from `peer`.
    ///
    /// RFC 6062 §5.3: "If no permission for this peer has been installed for this allocation, the
    /// server MUST close the connection with the peer immediately after it has been accepted.
    /// Otherwise, the server sends a ConnectionAttempt indication to the client over the control
    /// connection. The indication MUST include an XOR-PEER-ADDRESS attribute containing the peer's
    /// transport address, as well as a CONNECTION-ID attribute uniquely identifying the peer data
    /// connection."
    public func peerConnectionAccepted(_ handle: SocketHandle, on listener: SocketHandle, from peer: TransportAddress,
                                       now: Instant, into out: OutboundBatch) {
        guard let index = listener.allocationIndex, let entry = allocations.openSocket(at: index),
              let allocation = allocations.allocation(AllocationID(index: entry.allocation)),
              allocation.isActive, allocation.relayTransport == .tcp else {
            statistics.tcp.peerConnectionsRefused &+= 1
            out.socketRequests.append(.closeConnection(handle))
            return
        }
        let id = AllocationID(index: entry.allocation)
        // A permission is installed only for a peer the policy admits, and a reload that denies
        // the peer revokes it; the policy is asked again all the same (a reload may have made the
        // address this host's).
        guard peer.family == entry.family, peers.hasPermission(PermissionKey(allocation: id, peer: peer.ip)),
              isPeerAllowed(peer) else {
            statistics.tcp.peerConnectionsRefused &+= 1
            out.socketRequests.append(.closeConnection(handle))
            return
        }
        guard tcpConnections.count(of: id) < configuration.maxTCPConnectionsPerAllocation else {
            statistics.tcp.peerConnectionsRefused &+= 1
            out.socketRequests.append(.closeConnection(handle))
            return
        }
        let connectionID = newConnectionID()
        let timer = timers.schedule(.tcpConnection(connectionID), at: now.adding(seconds: configuration.tcpConnectionBindTimeout))
        tcpConnections.insert(connectionID, TCPConnection(allocation: id, peer: peer, state: .awaitingBind(peer: handle), timer: timer))
        statistics.tcp.connectionAttemptsSent &+= 1
        // An indication: no MESSAGE-INTEGRITY, never cached (RFC 8489 §6.3.2).
        let type = STUNMessageType(method: .connectionAttempt, messageClass: .indication)
        encode(type: type, transactionID: TransactionID(using: &random), to: allocation.client, signer: nil,
               fingerprint: false, cache: false, now: now, out: out) { writer in
            writer.appendXorAddress(.xorPeerAddress, peer)
            writer.appendUInt32(.connectionID, connectionID)
        }
    }

    // MARK: Requests

    /// RFC 6062 §5.2, checks in the RFC's order.
    func handleConnect(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, now: Instant,
                       out: OutboundBatch) throws(RequestError) {
        // "If the request is received on a TCP connection for which no allocation exists, the
        // server MUST return a 437 (Allocation Mismatch) error."
        let (id, allocation) = try activeAllocation(of: client, auth: auth)
        // Connect on a UDP allocation: RFC 6062 defines it for TCP allocations only.
        guard allocation.relayTransport == .tcp else { throw .badRequest }
        // "If the request does not contain an XOR-PEER-ADDRESS attribute, or if such attribute is
        // invalid, the server MUST return a 400 (Bad Request) error."
        guard let peer = try parsed(message.xorPeerAddresses()).first else { throw .badRequest }
        // RFC 8656 §12.2's rule for a peer of the other family, the same here.
        guard let relay = allocation.relay(for: peer.family), relay.isOpen else { throw .peerAddressFamilyMismatch }
        // "If the new connection is forbidden by local policy, the server MUST reject the request
        // with a 403 (Forbidden) error." The same policy as every other peer (coturn's
        // CVE-2026-73212 was an SSRF through exactly this request): port 0, the relay's own
        // listeners, denied ranges, this host's addresses except live relay ports.
        guard isPeerAllowed(peer) else { throw .forbidden }
        // "If the server is currently processing a Connect request for this allocation with the
        // same XOR-PEER-ADDRESS, it MUST return a 446 (Connection Already Exists) error. If the
        // server has already successfully processed a Connect request for this allocation with the
        // same XOR-PEER-ADDRESS, and the resulting client and peer data connections are either
        // pending or active, it MUST return a 446 (Connection Already Exists) error."
        guard !tcpConnections.hasConnection(id, to: peer) else { throw .connectionAlreadyExists }
        guard tcpConnections.count(of: id) < configuration.maxTCPConnectionsPerAllocation else { throw .insufficientCapacity }
        // "Otherwise, the server MUST initiate an outgoing TCP connection." The response waits for
        // its outcome (`peerConnected`) or the timeout: "The timeout value MUST be at least 30
        // seconds."
        let connectionID = newConnectionID()
        let timer = timers.schedule(.tcpConnection(connectionID), at: now.adding(seconds: configuration.tcpConnectTimeout))
        tcpConnections.insert(connectionID, TCPConnection(
            allocation: id, peer: peer, state: .connecting(transactionID: message.transactionID, signer: auth.signer), timer: timer))
        statistics.tcp.connectsStarted &+= 1
        out.socketRequests.append(.connect(attempt: connectionID, from: relay.handle, to: peer))
    }

    /// RFC 6062 §5.4.
    func handleConnectionBind(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, now: Instant,
                              out: OutboundBatch) throws(RequestError) {
        // "If the client connection transport is not TCP or TLS, the server MUST return a 400 (Bad
        // Request) error."
        guard client.isStream else { throw .badRequest }
        // A control connection cannot become a data connection (it would take its allocation's
        // requests with it).
        guard allocations.id(of: client) == nil else { throw .badRequest }
        // "If the request does not contain the CONNECTION-ID attribute, or if this attribute does
        // not refer to an existing pending connection, the server MUST return a 400 (Bad Request)
        // error."
        guard let connectionID = try parsed(message.connectionID()),
              let connection = tcpConnections.connection(connectionID),
              case .awaitingBind(let peerHandle) = connection.state,
              let allocation = allocations.allocation(connection.allocation) else { throw .badRequest }
        // §4.4: the client data connection is authenticated "using the same credentials as for
        // the control connection".
        guard allocation.username == auth.username else { throw .wrongCredentials }
        timers.cancel(connection.timer)
        tcpConnections.setState(connectionID, .bound(peer: peerHandle, client: client.via), timer: .none)
        statistics.tcp.connectionsBound &+= 1
        // The response is queued to the client before the splice moves any peer byte (the shell
        // carries out the splice, then writes this batch's datagrams; peer bytes arrive later).
        sendSuccess(to: message, from: client, signer: auth.signer, now: now, out: out) { _ in }
        out.socketRequests.append(.splice(client: client.via, peer: peerHandle))
    }

    // MARK: Ends

    /// A stream connection that is a peer or client data connection closed: its partner closes too
    /// (RFC 6062 §5.5: "When a client data connection is closed, the server MUST close the
    /// corresponding peer data connection. When a peer data connection is closed, the server MUST
    /// close the corresponding client data connection."). False when `handle` is neither.
    func dataConnectionClosed(_ handle: SocketHandle, out: OutboundBatch) -> Bool {
        guard let id = tcpConnections.id(of: handle), let connection = tcpConnections.remove(id) else { return false }
        timers.cancel(connection.timer)
        for other in connection.handles where other != handle { out.socketRequests.append(.closeConnection(other)) }
        statistics.tcp.connectionsClosed &+= 1
        return true
    }

    /// Ends connection `id` from the core's side: its timer, its shell resources.
    func endTCPConnection(_ id: UInt32, out: OutboundBatch) {
        guard let connection = tcpConnections.remove(id) else { return }
        timers.cancel(connection.timer)
        if case .connecting = connection.state {
            out.socketRequests.append(.abortConnect(attempt: id))
        }
        for handle in connection.handles { out.socketRequests.append(.closeConnection(handle)) }
        statistics.tcp.connectionsClosed &+= 1
    }

    /// RFC 6062 §5.5: "If the allocation associated with a data connection expires, the data
    /// connection MUST be closed." The same for any end of the allocation; a Connect still waiting
    /// gets 447.
    func endTCPConnections(of allocation: AllocationID, client: ClientSocket, now: Instant, out: OutboundBatch) {
        for id in tcpConnections.ids(of: allocation) {
            if let connection = tcpConnections.connection(id), case let .connecting(transactionID, signer) = connection.state {
                sendDeferred(.connect, error: .connectionTimeoutOrFailure, transactionID: transactionID, signer: signer,
                             to: client, now: now, out: out)
            }
            endTCPConnection(id, out: out)
        }
    }

    /// The connect or bind timer of connection `id` fired.
    func expireTCPConnection(_ id: UInt32, now: Instant, out: OutboundBatch) {
        guard var connection = tcpConnections.connection(id) else { return }
        connection.timer = .none
        tcpConnections.setState(id, connection.state, timer: .none)
        switch connection.state {
        case let .connecting(transactionID, signer):
            statistics.tcp.connectsFailed &+= 1
            if let allocation = allocations.allocation(connection.allocation) {
                sendDeferred(.connect, error: .connectionTimeoutOrFailure, transactionID: transactionID, signer: signer,
                             to: allocation.client, now: now, out: out)
            }
        case .awaitingBind:
            statistics.tcp.bindTimeouts &+= 1
        case .bound:
            return
        }
        endTCPConnection(id, out: out)
    }

    // MARK: Helpers

    /// A response to a request answered later (a Connect): an error response with `error`, else
    /// a success response with what `body` writes; signed with the request's key and counted like
    /// the immediate ones.
    func sendDeferred(_ method: STUNMethod, error: STUNErrorCode? = nil, transactionID: TransactionID, signer: ResponseSigner,
                      to client: ClientSocket, now: Instant, out: OutboundBatch,
                      _ body: (inout STUNMessageWriter) -> Void = { _ in }) {
        if let error { statistics.responses.count(errorCode: error.code) } else { statistics.responses.success &+= 1 }
        statistics.responses.count(method: method, success: error == nil, transport: client.transport)
        let type = STUNMessageType(method: method, messageClass: error == nil ? .successResponse : .errorResponse)
        encode(type: type, transactionID: transactionID, to: client, signer: signer, fingerprint: signer.fingerprint,
               now: now, out: out) { writer in
            if let error { writer.appendErrorCode(error) } else { body(&writer) }
        }
    }

    /// A fresh CONNECTION-ID: "The attribute's value MUST uniquely identify the peer data
    /// connection" (RFC 6062 §5.2). The top 8 bits name this server's worker
    /// (`connectionIDWorker`); the low 24 are random, so that a client cannot name another's
    /// connection by counting (ConnectionBind also needs the allocation's credentials), and never 0.
    func newConnectionID() -> UInt32 {
        let worker = UInt32(configuration.connectionIDWorker) << 24
        while true {
            let low = UInt32(truncatingIfNeeded: random.next()) & 0x00FF_FFFF
            if low != 0 && tcpConnections.connection(worker | low) == nil { return worker | low }
        }
    }
}
