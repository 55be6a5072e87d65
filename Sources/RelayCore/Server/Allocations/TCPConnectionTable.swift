import STUN

/// The transport of an allocation's relayed addresses: UDP (RFC 8656) or TCP (RFC 6062).
enum RelayTransport: Equatable {
    case udp
    case tcp
}

/// A peer data connection of a TCP allocation (RFC 6062 §3: "a TCP connection between the server
/// and a peer"), from the Connect or the incoming connection that began it until it closes.
struct TCPConnection {
    enum State {
        /// A Connect request's outgoing connection is being made (§5.2); its response waits for
        /// the outcome, signed like the request was.
        case connecting(transactionID: TransactionID, signer: ResponseSigner)
        /// The peer data connection is up and the client was told its CONNECTION-ID (Connect
        /// success response, or ConnectionAttempt indication); no ConnectionBind yet. Nothing is
        /// read from the peer meanwhile: the kernel's receive buffer holds what it sends and TCP's
        /// window closes as it fills (§5.3: "The server MUST buffer any data received from the
        /// peer. The server adjusts its advertised TCP receive window to reflect the amount of
        /// empty buffer space.").
        case awaitingBind(peer: SocketHandle)
        /// Spliced to a client data connection (§5.4).
        case bound(peer: SocketHandle, client: SocketHandle)
    }

    var allocation: AllocationID
    var peer: TransportAddress
    var state: State
    var timer: TimerID

    /// The stream connections the shell holds for it.
    var handles: [SocketHandle] {
        switch state {
        case .connecting: []
        case .awaitingBind(let peer): [peer]
        case .bound(let peer, let client): [peer, client]
        }
    }
}

/// The TCP connections of this server's TCP allocations, by CONNECTION-ID, with the indices the
/// events need: by stream handle (the shell reports a close), by allocation (its quota, its end).
/// Bounded by `maxTCPConnectionsPerAllocation` × allocations.
struct TCPConnectionTable {
    private(set) var byID: [UInt32: TCPConnection] = [:]
    private var byHandle: [SocketHandle: UInt32] = [:]
    private var byAllocation: [AllocationID: [UInt32]] = [:]

    var count: Int { byID.count }
    var handleCount: Int { byHandle.count }

    func connection(_ id: UInt32) -> TCPConnection? { byID[id] }

    func id(of handle: SocketHandle) -> UInt32? { byHandle[handle] }

    func count(of allocation: AllocationID) -> Int { byAllocation[allocation]?.count ?? 0 }

    func ids(of allocation: AllocationID) -> [UInt32] { byAllocation[allocation] ?? [] }

    /// RFC 6062 §5.2's two 446 cases: a Connect to `peer` in progress, or one whose "client and
    /// peer data connections are either pending or active". Incoming connections from the peer
    /// count too: a connection with that peer exists either way.
    func hasConnection(_ allocation: AllocationID, to peer: TransportAddress) -> Bool {
        ids(of: allocation).contains { byID[$0]?.peer == peer }
    }

    mutating func insert(_ id: UInt32, _ connection: TCPConnection) {
        precondition(byID[id] == nil)
        byID[id] = connection
        byAllocation[connection.allocation, default: []].append(id)
        for handle in connection.handles { byHandle[handle] = id }
    }

    /// Moves connection `id` to `state`, keeping the handle index in step.
    mutating func setState(_ id: UInt32, _ state: TCPConnection.State, timer: TimerID) {
        guard var connection = byID[id] else { return }
        for handle in connection.handles { byHandle[handle] = nil }
        connection.state = state
        connection.timer = timer
        for handle in connection.handles { byHandle[handle] = id }
        byID[id] = connection
    }

    @discardableResult
    mutating func remove(_ id: UInt32) -> TCPConnection? {
        guard let connection = byID.removeValue(forKey: id) else { return nil }
        for handle in connection.handles where byHandle[handle] == id { byHandle[handle] = nil }
        if var list = byAllocation[connection.allocation] {
            list.removeAll { $0 == id }
            byAllocation[connection.allocation] = list.isEmpty ? nil : list
        }
        return connection
    }
}
