import Testing
@testable import RelayCore
import STUN

/// TCP allocations (RFC 6062): the core's side of Connect, ConnectionBind and ConnectionAttempt,
/// driven the way the shell drives it (`.listen`, `.connect` answered with `peerConnected`, peers
/// accepted with `peerConnectionAccepted`, `.splice`, closes reported with `connectionClosed`).
@Suite struct ServerTCPAllocationTests {
    static let control = SocketHandle.connection(index: 5)
    static let data = SocketHandle.connection(index: 6)
    static let peerConnection = SocketHandle.connection(index: 7)
    static let otherData = SocketHandle.connection(index: 8)

    /// A TCP allocation made over `control`, its listening socket open. Returns the handle of
    /// its relayed address and the nonce the control connection was given.
    func allocateTCP(_ h: Harness, over socket: SocketHandle = control, from client: TransportAddress = Addr.client,
                     credentials: Credentials = .alice) throws -> (relay: SocketHandle, port: UInt16, nonce: String) {
        let challenge = try #require(h.receive(message(.allocate, id: transactionID(90)) { $0.appendRequestedTransport(6) },
                                               from: client, on: socket).only)
        let nonce = try #require(try inspect(challenge.bytes) { try $0.nonce() })
        let pending = h.receive(message(.allocate, id: transactionID(91), auth: RequestAuth(credentials: credentials, nonce: nonce)) {
            $0.appendRequestedTransport(6)
        }, from: client, on: socket)
        // RFC 6062 §5.1: "A TCP relayed transport address MUST be allocated instead of a UDP one."
        #expect(pending.opens.isEmpty, "no UDP socket for a TCP allocation")
        let listens = pending.listens
        let listen = try #require(listens.only)
        let answered = h.answer(listens)
        let response = try #require(answered.only)
        #expect(response.socket == socket && errorCode(response.bytes) == nil)
        let relayed = try #require(try inspect(response.bytes) { try $0.xorRelayedAddresses() }.first)
        #expect(relayed.port == listen.port)
        // "The RESERVATION-TOKEN attribute MUST NOT be present in the success response."
        #expect(try inspect(response.bytes) { try $0.reservationToken() } == nil)
        return (listen.handle, listen.port, nonce)
    }

    /// The nonce of the 401 an unauthenticated TCP Allocate over the control connection gets.
    func streamChallenge(_ h: Harness, id: UInt8) throws -> String {
        let challenge = try #require(h.receive(message(.allocate, id: transactionID(id)) { $0.appendRequestedTransport(6) },
                                               from: Addr.client, on: Self.control).only)
        return try #require(try inspect(challenge.bytes) { try $0.nonce() })
    }

    func signed(_ method: STUNMethod, id: UInt8, nonce: String, credentials: Credentials = .alice,
                _ body: @escaping (inout STUNMessageWriter) -> Void) -> [UInt8] {
        message(method, id: transactionID(id), auth: RequestAuth(credentials: credentials, nonce: nonce), body)
    }

    /// Connect to `peer` over the control connection; returns the attempt the shell was asked to make.
    func connect(_ h: Harness, to peer: TransportAddress, nonce: String, id: UInt8 = 20) throws -> (attempt: UInt32, from: SocketHandle) {
        let outputs = h.receive(signed(.connect, id: id, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, peer) },
                                from: Addr.client, on: Self.control)
        // The response waits for the connection's outcome.
        #expect(outputs.sent.isEmpty)
        let request = try #require(outputs.connects.only)
        #expect(request.to == peer)
        return (request.attempt, request.from)
    }

    @Test func connectThenConnectionBindSplicesTheDataConnection() throws {
        let h = Harness()
        let (relay, _, nonce) = try allocateTCP(h)
        let (attempt, from) = try connect(h, to: Addr.peer, nonce: nonce)
        // "The local endpoint is the relayed transport address associated with the allocation."
        #expect(from == relay)

        // Connected: "The server MUST include the CONNECTION-ID attribute in the Connect success
        // response."
        let connected = h.peerConnected(attempt, .connected(Self.peerConnection))
        let response = try #require(connected.only)
        #expect(response.socket == Self.control && errorCode(response.bytes) == nil)
        #expect(try inspect(response.bytes) { $0.type } == STUNMessageType(method: .connect, messageClass: .successResponse))
        #expect(try inspect(response.bytes) { $0.transactionID } == transactionID(20))
        let connectionID = try #require(try inspect(response.bytes) { try $0.connectionID() })
        #expect(connectionID == attempt)

        // ConnectionBind on a new connection from the same client, with the control connection's
        // nonce (what turnutils_uclient sends): success, then the splice.
        let bind = h.receive(signed(.connectionBind, id: 21, nonce: nonce) { $0.appendUInt32(.connectionID, connectionID) },
                             from: TransportAddress(ip: Addr.client.ip, port: 40001), on: Self.data)
        let bound = try #require(bind.only)
        #expect(bound.socket == Self.data && errorCode(bound.bytes) == nil)
        #expect(try inspect(bound.bytes) { $0.type.method } == .connectionBind)
        #expect(bind.requests == [.splice(client: Self.data, peer: Self.peerConnection)])
        #expect(h.server.statistics.tcp.connectionsBound == 1)

        // A second ConnectionBind for the same connection: it is not pending any more.
        let again = h.receive(signed(.connectionBind, id: 22, nonce: nonce) { $0.appendUInt32(.connectionID, connectionID) },
                              from: TransportAddress(ip: Addr.client.ip, port: 40002), on: Self.otherData)
        #expect(errorCode(try #require(again.only).bytes) == 400)

        // RFC 6062 §5.5: "When a client data connection is closed, the server MUST close the
        // corresponding peer data connection."
        h.out.reset()
        h.server.connectionClosed(Self.data, client: Addr.client, now: h.now, into: h.out)
        #expect(h.collect().requests == [.closeConnection(Self.peerConnection)])
        #expect(h.server.allocationCount == 1, "the allocation stays: it belongs to the control connection")
        #expect(h.server.tableSizes.tcpConnections == 0)
    }

    @Test func peerClosingClosesTheClientDataConnection() throws {
        let h = Harness()
        let (_, _, nonce) = try allocateTCP(h)
        let (attempt, _) = try connect(h, to: Addr.peer, nonce: nonce)
        h.peerConnected(attempt, .connected(Self.peerConnection))
        _ = h.receive(signed(.connectionBind, id: 21, nonce: nonce) { $0.appendUInt32(.connectionID, attempt) },
                      from: Addr.client, on: Self.data)
        // "When a peer data connection is closed, the server MUST close the corresponding client
        // data connection."
        h.out.reset()
        h.server.connectionClosed(Self.peerConnection, client: Addr.peer, now: h.now, into: h.out)
        #expect(h.collect().requests == [.closeConnection(Self.data)])
    }

    @Test func connectFailureAndTimeoutAnswer447() throws {
        let h = Harness()
        let (_, _, nonce) = try allocateTCP(h)
        // "If the connection attempt fails or times out, the server MUST return a 447 (Connection
        // Timeout or Failure) error."
        let (refused, _) = try connect(h, to: Addr.peer, nonce: nonce)
        let failed = h.peerConnected(refused, .failed(errno: 111))
        #expect(errorCode(try #require(failed.only).bytes) == 447)
        #expect(h.server.statistics.responses.connectionFailure447 == 1)

        // "The timeout value MUST be at least 30 seconds."
        let (slow, _) = try connect(h, to: Addr.peer2, nonce: nonce, id: 30)
        #expect(h.advance(seconds: 29).sent.isEmpty)
        let timedOut = h.advance(seconds: 1)
        #expect(errorCode(try #require(timedOut.only).bytes) == 447)
        #expect(timedOut.requests == [.abortConnect(attempt: slow)])
        // A success the shell reports after the core gave up is closed.
        #expect(h.peerConnected(slow, .connected(Self.peerConnection)).requests == [.closeConnection(Self.peerConnection)])
        #expect(h.server.tableSizes.tcpConnections == 0)
    }

    @Test func connectChecksInTheRFCsOrder() throws {
        let h = Harness()
        // "If the request is received on a TCP connection for which no allocation exists, the
        // server MUST return a 437 (Allocation Mismatch) error."
        let nonceElsewhere = try h.nonce(for: Addr.client2)
        let noAllocation = h.receive(signed(.connect, id: 40, nonce: nonceElsewhere) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                                     from: Addr.client2)
        #expect(errorCode(try #require(noAllocation.only).bytes) == 437)

        let (_, _, nonce) = try allocateTCP(h)
        // "If the request does not contain an XOR-PEER-ADDRESS attribute ... 400 (Bad Request)".
        let noPeer = h.receive(signed(.connect, id: 41, nonce: nonce) { _ in }, from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(noPeer.only).bytes) == 400)
        // "If the new connection is forbidden by local policy, the server MUST reject the request
        // with a 403 (Forbidden) error": a private address (coturn's CVE-2026-73212 was an SSRF on
        // this path), port 0, the relay's own address.
        for forbidden in [TransportAddress("10.0.0.1:80")!, TransportAddress("8.8.8.8:0")!, TransportAddress("127.0.0.1:22")!,
                          TransportAddress(ip: .v4(Addr.relayV4), port: 22)] {
            let refused = h.receive(signed(.connect, id: 42, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, forbidden) },
                                    from: Addr.client, on: Self.control)
            #expect(errorCode(try #require(refused.only).bytes) == 403, "\(forbidden)")
            #expect(refused.connects.isEmpty)
        }
        // A peer of a family the allocation has no relayed address for: 443.
        let v6 = h.receive(signed(.connect, id: 43, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peerV6) },
                           from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(v6.only).bytes) == 443)

        // "If the server is currently processing a Connect request for this allocation with the
        // same XOR-PEER-ADDRESS, it MUST return a 446 (Connection Already Exists) error."
        let (attempt, _) = try connect(h, to: Addr.peer, nonce: nonce)
        let twice = h.receive(signed(.connect, id: 44, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                              from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(twice.only).bytes) == 446)
        // "... already successfully processed ... and the resulting client and peer data
        // connections are either pending or active": still 446.
        h.peerConnected(attempt, .connected(Self.peerConnection))
        let pending = h.receive(signed(.connect, id: 45, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                                from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(pending.only).bytes) == 446)
        #expect(h.server.statistics.responses.connectionAlreadyExists446 == 2)
        // Another port of the same peer is another connection.
        _ = try connect(h, to: TransportAddress(ip: Addr.peer.ip, port: 5001), nonce: nonce, id: 46)
    }

    @Test func connectOnAUDPAllocationAndChannelsOnATCPAllocationAreBadRequests() throws {
        let h = Harness()
        _ = try h.allocate(Addr.client2)
        let udpNonce = try h.nonce(for: Addr.client2)
        let connectUDP = h.receive(signed(.connect, id: 50, nonce: udpNonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                                   from: Addr.client2)
        #expect(errorCode(try #require(connectUDP.only).bytes) == 400)

        let (_, _, nonce) = try allocateTCP(h)
        // A TCP allocation's data goes over data connections: no channels, no Send indications.
        let channel = h.receive(signed(.channelBind, id: 51, nonce: nonce) {
            $0.appendChannelNumber(0x4001)
            $0.appendXorAddress(.xorPeerAddress, Addr.peer)
        }, from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(channel.only).bytes) == 400)
        _ = h.receive(signed(.createPermission, id: 52, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                      from: Addr.client, on: Self.control)
        let send = h.receive(message(.send, .indication, id: transactionID(53)) { w in
            w.appendXorAddress(.xorPeerAddress, Addr.peer)
            [UInt8]([1, 2, 3]).withUnsafeBytes { w.append(.data, bytes: $0) }
        }, from: Addr.client, on: Self.control)
        #expect(send.sent.isEmpty)
    }

    @Test func tcpAllocateRulesOfRFC6062() throws {
        let h = Harness()
        // "If the client connection transport is not TCP or TLS, the server MUST reject the
        // request with a 400 (Bad Request) error."
        let nonce = try h.nonce(for: Addr.client)
        let overUDP = h.receive(signed(.allocate, id: 60, nonce: nonce) { $0.appendRequestedTransport(6) }, from: Addr.client)
        #expect(errorCode(try #require(overUDP.only).bytes) == 400)
        // "If the request contains the DONT-FRAGMENT, EVEN-PORT, or RESERVATION-TOKEN attribute,
        // the server MUST reject the request with a 400 (Bad Request) error."
        let streamNonce = try streamChallenge(h, id: 61)
        let withEvenPort = h.receive(signed(.allocate, id: 62, nonce: streamNonce) {
            $0.appendRequestedTransport(6)
            $0.appendEvenPort(reserveNext: false)
        }, from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(withEvenPort.only).bytes) == 400)
        let withDontFragment = h.receive(signed(.allocate, id: 63, nonce: streamNonce) {
            $0.appendRequestedTransport(6)
            $0.appendEmpty(.dontFragment)
        }, from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(withDontFragment.only).bytes) == 400)
        // "a protocol other than UDP or TCP ... 442 (Unsupported Transport Protocol)".
        let sctp = h.receive(signed(.allocate, id: 64, nonce: streamNonce) { $0.appendRequestedTransport(132) },
                             from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(sctp.only).bytes) == 442)
        #expect(h.server.allocationCount == 0)
    }

    @Test func tcpAllocationsCanBeTurnedOff() throws {
        let h = Harness { $0.tcpAllocations = false }
        let nonce = try streamChallenge(h, id: 70)
        let refused = h.receive(signed(.allocate, id: 71, nonce: nonce) { $0.appendRequestedTransport(6) },
                                from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(refused.only).bytes) == 442)
    }

    @Test func incomingPeerConnectionsNeedAPermission() throws {
        let h = Harness()
        let (relay, _, nonce) = try allocateTCP(h)
        // "If no permission for this peer has been installed for this allocation, the server
        // MUST close the connection with the peer immediately after it has been accepted."
        let stranger = h.peerAccepted(Self.peerConnection, on: relay, from: Addr.peer)
        #expect(stranger.requests == [.closeConnection(Self.peerConnection)])
        #expect(stranger.sent.isEmpty)
        #expect(h.server.statistics.tcp.peerConnectionsRefused == 1)

        _ = h.receive(signed(.createPermission, id: 80, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                      from: Addr.client, on: Self.control)
        // "Otherwise, the server sends a ConnectionAttempt indication to the client over the
        // control connection. The indication MUST include an XOR-PEER-ADDRESS attribute containing
        // the peer's transport address, as well as a CONNECTION-ID attribute".
        let announced = h.peerAccepted(Self.peerConnection, on: relay, from: Addr.peer)
        let indication = try #require(announced.only)
        #expect(announced.requests.isEmpty, "nothing is read from the peer until it is bound")
        #expect(indication.socket == Self.control && indication.destination == Addr.client)
        #expect(try inspect(indication.bytes) { $0.type } == STUNMessageType(method: .connectionAttempt, messageClass: .indication))
        #expect(try inspect(indication.bytes) { try $0.xorPeerAddresses() } == [Addr.peer])
        let connectionID = try #require(try inspect(indication.bytes) { try $0.connectionID() })
        #expect(!(try inspect(indication.bytes) { $0.hasMessageIntegrity }))

        // "If no ConnectionBind request associated with this peer data connection is received
        // after 30 seconds, the peer data connection MUST be closed."
        #expect(h.advance(seconds: 29).requests.isEmpty)
        #expect(h.advance(seconds: 1).requests == [.closeConnection(Self.peerConnection)])
        #expect(h.server.statistics.tcp.bindTimeouts == 1)
        let late = h.receive(signed(.connectionBind, id: 81, nonce: nonce) { $0.appendUInt32(.connectionID, connectionID) },
                             from: Addr.client, on: Self.data)
        #expect(errorCode(try #require(late.only).bytes) == 400)
    }

    @Test func connectionBindRules() throws {
        let h = Harness()
        let (relay, _, nonce) = try allocateTCP(h)
        _ = h.receive(signed(.createPermission, id: 90, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                      from: Addr.client, on: Self.control)
        let indication = try #require(h.peerAccepted(Self.peerConnection, on: relay, from: Addr.peer).only)
        let connectionID = try #require(try inspect(indication.bytes) { try $0.connectionID() })

        // "If the client connection transport is not TCP or TLS, the server MUST return a 400".
        let udpNonce = try h.nonce(for: Addr.client)
        let overUDP = h.receive(signed(.connectionBind, id: 91, nonce: udpNonce) { $0.appendUInt32(.connectionID, connectionID) },
                                from: Addr.client)
        #expect(errorCode(try #require(overUDP.only).bytes) == 400)
        // "If the request does not contain the CONNECTION-ID attribute, or if this attribute does
        // not refer to an existing pending connection, the server MUST return a 400".
        let missing = h.receive(signed(.connectionBind, id: 92, nonce: nonce) { _ in }, from: Addr.client, on: Self.data)
        #expect(errorCode(try #require(missing.only).bytes) == 400)
        let unknown = h.receive(signed(.connectionBind, id: 93, nonce: nonce) { $0.appendUInt32(.connectionID, connectionID &+ 1) },
                                from: Addr.client, on: Self.data)
        #expect(errorCode(try #require(unknown.only).bytes) == 400)
        // The control connection cannot become a data connection.
        let onControl = h.receive(signed(.connectionBind, id: 94, nonce: nonce) { $0.appendUInt32(.connectionID, connectionID) },
                                  from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(onControl.only).bytes) == 400)
        // Another user, with a nonce of their own: "the same credentials as for the control
        // connection" (RFC 6062 §4.4), else 441.
        let bobChallenge = try #require(h.receive(message(.connectionBind, id: transactionID(95)) {
            $0.appendUInt32(.connectionID, connectionID)
        }, from: Addr.client2, on: Self.otherData).only)
        let bobNonce = try #require(try inspect(bobChallenge.bytes) { try $0.nonce() })
        let bob = h.receive(signed(.connectionBind, id: 96, nonce: bobNonce, credentials: .bob) { $0.appendUInt32(.connectionID, connectionID) },
                            from: Addr.client2, on: Self.otherData)
        #expect(errorCode(try #require(bob.only).bytes) == 441)
        // Without MESSAGE-INTEGRITY: a challenge, no splice.
        #expect(errorCode(bobChallenge.bytes) == 401)
        // Still pending after all that: the right client binds it.
        let bind = h.receive(signed(.connectionBind, id: 97, nonce: nonce) { $0.appendUInt32(.connectionID, connectionID) },
                             from: Addr.client, on: Self.data)
        #expect(bind.requests == [.splice(client: Self.data, peer: Self.peerConnection)])
    }

    @Test func endingTheAllocationClosesEveryDataConnection() throws {
        let h = Harness()
        let (relay, _, nonce) = try allocateTCP(h)
        _ = h.receive(signed(.createPermission, id: 100, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer2) },
                      from: Addr.client, on: Self.control)
        // One bound pair, one accepted and waiting, one connect in flight.
        let (bound, _) = try connect(h, to: Addr.peer, nonce: nonce)
        h.peerConnected(bound, .connected(Self.peerConnection))
        _ = h.receive(signed(.connectionBind, id: 101, nonce: nonce) { $0.appendUInt32(.connectionID, bound) },
                      from: Addr.client, on: Self.data)
        let waiting = SocketHandle.connection(index: 9)
        _ = h.peerAccepted(waiting, on: relay, from: Addr.peer2)
        let (inFlight, _) = try connect(h, to: TransportAddress("8.8.8.8:7000")!, nonce: nonce, id: 102)
        #expect(h.server.tableSizes.tcpConnections == 3)

        // RFC 6062 §5.5: "If the allocation associated with a data connection expires, the data
        // connection MUST be closed." The same when the control connection closes.
        h.out.reset()
        h.server.connectionClosed(Self.control, client: Addr.client, now: h.now, into: h.out)
        let ended = h.collect()
        #expect(Set(ended.requests) == Set([.close(relay), .closeConnection(Self.peerConnection), .closeConnection(Self.data),
                                            .closeConnection(waiting), .abortConnect(attempt: inFlight)]))
        #expect(h.server.tableSizes.tcpConnections == 0)
        #expect(h.server.allocationCount == 0)
    }

    @Test func connectionsPerAllocationAreBounded() throws {
        let h = Harness { $0.maxTCPConnectionsPerAllocation = 2 }
        let (relay, _, nonce) = try allocateTCP(h)
        _ = try connect(h, to: Addr.peer, nonce: nonce)
        _ = try connect(h, to: Addr.peer2, nonce: nonce, id: 21)
        let third = h.receive(signed(.connect, id: 22, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, TransportAddress("8.8.8.8:7000")!) },
                              from: Addr.client, on: Self.control)
        #expect(errorCode(try #require(third.only).bytes) == 508)
        _ = h.receive(signed(.createPermission, id: 23, nonce: nonce) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                      from: Addr.client, on: Self.control)
        #expect(h.peerAccepted(Self.peerConnection, on: relay, from: Addr.peer).requests == [.closeConnection(Self.peerConnection)])
    }

    @Test func aFailedListenIsRetriedOnAnotherPortAsAListen() throws {
        let h = Harness()
        let nonce = try streamChallenge(h, id: 110)
        let pending = h.receive(signed(.allocate, id: 111, nonce: nonce) { $0.appendRequestedTransport(6) }, from: Addr.client, on: Self.control)
        let first = try #require(pending.listens.only)
        h.out.reset()
        h.server.socketOpened(first.handle, result: .failed(errno: 98), now: h.now, into: h.out)
        let retry = h.collect()
        let second = try #require(retry.listens.only)
        #expect(second.port != first.port && retry.opens.isEmpty)
        #expect(errorCode(try #require(h.answer(retry.listens).only).bytes) == nil)
    }
}

extension Outputs {
    var listens: [(handle: SocketHandle, family: AddressFamily, port: UInt16)] {
        requests.compactMap { if case .listen(let h, let f, let p) = $0 { return (h, f, p) } else { return nil } }
    }

    var connects: [(attempt: UInt32, from: SocketHandle, to: TransportAddress)] {
        requests.compactMap { if case .connect(let a, let f, let t) = $0 { return (a, f, t) } else { return nil } }
    }
}

extension Array {
    var only: Element? { count == 1 ? self[0] : nil }
}

extension Harness {
    @discardableResult
    func peerConnected(_ attempt: UInt32, _ result: PeerConnectResult) -> Outputs {
        out.reset()
        server.peerConnected(attempt: attempt, result: result, now: now, into: out)
        return collect()
    }

    @discardableResult
    func peerAccepted(_ handle: SocketHandle, on listener: SocketHandle, from peer: TransportAddress) -> Outputs {
        out.reset()
        server.peerConnectionAccepted(handle, on: listener, from: peer, now: now, into: out)
        return collect()
    }
}
