import Testing
@testable import RelayCore
import STUN

/// CreatePermission (RFC 8656 §10), Send and Data indications (§11), peer policy on both.
@Suite struct ServerPermissionTests {
    func send(_ h: Harness, to peer: TransportAddress, _ payload: [UInt8], client: TransportAddress = Addr.client,
              _ extra: (inout STUNMessageWriter) -> Void = { _ in }) -> Outputs {
        let indication = message(.send, .indication, id: transactionID(77)) { w in
            w.appendXorAddress(.xorPeerAddress, peer)
            payload.withUnsafeBytes { w.append(.data, bytes: $0) }
            extra(&w)
        }
        return h.receive(indication, from: client, bufferID: 11)
    }

    /// Checks a Data indication byte for byte (its transaction ID is random, so it is read back).
    func expectDataIndication(_ sent: Sent?, from peer: TransportAddress, _ payload: [UInt8], to client: TransportAddress = Addr.client,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
        let sent = try #require(sent, sourceLocation: sourceLocation)
        let id = try inspect(sent.bytes) { $0.transactionID }
        #expect(sent.socket == .listener(client.family), sourceLocation: sourceLocation)
        #expect(sent.destination == client, sourceLocation: sourceLocation)
        #expect(sent.bytes == expectedResponse(.data, .indication, id: id) { w in
            w.appendXorAddress(.xorPeerAddress, peer)
            payload.withUnsafeBytes { w.append(.data, bytes: $0) }
        }, sourceLocation: sourceLocation)
    }

    @Test func createPermissionInstallsOnePerPeerIPAndIgnoresPorts() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        let out = try h.createPermission([Addr.peer, Addr.peer2])
        #expect(out.only?.bytes == expectedResponse(.createPermission, .successResponse, id: transactionID(2), key: Credentials.alice.key) { _ in })
        #expect(h.server.tableSizes.permissions == 2)
        // Any port of a permitted IP gets through (RFC 8656 §9: "port numbers are not considered"):
        // no channel, so a Data indication.
        let otherPort = TransportAddress(ip: Addr.peer.ip, port: 9999)
        let indication = h.receive([1, 2, 3, 4, 5], from: otherPort, on: handles[0], bufferID: 21).only
        try expectDataIndication(indication, from: otherPort, [1, 2, 3, 4, 5])
        // Written around the payload in the received buffer: header and XOR-PEER-ADDRESS in the
        // headroom, padding in the tailroom.
        #expect(indication?.origin == .received(bufferID: 21))
        #expect(indication?.pointer == UnsafeRawPointer(h.payloadStart - 36))
        #expect(h.server.statistics.dataIndicationsSent == 1)
        // Another IP is still dropped.
        #expect(h.receive([1], from: TransportAddress("9.9.9.9:5000")!, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 1)
    }

    @Test func sendIndicationIsForwardedFromTheReceivedBuffer() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.createPermission([Addr.peer])
        let payload: [UInt8] = Array(repeating: 0x5A, count: 37)
        let forward = try #require(send(h, to: Addr.peer, payload).only)
        #expect(forward.socket == handles[0])
        #expect(forward.destination == Addr.peer)
        #expect(forward.bytes == payload)
        #expect(forward.origin == .received(bufferID: 11))
        // Header 20 + XOR-PEER-ADDRESS 12 + DATA header 4: the payload is at offset 36 of the buffer.
        #expect(forward.pointer == UnsafeRawPointer(h.payloadStart + 36))
        #expect(h.server.statistics.sendIndicationsRelayed == 1)
    }

    @Test func sendIndicationsThatCannotBeRelayedAreDroppedSilently() throws {
        let h = Harness()
        // No allocation.
        #expect(send(h, to: Addr.peer, [1]).sent.isEmpty)
        try h.allocate()
        // No permission.
        #expect(send(h, to: Addr.peer, [1]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 1)
        // Denied by policy (no permission could exist, but policy is checked first).
        #expect(send(h, to: TransportAddress("127.0.0.1:22")!, [1]).sent.isEmpty)
        #expect(send(h, to: TransportAddress("169.254.169.254:80")!, [1]).sent.isEmpty)
        #expect(h.server.statistics.drops.peerDenied == 2)
        // DONT-FRAGMENT: unknown comprehension-required in an indication → discarded.
        try h.createPermission([Addr.peer])
        #expect(send(h, to: Addr.peer, [1]) { $0.appendEmpty(.dontFragment) }.sent.isEmpty)
        // The relay's own address on a port outside the relay range (its listener, say).
        try h.createPermission([TransportAddress(ip: .v4(Addr.relayV4), port: 1)], id: 4)
        #expect(send(h, to: TransportAddress(ip: .v4(Addr.relayV4), port: 3478), [1]).sent.isEmpty)
        #expect(h.server.statistics.drops.peerDenied == 3)
        // No responses to indications, ever.
        #expect(h.server.statistics.responses.badRequest400 == 0)
    }

    @Test func deniedPeersGet403() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        try h.allocate { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        for (i, peer) in ["127.0.0.1:80", "10.1.2.3:80", "169.254.169.254:80", "0.0.0.0:80", "[::1]:80", "[::ffff:127.0.0.1]:80",
                          "[64:ff9b::a00:1]:80", "[fe80::1]:80"].enumerated() {
            let out = try h.createPermission([TransportAddress(peer)!], id: UInt8(10 + i))
            #expect(out.only?.bytes == expectedResponse(.createPermission, .errorResponse, id: transactionID(UInt8(10 + i)), key: Credentials.alice.key) {
                $0.appendErrorCode(.forbidden)
            }, "\(peer)")
        }
        // One denied peer fails the whole request: nothing is installed.
        #expect(errorCode(try #require(try h.createPermission([Addr.peer, TransportAddress("192.168.1.1:1")!], id: 30).only).bytes) == 403)
        #expect(h.server.tableSizes.permissions == 0)
        // An operator allow list opens a range.
        let open = Harness { $0.peerPolicy = PeerPolicy(allow: [CIDR("10.0.0.0/8")!]) }
        try open.allocate()
        #expect(errorCode(try #require(try open.createPermission([TransportAddress("10.1.2.3:80")!]).only).bytes) == nil)
    }

    @Test func createPermissionErrors() throws {
        let h = Harness()
        // No allocation: 437.
        #expect(errorCode(try #require(try h.createPermission([Addr.peer]).only).bytes) == 437)
        try h.allocate()
        // No XOR-PEER-ADDRESS: 400.
        #expect(errorCode(try #require(try h.createPermission([], id: 3).only).bytes) == 400)
        // IPv6 peer on an IPv4 allocation: 443.
        #expect(errorCode(try #require(try h.createPermission([Addr.peerV6], id: 4).only).bytes) == 443)
        // The relay's own address is allowed for a permission (IP only: hairpin).
        #expect(errorCode(try #require(try h.createPermission([TransportAddress(ip: .v4(Addr.relayV4), port: 3478)], id: 5).only).bytes) == nil)
    }

    @Test func permissionsPerAllocationAreBounded() throws {
        let h = Harness { $0.maxPermissionsPerAllocation = 2 }
        try h.allocate()
        #expect(errorCode(try #require(try h.createPermission([Addr.peer, Addr.peer2, TransportAddress("9.9.9.9:1")!]).only).bytes) == 508)
        #expect(h.server.tableSizes.permissions == 0)
        #expect(errorCode(try #require(try h.createPermission([Addr.peer, Addr.peer2], id: 3).only).bytes) == nil)
        // Refreshing existing ones is within the quota; a new one is not.
        #expect(errorCode(try #require(try h.createPermission([Addr.peer], id: 4).only).bytes) == nil)
        #expect(errorCode(try #require(try h.createPermission([TransportAddress("9.9.9.9:1")!], id: 5).only).bytes) == 508)
        // ChannelBind to a new peer needs a permission slot too.
        #expect(errorCode(try #require(try h.channelBind(0x4000, to: TransportAddress("9.9.9.9:1")!, id: 6).only).bytes) == 508)
        #expect(h.server.tableSizes.permissions == 2)
    }

    @Test func permissionsExpireAfter300SecondsUnlessRefreshed() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.createPermission([Addr.peer, Addr.peer2])
        h.advance(seconds: 200)
        try h.createPermission([Addr.peer], id: 3)
        h.advance(seconds: 100)
        // peer2's permission (installed at 0) expired at 300; peer's was refreshed at 200.
        #expect(h.receive([1], from: Addr.peer2, on: handles[0]).sent.isEmpty)
        #expect(h.receive([1], from: Addr.peer, on: handles[0]).sent.count == 1)
        h.advance(seconds: 199)
        #expect(h.receive([1], from: Addr.peer, on: handles[0]).sent.count == 1)
        h.advance(seconds: 1)
        #expect(h.receive([1], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.tableSizes.permissions == 0)
        #expect(h.server.nextTimeout() == h.now.adding(seconds: 100))  // the allocation, at 600
    }

    @Test func reloadSwapsCredentialsAndPolicyForLaterRequests() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        #expect(errorCode(try #require(try h.createPermission([TransportAddress("10.0.0.7:1")!]).only).bytes) == 403)
        h.reload(credentials: CredentialStore(staticUsers: ["alice": "rotated"]),
                 peerPolicy: PeerPolicy(allow: [CIDR("10.0.0.0/8")!]))
        // Old password: 401 now.
        _ = handles
        #expect(errorCode(try #require(try h.createPermission([TransportAddress("10.0.0.7:1")!], id: 3).only).bytes) == 401)
        let rotated = Credentials(username: "alice", password: "rotated")
        let request = message(.createPermission, id: transactionID(4), auth: RequestAuth(credentials: rotated, nonce: try h.nonce())) {
            $0.appendXorAddress(.xorPeerAddress, TransportAddress("10.0.0.7:1")!)
        }
        #expect(h.receive(request, from: Addr.client).only?.bytes
            == expectedResponse(.createPermission, .successResponse, id: transactionID(4), key: rotated.key) { _ in })
    }

    @Test func dataIndicationsForEveryPaddingAndFamily() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (_, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        try h.createPermission([Addr.peer, Addr.peerV6], client: Addr.clientV6)
        for length in [0, 1, 2, 3, 4, 5, 1200] {
            let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let v4 = h.receive(payload, from: Addr.peer, on: handles[0]).only
            try expectDataIndication(v4, from: Addr.peer, payload, to: Addr.clientV6)
            #expect(v4?.pointer == UnsafeRawPointer(h.payloadStart - 36))
            let v6 = h.receive(payload, from: Addr.peerV6, on: handles[1]).only
            try expectDataIndication(v6, from: Addr.peerV6, payload, to: Addr.clientV6)
            #expect(v6?.pointer == UnsafeRawPointer(h.payloadStart - 48))
        }
    }
}
