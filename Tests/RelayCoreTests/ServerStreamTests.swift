import Testing
@testable import RelayCore
import STUN

/// Clients over a stream connection (TURN over TCP or TLS, RFC 8656 §3.1): the shell frames the
/// stream and hands the core each message with the connection's handle as its socket; the core
/// answers to that handle. The connection is part of the 5-tuple, so the same address over UDP
/// and over TCP are two clients, and closing the connection ends its allocation.
@Suite struct ServerStreamTests {
    static let connection = SocketHandle.connection(index: 5)
    static let other = SocketHandle.connection(index: 6)

    /// The whole Allocate over `socket`: challenge, authenticated request, sockets opened.
    @discardableResult
    func allocate(_ h: Harness, over socket: SocketHandle, from client: TransportAddress = Addr.client, id: UInt8 = 1)
        throws -> (relay: TransportAddress, handle: SocketHandle) {
        let challenge = try #require(h.receive(message(.allocate, id: transactionID(100 + id)) { $0.appendRequestedTransport(17) },
                                               from: client, on: socket).only)
        #expect(challenge.socket == socket, "the 401 goes back over the connection")
        let nonce = try #require(try inspect(challenge.bytes) { try $0.nonce() })
        let request = message(.allocate, id: transactionID(id), auth: RequestAuth(credentials: .alice, nonce: nonce)) {
            $0.appendRequestedTransport(17)
        }
        let pending = h.receive(request, from: client, on: socket)
        let opened = h.answer(pending.opens)
        let response = try #require(opened.only)
        #expect(response.socket == socket && response.destination == client)
        #expect(errorCode(response.bytes) == nil)
        let relay = try #require(try inspect(response.bytes) { try $0.xorRelayedAddresses() }.first)
        // RFC 8489 §14.2: XOR-MAPPED-ADDRESS is the source of the request as the server saw it:
        // over TCP, the connection's remote address.
        #expect(try inspect(response.bytes) { try $0.xorMappedAddress() } == client)
        return (relay, try #require(pending.opens.first?.handle))
    }

    func signed(_ h: Harness, _ method: STUNMethod, id: UInt8, over socket: SocketHandle, nonce: String,
                _ body: @escaping (inout STUNMessageWriter) -> Void) -> [UInt8] {
        message(method, id: transactionID(id), auth: RequestAuth(credentials: .alice, nonce: nonce), body)
    }

    @Test func allocateOverAConnectionAnswersOverIt() throws {
        let h = Harness()
        let (relay, _) = try allocate(h, over: Self.connection)
        #expect(relay.port != 0)
        #expect(h.server.allocationCount == 1)
    }

    @Test func sameAddressOverUDPAndOverTCPAreTwoAllocations() throws {
        let h = Harness()
        let overTCP = try allocate(h, over: Self.connection)
        let overUDP = try h.allocate(Addr.client)
        #expect(h.server.allocationCount == 2)
        #expect(overTCP.relay != overUDP.relays.first)
        // And two connections from the same address and port (a NAT that reuses the port after a
        // close, seen by the shell as two connections) are two clients as well.
        _ = try allocate(h, over: Self.other, id: 2)
        #expect(h.server.allocationCount == 3)
    }

    @Test func relayingToAStreamClientGoesToItsConnectionAndNeverBecomesAKernelRoute() throws {
        let h = Harness()
        let (_, handle) = try allocate(h, over: Self.connection)
        // A nonce over the connection for the following requests.
        let challenge = try #require(h.receive(message(.createPermission, id: transactionID(150)) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) },
                                               from: Addr.client, on: Self.connection).only)
        let streamNonce = try #require(try inspect(challenge.bytes) { try $0.nonce() })
        let bind = h.receive(signed(h, .channelBind, id: 3, over: Self.connection, nonce: streamNonce) {
            $0.appendChannelNumber(0x4001)
            $0.appendXorAddress(.xorPeerAddress, Addr.peer)
        }, from: Addr.client, on: Self.connection)
        let bound = try #require(bind.only)
        #expect(bound.socket == Self.connection && errorCode(bound.bytes) == nil)
        // The kernel fast path relays datagrams between UDP 5-tuples; a stream client's channel
        // is never handed to it.
        #expect(bind.routes.isEmpty)
        #expect(h.server.channelRoutes.isEmpty)

        // Peer → client: ChannelData to the connection.
        let fromPeer = h.receive([1, 2, 3, 4, 5], from: Addr.peer, on: handle)
        let toClient = try #require(fromPeer.only)
        #expect(toClient.socket == Self.connection)
        #expect(toClient.bytes == channelData(0x4001, [1, 2, 3, 4, 5]))

        // Client → peer: ChannelData framed from the stream.
        let toPeer = try #require(h.receive(channelData(0x4001, [9, 9]), from: Addr.client, on: Self.connection).only)
        #expect(toPeer.socket == handle && toPeer.destination == Addr.peer && toPeer.bytes == [9, 9])

        // The same ChannelData over UDP from the same address is another 5-tuple: no allocation.
        #expect(h.receive(channelData(0x4001, [9, 9]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noAllocation == 1)
    }

    @Test func closingTheConnectionEndsItsAllocationOnly() throws {
        let h = Harness()
        let (_, tcpHandle) = try allocate(h, over: Self.connection)
        let (udpRelays, udpHandles, _) = try h.allocate(Addr.client)
        #expect(h.server.allocationCount == 2)

        h.out.reset()
        h.server.connectionClosed(Self.connection, client: Addr.client, now: h.now, into: h.out)
        let closed = h.collect()
        #expect(closed.closes == [tcpHandle], "its relay socket is closed")
        #expect(closed.sent.isEmpty)
        #expect(h.server.allocationCount == 1)
        #expect(h.server.statistics.allocationsEndedByConnectionClose == 1)
        #expect(!udpRelays.isEmpty && !udpHandles.contains(tcpHandle))

        // Nothing more for the closed connection: a peer's datagram to the old relay socket is
        // not relayed, and a late message with the old handle finds no allocation.
        #expect(h.receive([1], from: Addr.peer, on: tcpHandle).sent.isEmpty)
        #expect(h.receive(channelData(0x4001, [1]), from: Addr.client, on: Self.connection).sent.isEmpty)

        // Closing again, or closing a connection that never allocated, changes nothing.
        h.out.reset()
        h.server.connectionClosed(Self.connection, client: Addr.client, now: h.now, into: h.out)
        h.server.connectionClosed(Self.other, client: Addr.client2, now: h.now, into: h.out)
        #expect(h.collect().requests.isEmpty)
        #expect(h.server.allocationCount == 1)
        #expect(h.server.statistics.allocationsEndedByConnectionClose == 1)
        // A listener handle is not a connection: nothing happens to the UDP allocation.
        h.server.connectionClosed(.listener(.ipv4), client: Addr.client, now: h.now, into: h.out)
        #expect(h.server.allocationCount == 1)
    }

    @Test func challengesOverStreamsAreNotRateLimited() throws {
        // The 401/438 limiter stops reflection towards spoofed UDP sources; a TCP client's address
        // is proven and it does not retransmit, so every one of 50 connections from one address
        // gets its challenge at once, where UDP from that address gets the limiter's burst.
        let h = Harness()
        let request = message(.allocate, id: transactionID(77)) { $0.appendRequestedTransport(17) }
        var streamAnswers = 0
        for i in 0..<50 {
            let sent = h.receive(request, from: Addr.client, on: .connection(index: 100 + i))
            if let only = sent.only, errorCode(only.bytes) == 401 { streamAnswers += 1 }
        }
        #expect(streamAnswers == 50)
        var udpAnswers = 0
        for port in 0..<50 {
            let source = TransportAddress(ip: Addr.client.ip, port: UInt16(41000 + port))
            if let only = h.receive(request, from: source).only, errorCode(only.bytes) == 401 { udpAnswers += 1 }
        }
        #expect(udpAnswers < 50)
        #expect(h.server.statistics.drops.challengeRateLimited == UInt64(50 - udpAnswers))
    }

    @Test func responsesAreCountedByTransport() throws {
        let h = Harness()
        try allocate(h, over: .connection(index: 1, tls: true))
        try allocate(h, over: .connection(index: 2), from: Addr.client2, id: 2)
        try h.allocate(TransportAddress("93.184.216.36:40002")!)
        let t = h.server.statistics.responses.byTransport
        // Each Allocate: a 401, then the success.
        #expect(t[ClientTransport.tls.rawValue].success == 1 && t[ClientTransport.tls.rawValue].error == 1)
        #expect(t[ClientTransport.tcp.rawValue].success == 1 && t[ClientTransport.tcp.rawValue].error == 1)
        #expect(t[ClientTransport.udp.rawValue].success == 1 && t[ClientTransport.udp.rawValue].error == 1)
    }

    @Test func handleKinds() {
        let c = SocketHandle.connection(index: 123)
        #expect(c.isConnection && !c.isListener && c.allocationIndex == nil && c.connectionIndex == 123)
        #expect(SocketHandle.allocation(index: 7).connectionIndex == nil)
        #expect(SocketHandle.listener(.ipv6).connectionIndex == nil)
        #expect(ClientSocket(Addr.client, receivedOn: c).isStream)
        #expect(ClientSocket(Addr.client, receivedOn: .listener(.ipv4)) == ClientSocket(Addr.client))
        let tls = SocketHandle.connection(index: 123, tls: true)
        #expect(tls.isTLSConnection && !c.isTLSConnection && tls.connectionIndex == 123 && tls != c)
        #expect(ClientSocket(Addr.client, receivedOn: tls).transport == .tls)
        #expect(ClientSocket(Addr.client, receivedOn: c).transport == .tcp)
        #expect(ClientSocket(Addr.client).transport == .udp)
    }
}
