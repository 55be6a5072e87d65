import Glibc
import RelayCore
import RelayIO
import TURNTestClient
import STUN
import Testing
import TestSupport

/// The real core behind the real io_uring runtime, driven over loopback by `TestTURNClient`.
/// Peers live on 127.0.0.2: the relay address is 127.0.0.1, and the core treats its own relay
/// address as "relay self" (only its relay ports are reachable there).
@Suite(.serialized, .dedicatedThread)
struct RelayIntegrationTests {
    @Test(arguments: IOBackendKind.allCases) func allocatePermissionChannelAndDataBothWays(backend: IOBackendKind) throws {
        let relay = try RelayFixture(backend: backend)
        let client = try relay.client()
        let peer = try BlockingUDPSocket(bindTo: RelayFixture.peerAddress)

        let allocation = try #require(client.allocate())
        #expect(allocation.messageClass == .successResponse)
        #expect(allocation.hasMessageIntegrity)
        let relayed = try #require(allocation.xorRelayedAddresses.first)
        #expect(relayed.ip == .v4(.loopback))
        #expect(allocation.xorMappedAddress == client.socket.localAddress)

        #expect(client.createPermission(peer: peer.localAddress)?.messageClass == .successResponse)

        // Permission but no channel: Send indication out, Data indication back.
        client.sendIndication(to: peer.localAddress, payload: [1, 2, 3, 4, 5])
        let viaSend = peer.receive()
        #expect(viaSend?.bytes == [1, 2, 3, 4, 5])
        #expect(viaSend?.from == relayed)
        peer.send([6, 7, 8], to: relayed)
        #expect(client.receive() == .dataIndication(peer: peer.localAddress, payload: [6, 7, 8]))

        // RFC 8656 §12: channel numbers 0x4000 through 0x4FFF.
        #expect(client.channelBind(0x4001, peer: peer.localAddress)?.messageClass == .successResponse)
        for i in 0..<50 {
            let up = payload(i, length: 20 + i)
            client.sendChannelData(0x4001, payload: up)
            let atPeer = peer.receive()
            #expect(atPeer?.bytes == up)
            #expect(atPeer?.from == relayed)
            let down = payload(i + 1, length: 100 + i)
            peer.send(down, to: relayed)
            #expect(client.receive() == .channelData(channel: 0x4001, payload: down))
        }
        // A datagram the peer sends right after another: both arrive, in order (the second may be
        // coalesced by GRO with the first on the allocation socket).
        peer.send(payload(60, length: 200), to: relayed)
        peer.send(payload(61, length: 200), to: relayed)
        #expect(client.receive() == .channelData(channel: 0x4001, payload: payload(60, length: 200)))
        #expect(client.receive() == .channelData(channel: 0x4001, payload: payload(61, length: 200)))

        let stats = relay.stop()
        #expect(stats[0].droppedInvalidOutbound == 0)
        #expect(stats[0].allocationSocketsOpened == 1)
    }

    @Test(arguments: IOBackendKind.allCases) func wrongPasswordIsRefusedWith401(backend: IOBackendKind) throws {
        let relay = try RelayFixture(backend: backend)
        let client = try TestTURNClient(server: relay.address, username: "\(UInt64(time(nil)) + 3600):mallory",
                                        password: "not-the-password")
        let response = try #require(client.allocate())
        #expect(response.messageClass == .errorResponse)
        #expect(response.errorCode == 401)
    }

    @Test(arguments: IOBackendKind.allCases) func peerInDeniedRangeIsRefusedWith403(backend: IOBackendKind) throws {
        let relay = try RelayFixture(backend: backend)
        let client = try relay.client()
        #expect(client.allocate()?.messageClass == .successResponse)
        // 10.0.0.0/8 is denied by default; 169.254.169.254 is the cloud metadata service.
        for denied in ["10.1.2.3:5000", "169.254.169.254:80", "0.0.0.0:9"] {
            let response = client.createPermission(peer: TransportAddress(denied)!)
            #expect(response?.messageClass == .errorResponse)
            #expect(response?.errorCode == 403)
            #expect(client.channelBind(0x4002, peer: TransportAddress(denied)!)?.errorCode == 403)
        }
    }

    /// A reload whose peer policy denies a peer in use applies to the existing permission at once
    /// (on the worker's thread, through `DatagramProcessor.apply`): the bound channel stays but
    /// relays nothing either way, and binding it again is refused. RFC 8656 §12.2: "if a value is
    /// not allowed, the server rejects the request with a 403 (Forbidden) error."
    @Test(arguments: IOBackendKind.allCases) func reloadDenyingAPeerInUseStopsItsChannel(backend: IOBackendKind) throws {
        let reloads = ReloadMailbox<TURNReload>()
        let relay = try RelayFixture(backend: backend, reloads: reloads)
        let client = try relay.client()
        let peer = try BlockingUDPSocket(bindTo: RelayFixture.peerAddress)
        let relayed = try #require(client.allocate()?.xorRelayedAddresses.first)
        #expect(client.channelBind(0x4004, peer: peer.localAddress)?.messageClass == .successResponse)
        client.sendChannelData(0x4004, payload: [1, 2, 3])
        #expect(peer.receive()?.bytes == [1, 2, 3])
        peer.send([4], to: relayed)
        #expect(client.receive() == .channelData(channel: 0x4004, payload: [4]))

        let generation = reloads.post(credentials: CredentialStore(restSecrets: [RelayFixture.secret]),
                                      peerPolicy: PeerPolicy(allow: [CIDR("127.0.0.0/8")!], deny: [CIDR("127.0.0.2/32")!]))
        for _ in 0..<100 where reloads.appliedGenerations()[0] != generation { usleep(20_000) }
        #expect(reloads.appliedGenerations()[0] == generation)
        client.sendChannelData(0x4004, payload: [5])
        #expect(peer.receive(timeoutMilliseconds: 300) == nil)
        peer.send([6], to: relayed)
        #expect(client.receive(timeoutMilliseconds: 300) == nil)
        #expect(client.channelBind(0x4004, peer: peer.localAddress)?.errorCode == 403)
        // The allocation itself is untouched: a Refresh still succeeds.
        #expect(client.refresh(lifetime: 600)?.messageClass == .successResponse)
        _ = relay.stop()
    }

    @Test(arguments: IOBackendKind.allCases) func exhaustedPortRangeAnswers508(backend: IOBackendKind) throws {
        let free = try ListenPortClaims.freePort()
        let relay = try RelayFixture(backend: backend) { $0.portRange = free...free }
        let first = try relay.client(id: "first")
        let allocated = try #require(first.allocate())
        #expect(allocated.messageClass == .successResponse)
        #expect(allocated.xorRelayedAddresses.first?.port == free)
        let second = try relay.client(id: "second")
        let refused = try #require(second.allocate())
        #expect(refused.messageClass == .errorResponse)
        // RFC 8656 §7.2: "508 (Insufficient Capacity)" when no port can be allocated.
        #expect(refused.errorCode == 508)
    }

    @Test(arguments: IOBackendKind.allCases) func expiredAllocationClosesItsSocketAndStopsRelaying(backend: IOBackendKind) throws {
        let relay = try RelayFixture(backend: backend) {
            $0.defaultLifetime = 1
            $0.maxLifetime = 1
        }
        let client = try relay.client()
        let peer = try BlockingUDPSocket(bindTo: RelayFixture.peerAddress)
        let allocation = try #require(client.allocate())
        #expect(allocation.lifetime == 1)
        let relayed = try #require(allocation.xorRelayedAddresses.first)
        #expect(client.channelBind(0x4003, peer: peer.localAddress)?.messageClass == .successResponse)
        peer.send([1], to: relayed)
        #expect(client.receive() == .channelData(channel: 0x4003, payload: [1]))

        // After the lifetime the worker's timer expires it and the shell closes the socket: the
        // port can be bound by someone else.
        var rebound: BlockingUDPSocket?
        for _ in 0..<40 where rebound == nil {
            usleep(100_000)
            rebound = try? BlockingUDPSocket(bindTo: relayed)
        }
        #expect(rebound != nil)
        // RFC 8656 §7.3: a Refresh for an allocation that no longer exists gets 437.
        #expect(client.refresh(lifetime: 600)?.errorCode == 437)
        let stats = relay.stop()
        #expect(stats[0].allocationSocketsOpen == 0)
    }

    @Test(arguments: IOBackendKind.allCases) func garbageOnListenerAndRelaySocketsDoesNotDisturbAnAllocation(backend: IOBackendKind) throws {
        let relay = try RelayFixture(backend: backend)
        let client = try relay.client()
        let peer = try BlockingUDPSocket(bindTo: RelayFixture.peerAddress)
        let relayed = try #require(client.allocate()?.xorRelayedAddresses.first)
        #expect(client.channelBind(0x4004, peer: peer.localAddress)?.messageClass == .successResponse)

        let attacker = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        var generator = SplitMix64(seed: 0x7E57)
        for length in [0, 1, 3, 4, 5, 19, 20, 21, 36, 100, 1500] {
            let garbage = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            attacker.send(garbage, to: relay.address)
            attacker.send(garbage, to: relayed)
            // STUN-looking header with a lying length, and ChannelData with a lying length.
            attacker.send([0x00, 0x01, 0xFF, 0xFC, 0x21, 0x12, 0xA4, 0x42] + garbage, to: relay.address)
            attacker.send([0x40, 0x04, 0xFF, 0xFF] + garbage, to: relay.address)
        }
        client.sendChannelData(0x4004, payload: [9, 9, 9])
        #expect(peer.receive()?.bytes == [9, 9, 9])
        peer.send([8, 8], to: relayed)
        #expect(client.receive() == .channelData(channel: 0x4004, payload: [8, 8]))
    }
}
