import Testing
@testable import RelayCore
import STUN

/// ChannelBind (RFC 8656 §12.2) and the ChannelData fast path both ways (§12.6, §12.7).
@Suite struct ServerChannelTests {
    @Test func channelBindThenChannelDataBothWaysZeroCopy() throws {
        let h = Harness()
        let (relays, handles, _) = try h.allocate()
        #expect(relays.count == 1)
        let bind = try h.channelBind(0x4000, to: Addr.peer)
        #expect(bind.only?.bytes == expectedResponse(.channelBind, .successResponse, id: transactionID(3), key: Credentials.alice.key) { _ in })

        // Client → peer: bytes[4...] of the same buffer, from the allocation socket.
        let payload: [UInt8] = Array(0..<100)
        let up = h.receive(channelData(0x4000, payload), from: Addr.client, bufferID: 42)
        let forward = try #require(up.only)
        #expect(forward.socket == handles[0])
        #expect(forward.destination == Addr.peer)
        #expect(forward.bytes == payload)
        #expect(forward.origin == .received(bufferID: 42))
        #expect(forward.pointer == UnsafeRawPointer(h.payloadStart + 4))

        // Peer → client: the 4-byte header written into the headroom, sent from the listener.
        let down = h.receive(payload, from: Addr.peer, on: handles[0], bufferID: 43)
        let back = try #require(down.only)
        #expect(back.socket == .listener(.ipv4))
        #expect(back.destination == Addr.client)
        #expect(back.bytes == channelData(0x4000, payload))
        #expect(back.origin == .received(bufferID: 43))
        #expect(back.pointer == UnsafeRawPointer(h.payloadStart - 4))

        #expect(h.server.statistics.clientToPeer == .init(packets: 1, bytes: 100))
        #expect(h.server.statistics.peerToClient == .init(packets: 1, bytes: 100))
    }

    @Test func dualAllocationRelaysEachFamilyThroughItsOwnSocket() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (relays, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        #expect(relays.map(\.family) == [.ipv4, .ipv6])
        try h.channelBind(0x4000, to: Addr.peer, client: Addr.clientV6)
        try h.channelBind(0x4001, to: Addr.peerV6, client: Addr.clientV6, id: 4)
        #expect(h.receive(channelData(0x4000, [4]), from: Addr.clientV6).only?.socket == handles[0])
        #expect(h.receive(channelData(0x4001, [6]), from: Addr.clientV6).only?.socket == handles[1])
        // Both come back to the IPv6 client through the IPv6 listener.
        let fromV4 = try #require(h.receive([4], from: Addr.peer, on: handles[0]).only)
        let fromV6 = try #require(h.receive([6], from: Addr.peerV6, on: handles[1]).only)
        #expect(fromV4.socket == .listener(.ipv6))
        #expect(fromV6.socket == .listener(.ipv6))
        #expect(fromV4.bytes == channelData(0x4000, [4]))
        #expect(fromV6.bytes == channelData(0x4001, [6]))
        // A peer talking to the wrong family's socket has no permission there.
        #expect(h.receive([6], from: Addr.peerV6, on: handles[0]).sent.isEmpty)
    }

    @Test func channelDataPaddingAndLengthChecks() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.channelBind(0x4001, to: Addr.peer)
        // Padding after the payload is allowed over UDP and not forwarded.
        let padded = channelData(0x4001, [1, 2, 3]) + [0]
        #expect(h.receive(padded, from: Addr.client).only?.bytes == [1, 2, 3])
        // Zero-length payload still produces a datagram (RFC 8656 §12.6).
        #expect(h.receive(channelData(0x4001, []), from: Addr.client).only?.bytes == [])
        // Length claims more than the datagram holds: "silently discarded".
        #expect(h.receive([0x40, 0x01, 0x00, 0x08, 1, 2], from: Addr.client).sent.isEmpty)
        // Shorter than the header.
        #expect(h.receive([0x40, 0x01, 0x00], from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.malformed == 2)
        _ = handles
    }

    @Test func channelDataWithoutBindingOrAllocationIsDropped() throws {
        let h = Harness()
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noAllocation == 1)
        let (_, handles, _) = try h.allocate()
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noChannel == 1)
        // A peer datagram without a permission is dropped.
        #expect(h.receive([1, 2, 3], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 1)
        // A datagram on a handle that was never handed out.
        #expect(h.receive([1, 2, 3], from: Addr.peer, on: .allocation(index: 77)).sent.isEmpty)
    }
}

/// ChannelBind's rules, expiry and cooldown, quotas and the relay-self (hairpin) policy.
@Suite struct ServerChannelBindTests {
    func code(_ out: Outputs) throws -> Int? { errorCode(try #require(out.only).bytes) }

    @Test func channelNumbersOutsideTheRangeAndMissingAttributesAre400() throws {
        let h = Harness()
        try h.allocate()
        #expect(try code(try h.channelBind(0x3FFF, to: Addr.peer)) == 400)
        #expect(try code(try h.channelBind(0x5000, to: Addr.peer, id: 4)) == 400)
        #expect(try code(try h.channelBind(0xFFFF, to: Addr.peer, id: 5)) == 400)
        let noPeer = message(.channelBind, id: transactionID(6), auth: try h.auth()) { $0.appendChannelNumber(0x4000) }
        #expect(try code(h.receive(noPeer, from: Addr.client)) == 400)
        let noNumber = message(.channelBind, id: transactionID(7), auth: try h.auth()) { $0.appendXorAddress(.xorPeerAddress, Addr.peer) }
        #expect(try code(h.receive(noNumber, from: Addr.client)) == 400)
        #expect(h.server.tableSizes.channels == 0)
    }

    @Test func rfc5766ChannelNumbersOnlyWhenConfigured() throws {
        // RFC 8656 §12: "0x5000 through 0xFFFF: Reserved"; RFC 5766 §11: "0x4000 through 0x7FFF:
        // These values are the allowed channel numbers". turnutils_uclient bound 0x671D.
        let strict = Harness()
        try strict.allocate()
        #expect(try code(try strict.channelBind(0x671D, to: Addr.peer)) == 400)
        #expect(strict.receive(channelData(0x671D, [1]), from: Addr.client).sent.isEmpty)
        #expect(strict.server.statistics.drops.unknownFirstByte == 1)

        let h = Harness { $0.rfc5766ChannelNumbers = true }
        let (_, handles, _) = try h.allocate()
        #expect(try code(try h.channelBind(0x671D, to: Addr.peer)) == nil)
        #expect(try code(try h.channelBind(0x7FFF, to: Addr.peer2, id: 4)) == nil)
        #expect(try code(try h.channelBind(0x8000, to: TransportAddress("9.9.9.9:1")!, id: 5)) == 400)
        #expect(try code(try h.channelBind(0x3FFF, to: TransportAddress("9.9.9.9:1")!, id: 6)) == 400)
        // ChannelData on 0x671D both ways, zero copy as on the RFC 8656 range.
        let up = try #require(h.receive(channelData(0x671D, [1, 2, 3]), from: Addr.client, bufferID: 5).only)
        #expect(up.socket == handles[0])
        #expect(up.destination == Addr.peer)
        #expect(up.bytes == [1, 2, 3])
        #expect(up.pointer == UnsafeRawPointer(h.payloadStart + 4))
        let down = try #require(h.receive([4, 5], from: Addr.peer, on: handles[0]).only)
        #expect(down.bytes == channelData(0x671D, [4, 5]))
        #expect(try #require(h.receive(channelData(0x7FFF, [6]), from: Addr.client).only).destination == Addr.peer2)
        // First bytes 0x80 and up are never ChannelData.
        #expect(h.receive([0x80, 0x00, 0x00, 0x01, 7], from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.unknownFirstByte == 1)
    }

    @Test func aChannelOrPeerBoundToSomethingElseIs400() throws {
        let h = Harness()
        try h.allocate()
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer)) == nil)
        // RFC 8656 §12.2: "The channel number is not currently bound to a different transport address".
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer2, id: 4)) == 400)
        // "The transport address is not currently bound to a different channel number."
        #expect(try code(try h.channelBind(0x4001, to: Addr.peer, id: 5)) == 400)
        // Same IP, other port: another transport address, so another channel is fine.
        #expect(try code(try h.channelBind(0x4001, to: TransportAddress(ip: Addr.peer.ip, port: 5001), id: 6)) == nil)
        #expect(h.server.tableSizes.channels == 2)
    }

    @Test func rebindingTheSamePairRefreshesTheBinding() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate { $0.appendUInt32(.lifetime, 3600) }
        try h.channelBind(0x4000, to: Addr.peer)
        h.advance(seconds: 500)
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer, id: 4)) == nil)
        h.advance(seconds: 500)
        // Bound until 1100 (refreshed at 500), and the permission until 800 — refresh it too.
        try h.createPermission([Addr.peer], id: 5)
        #expect(h.receive(channelData(0x4000, [9]), from: Addr.client).only?.socket == handles[0])
        h.advance(seconds: 100)
        #expect(h.receive(channelData(0x4000, [9]), from: Addr.client).sent.isEmpty)
    }

    @Test func aBoundChannelStopsWhenItsPermissionExpires() throws {
        // RFC 8656 §12.1: "permissions need to be refreshed more frequently than channels".
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.channelBind(0x4000, to: Addr.peer)
        h.advance(seconds: 300)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.receive([2], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 2)
        #expect(h.server.invariantViolations() == [])
        // A new permission (CreatePermission, not a rebind) lets the channel carry data again.
        try h.createPermission([Addr.peer], id: 4)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.socket == handles[0])
        #expect(h.receive([2], from: Addr.peer, on: handles[0]).only?.bytes == channelData(0x4000, [2]))
    }

    @Test func anExpiredChannelCoolsDownForFiveMinutes() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate { $0.appendUInt32(.lifetime, 3600) }
        try h.channelBind(0x4000, to: Addr.peer)
        // Keep the permission alive so the peer's traffic shows what happens without a channel.
        h.advance(seconds: 299)
        try h.createPermission([Addr.peer], id: 4)
        h.advance(seconds: 299)
        try h.createPermission([Addr.peer], id: 5)
        h.advance(seconds: 2)
        // 600 s: unbound. ChannelData is dropped; peer datagrams become Data indications.
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noChannel == 1)
        let down = try #require(h.receive([7, 7], from: Addr.peer, on: handles[0]).only)
        #expect(try inspect(down.bytes) { $0.type } == STUNMessageType(method: .data, messageClass: .indication))
        // During the cooldown neither the number nor the peer can be bound to something else.
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer2, id: 6)) == 400)
        #expect(try code(try h.channelBind(0x4001, to: Addr.peer, id: 7)) == 400)
        h.advance(seconds: 299)
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer2, id: 8)) == 400)
        // At 900 s the entry is gone and both may be bound anew.
        h.advance(seconds: 1)
        #expect(h.server.tableSizes.channels == 0)
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer2, id: 9)) == nil)
        #expect(try code(try h.channelBind(0x4001, to: Addr.peer, id: 10)) == nil)
    }

    @Test func rebindingTheSamePairDuringCooldownBindsItAgain() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate { $0.appendUInt32(.lifetime, 3600) }
        try h.channelBind(0x4000, to: Addr.peer)
        h.advance(seconds: 700)
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer, id: 4)) == nil)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.socket == handles[0])
        #expect(h.receive([2], from: Addr.peer, on: handles[0]).only?.bytes == channelData(0x4000, [2]))
        // And it lasts a full 10 minutes from the rebind (the cooldown timer is gone).
        h.advance(seconds: 599)
        try h.createPermission([Addr.peer], id: 5)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.count == 1)
        h.advance(seconds: 1)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
    }

    @Test func channelsPerAllocationAreBounded() throws {
        // RFC 8656 §12.2: "If the request is valid, but the server is unable to fulfill the request
        // due to some capacity limit or similar, the server replies with a 508".
        let h = Harness { $0.maxChannelsPerAllocation = 2 }
        try h.allocate()
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer)) == nil)
        #expect(try code(try h.channelBind(0x4001, to: Addr.peer2, id: 4)) == nil)
        #expect(try code(try h.channelBind(0x4002, to: TransportAddress("9.9.9.9:1")!, id: 5)) == 508)
        // Refreshing a bound one still works.
        #expect(try code(try h.channelBind(0x4001, to: Addr.peer2, id: 6)) == nil)
        #expect(h.server.tableSizes.channels == 2)
    }

    @Test func channelBindPolicyFamilyAndAllocationErrors() throws {
        let h = Harness()
        #expect(try code(try h.channelBind(0x4000, to: Addr.peer)) == 437)
        try h.allocate()
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress("127.0.0.1:5000")!, id: 4)) == 403)
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress("172.16.0.1:5000")!, id: 5)) == 403)
        #expect(try code(try h.channelBind(0x4000, to: Addr.peerV6, id: 6)) == 443)
        // The relay's own address: only its live relay ports (hairpin), never e.g. its listener.
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress(ip: .v4(Addr.relayV4), port: 3478), id: 7)) == 403)
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress(ip: .v4(Addr.relayV4), port: 50000), id: 8)) == 403)
        let ownPort = h.relayPort
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress(ip: .v4(Addr.relayV4), port: ownPort), id: 9)) == nil)
        #expect(h.server.statistics.responses.forbidden403 == 4)
    }

    @Test func hairpinReachesAnotherWorkersLiveAllocationAndNothingElseOnTheRelayAddress() throws {
        // Two workers of one process share the live relay ports. A peer on the relay address is
        // admitted at a port of the other worker's slice only while an allocation holds it there.
        let live = LiveRelayPorts()
        let a = Harness(liveRelayPorts: live) { $0.portRange = 50000...50999 }
        let b = Harness(seed: 2, liveRelayPorts: live) { $0.portRange = 55000...55999 }
        try a.allocate()
        try b.allocate(Addr.client2)
        let other = TransportAddress(ip: .v4(Addr.relayV4), port: b.relayPort(of: Addr.client2))
        #expect(try code(try a.channelBind(0x4000, to: other)) == nil)
        a.receive(channelData(0x4000, [1, 2, 3]), from: Addr.client).only.map { #expect($0.destination == other) }
        // Not an allocation: 403, whatever the range.
        #expect(try code(try a.channelBind(0x4001, to: TransportAddress(ip: .v4(Addr.relayV4), port: 55998), id: 4)) == 403)
        // The other allocation ends: the bound channel no longer relays to its port.
        b.out.reset()
        _ = try b.refresh(lifetime: 0, client: Addr.client2)
        #expect(!live.isLive(other.port, family: .ipv4))
        #expect(a.receive(channelData(0x4000, [1, 2, 3]), from: Addr.client).sent.isEmpty)
        #expect(a.server.statistics.drops.peerDenied == 1)
    }

    @Test func portZeroIsNeverAPeer() throws {
        // RFC 8656 §12.2: "The server MAY impose restrictions on the IP address and port values
        // allowed in the XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects
        // the request with a 403 (Forbidden) error."
        let h = Harness()
        try h.allocate()
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress("8.8.8.8:0")!)) == 403)
        // A Send indication to port 0 is dropped and counted (indications get no answer).
        _ = try h.createPermission(Addr.peer)
        let sent = h.receive(message(.send, .indication) { w in
            w.appendXorAddress(.xorPeerAddress, TransportAddress("8.8.8.8:0")!)
            // (AddressSanitizer found this test passing a pointer to a temporary array here.)
            [UInt8(1)].withUnsafeBytes { w.append(.data, bytes: $0) }
        }, from: Addr.client)
        #expect(sent.sent.isEmpty)
        #expect(h.server.statistics.drops.peerDenied == 1)
    }

    @Test func theListenerPortsAreNeverAPeerInAnySpelling() throws {
        // Even where the operator opened loopback: no TURN inside TURN.
        let h = Harness {
            $0.listenerPorts = [3478]
            $0.peerPolicy = PeerPolicy(allow: [CIDR("127.0.0.0/8")!, CIDR("::/0")!])
            $0.localAddresses = [.v4(IPv4Address(10, 1, 2, 3))]
        }
        try h.allocate()
        var id: UInt8 = 10
        for spelling in ["127.0.0.1:3478", "127.0.0.2:3478", "0.0.0.0:3478", "203.0.113.10:3478", "10.1.2.3:3478"] {
            #expect(try code(try h.channelBind(0x4000, to: TransportAddress(spelling)!, id: id)) == 403, "\(spelling)")
            id += 1
        }
        // Another port on loopback stays open where the operator opened it.
        #expect(try code(try h.channelBind(0x4000, to: TransportAddress("127.0.0.1:3479")!, id: id)) == nil)
    }

    @Test func operatorAllowOpensAPeerOnTheRelaysOwnIPv6Address() throws {
        // A relay on ::1 with --allow-peer ::1/128 and an IPv6 peer on ::1, outside the relay
        // ports: ::1 is the only IPv6 loopback address, so the peer shares the relay's address.
        let selfV6 = IPv6Address("::1")!
        let peer = TransportAddress(ip: .v6(selfV6), port: 40123)
        let h = Harness {
            $0.relayAddressIPv6 = selfV6
            $0.portRange = 50000...50999
            $0.peerPolicy = PeerPolicy(allow: [CIDR("::1/128")!])
        }
        let (relays, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }
        #expect(relays.map(\.family) == [.ipv6])
        #expect(errorCode(try #require(try h.createPermission([peer], client: Addr.clientV6).only).bytes) == nil)
        #expect(try code(try h.channelBind(0x4000, to: peer, client: Addr.clientV6)) == nil)
        let up = try #require(h.receive(channelData(0x4000, [9, 8]), from: Addr.clientV6).only)
        #expect(up.socket == handles[0])
        #expect(up.destination == peer)
        #expect(try #require(h.receive([7], from: peer, on: handles[0]).only).bytes == channelData(0x4000, [7]))
        // A Send indication to the peer is relayed too (turnutils_uclient -x -s).
        let indication = message(.send, .indication, id: transactionID(77)) { w in
            w.appendXorAddress(.xorPeerAddress, peer)
            [UInt8]([5, 6]).withUnsafeBytes { w.append(.data, bytes: $0) }
        }
        let sent = try #require(h.receive(indication, from: Addr.clientV6).only)
        #expect(sent.destination == peer)
        #expect(sent.bytes == [5, 6])

        // Without the operator allow, the same peer is the relay itself on a non-relay port: 403.
        let closed = Harness {
            $0.relayAddressIPv6 = selfV6
            $0.portRange = 50000...50999
        }
        try closed.allocate(Addr.clientV6) { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }
        // (A permission is for the IP address only, so CreatePermission succeeds: hairpin.)
        #expect(errorCode(try #require(try closed.createPermission([peer], client: Addr.clientV6).only).bytes) == nil)
        #expect(try code(try closed.channelBind(0x4000, to: peer, client: Addr.clientV6)) == 403)
        #expect(closed.receive(indication, from: Addr.clientV6).sent.isEmpty)
        // An operator deny of the address keeps it closed even with the allow.
        let denied = Harness {
            $0.relayAddressIPv6 = selfV6
            $0.portRange = 50000...50999
            $0.peerPolicy = PeerPolicy(allow: [CIDR("::1/128")!], deny: [CIDR("::1/128")!])
        }
        try denied.allocate(Addr.clientV6) { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }
        #expect(try code(try denied.channelBind(0x4000, to: peer, client: Addr.clientV6)) == 403)
    }

    @Test func hairpinBetweenTwoClientsOfThisRelay() throws {
        let h = Harness()
        let (relaysA, handlesA, _) = try h.allocate(Addr.client, as: .alice, id: 1)
        let (relaysB, handlesB, _) = try h.allocate(Addr.client2, as: .bob, id: 2)
        let relayA = try #require(relaysA.first), relayB = try #require(relaysB.first)
        #expect(try code(try h.channelBind(0x4000, to: relayB, client: Addr.client, id: 3)) == nil)
        let bindB = message(.channelBind, id: transactionID(4), auth: try h.auth(.bob, client: Addr.client2)) { w in
            w.appendChannelNumber(0x4100)
            w.appendXorAddress(.xorPeerAddress, relayA)
        }
        #expect(try code(h.receive(bindB, from: Addr.client2)) == nil)
        // A → B: out of A's socket to B's relayed address...
        let hop = try #require(h.receive(channelData(0x4000, [1, 2, 3]), from: Addr.client).only)
        #expect(hop.socket == handlesA[0])
        #expect(hop.destination == relayB)
        // ...which the kernel delivers to B's socket, from A's relayed address.
        let delivered = try #require(h.receive(hop.bytes, from: relayA, on: handlesB[0]).only)
        #expect(delivered.destination == Addr.client2)
        #expect(delivered.bytes == channelData(0x4100, [1, 2, 3]))
    }

    @Test func refreshDeletingTheAllocationStopsRelayingAndTimers() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.channelBind(0x4000, to: Addr.peer)
        try h.createPermission([Addr.peer2], id: 4)
        let refresh = message(.refresh, id: transactionID(5), auth: try h.auth()) { $0.appendUInt32(.lifetime, 0) }
        let out = h.receive(refresh, from: Addr.client)
        #expect(out.closes == handles)
        #expect(out.only?.bytes == expectedResponse(.refresh, .successResponse, id: transactionID(5), key: Credentials.alice.key) {
            $0.appendUInt32(.lifetime, 0)
        })
        #expect(h.server.nextTimeout() == nil)
        var sizes = h.server.tableSizes
        sizes.transactionCache = 0
        #expect(sizes == ServerTableSizes())
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.receive([1], from: Addr.peer, on: handles[0]).sent.isEmpty)
        // A retransmitted delete gets the same success, not 437 (RFC 8489 §6.3.4).
        #expect(h.receive(refresh, from: Addr.client).only?.bytes == out.only?.bytes)
        // Nothing fires later.
        #expect(h.advance(seconds: 4000).sent.isEmpty)
        #expect(h.advance(seconds: 0).requests.isEmpty)
    }
}
