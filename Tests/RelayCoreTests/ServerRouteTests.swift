import Testing
@testable import RelayCore
import STUN

/// The routes the core hands the kernel fast path (`ChannelRoute`, `RouteChange`): `.up` when a
/// channel binding becomes usable, `.down` (the same value) when it stops, in the batch of the
/// request or timer that changed it, and nothing otherwise. The harness applies every batch's
/// changes as the shell does and checks after each call that an up is never repeated, a down
/// always names a route that is up, and the shell's routes equal the core's.
///
/// RFC 8656 §9: "By sending either CreatePermission requests or ChannelBind requests, the client
/// can cause the server to install or refresh a permission for a given IP address." §12: "A channel
/// binding lasts for 10 minutes unless refreshed. Refreshing the binding (by the server receiving
/// a ChannelBind request rebinding the channel to the same peer) resets the time-to-expiry timer
/// back to 10 minutes." §12.6: "the receipt of a ChannelData message MUST NOT refresh either the
/// channel binding or the permission towards the peer." So only requests and timers change routes;
/// relayed traffic never does.
@Suite struct ServerRouteTests {
    func code(_ out: Outputs) throws -> Int? { errorCode(try #require(out.only).bytes) }

    func route(_ h: Harness, _ channel: UInt16, _ peer: TransportAddress, client: TransportAddress = Addr.client,
               handle: SocketHandle, port: UInt16) -> ChannelRoute {
        ChannelRoute(client: client, channel: channel, peer: peer, relaySocket: handle, relayPort: port)
    }

    @Test func channelBindEmitsExactlyOneUpAndRefreshesEmitNothing() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        let bind = try h.channelBind(0x4000, to: Addr.peer)
        #expect(try code(bind) == nil)
        let expected = route(h, 0x4000, Addr.peer, handle: handles[0], port: h.relayPort)
        #expect(bind.routes == [.up(expected)])
        // Relayed traffic changes no route (§12.6: it refreshes nothing).
        #expect(h.receive(channelData(0x4000, [1, 2]), from: Addr.client).routes == [])
        #expect(h.receive([3], from: Addr.peer, on: handles[0]).routes == [])
        // §12: rebinding the same pair refreshes the binding; CreatePermission refreshes the
        // permission. The binding was usable throughout: nothing.
        h.advance(seconds: 100)
        let rebind = try h.channelBind(0x4000, to: Addr.peer, id: 4)
        #expect(try code(rebind) == nil)
        #expect(rebind.routes == [])
        #expect(try h.createPermission([Addr.peer], id: 5).routes == [])
        // A permission alone (no channel) is no route.
        #expect(try h.createPermission([Addr.peer2], id: 6).routes == [])
        #expect(h.server.channelRoutes == [expected])
    }

    @Test func aPermissionFirstThenChannelBindGoesUpOnce() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        #expect(try h.createPermission([Addr.peer]).routes == [])
        #expect(try h.channelBind(0x4000, to: Addr.peer, id: 3).routes
            == [.up(route(h, 0x4000, Addr.peer, handle: handles[0], port: h.relayPort))])
    }

    @Test func channelExpiryTakesTheRouteDownAndARebindDuringCooldownBringsItBack() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate { $0.appendUInt32(.lifetime, 3600) }
        let up = try #require(try h.channelBind(0x4000, to: Addr.peer).routes.first)
        guard case .up(let value) = up else { Issue.record("expected an up, got \(up)"); return }
        // The permission is kept alive by CreatePermission; ChannelData does not refresh the
        // channel (§12.6).
        h.advance(seconds: 299)
        #expect(try h.createPermission([Addr.peer], id: 4).routes == [])
        h.advance(seconds: 299)
        #expect(try h.createPermission([Addr.peer], id: 5).routes == [])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.count == 1)
        #expect(h.advance(seconds: 1).routes == [])
        // 600 s: RFC 8656 §12, "When the channel binding expires, the channel becomes unbound."
        #expect(h.advance(seconds: 1).routes == [.down(value)])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        // Rebinding the same pair during the cooldown binds it again: up, the same value.
        #expect(try h.channelBind(0x4000, to: Addr.peer, id: 6).routes == [.up(value)])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.socket == handles[0])
    }

    @Test func theCooldownsEndChangesNoRoute() throws {
        let h = Harness()
        try h.allocate { $0.appendUInt32(.lifetime, 3600) }
        try h.channelBind(0x4000, to: Addr.peer)
        #expect(h.advance(seconds: 300).routes.count == 1)  // the permission: down
        #expect(h.advance(seconds: 300).routes == [])        // the channel: already down
        #expect(h.advance(seconds: 300).routes == [])        // the cooldown ends
        #expect(h.server.tableSizes.channels == 0)
    }

    @Test func permissionExpiryWhileBoundTakesTheRouteDownAndCreatePermissionBringsItBack() throws {
        // RFC 8656 §9: "The Permission Lifetime MUST be 300 seconds (= 5 minutes)." §12.1:
        // "permissions need to be refreshed more frequently than channels".
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        let value = route(h, 0x4000, Addr.peer, handle: handles[0], port: h.relayPort)
        #expect(try h.channelBind(0x4000, to: Addr.peer).routes == [.up(value)])
        #expect(h.advance(seconds: 299).routes == [])
        #expect(h.advance(seconds: 1).routes == [.down(value)])
        // Still bound, but nothing is relayed either way (the userspace path drops it).
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.receive([2], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 2)
        // A permission re-installed for the bound channel: up again, the same value.
        #expect(try h.createPermission([Addr.peer], id: 4).routes == [.up(value)])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.destination == Addr.peer)
    }

    @Test func refreshWithLifetimeZeroTakesEveryRouteDownWithTheSocketClose() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.channelBind(0x4000, to: Addr.peer)
        try h.channelBind(0x4001, to: Addr.peer2, id: 4)
        try h.channelBind(0x4002, to: TransportAddress("9.9.9.9:7")!, id: 6)
        _ = h.advance(seconds: 300)  // every permission lapses: all three down
        try h.createPermission([Addr.peer, Addr.peer2], id: 7)  // two come back
        #expect(h.server.channelRoutes.count == 2)
        let port = h.relayPort
        // RFC 8656 §8.2: "If the 'desired lifetime' is zero, then the request succeeds and the
        // allocation is deleted." The downs come in the same batch as the close.
        let refresh = try h.refresh(lifetime: 0, id: 8)
        #expect(Set(refresh.routes) == [.down(route(h, 0x4000, Addr.peer, handle: handles[0], port: port)),
                                        .down(route(h, 0x4001, Addr.peer2, handle: handles[0], port: port))])
        #expect(refresh.routes.count == 2)
        #expect(refresh.closes == [handles[0]])
        #expect(h.server.channelRoutes.isEmpty)
    }

    @Test func allocationExpiryTakesItsRoutesDown() throws {
        let h = Harness { $0.defaultLifetime = 120 }
        let (_, handles, _) = try h.allocate()
        let value = route(h, 0x4000, Addr.peer, handle: handles[0], port: h.relayPort)
        #expect(try h.channelBind(0x4000, to: Addr.peer).routes == [.up(value)])
        #expect(h.advance(seconds: 119).routes == [])
        // RFC 8656 §9: "If an allocation expires, all its permissions expire with it."
        let expiry = h.advance(seconds: 1)
        #expect(expiry.routes == [.down(value)])
        #expect(expiry.closes == [handles[0]])
        #expect(h.server.allocationCount == 0)
    }

    @Test func dualStackRoutesUseThePeersFamilyAndGoDownWithThatFamily() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (relays, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        #expect(relays.map(\.family) == [.ipv4, .ipv6])
        let v4 = route(h, 0x4000, Addr.peer, client: Addr.clientV6, handle: handles[0], port: relays[0].port)
        let v6 = route(h, 0x4001, Addr.peerV6, client: Addr.clientV6, handle: handles[1], port: relays[1].port)
        #expect(try h.channelBind(0x4000, to: Addr.peer, client: Addr.clientV6).routes == [.up(v4)])
        #expect(try h.channelBind(0x4001, to: Addr.peerV6, client: Addr.clientV6, id: 4).routes == [.up(v6)])
        // RFC 8656 §8.1: "When refreshing a dual allocation, the client includes a
        // REQUESTED-ADDRESS-FAMILY attribute indicating the address family type that should be
        // refreshed." With lifetime 0 only that relayed address goes, with its peers' routes.
        let request = message(.refresh, id: transactionID(5), auth: try h.auth(client: Addr.clientV6)) { w in
            w.appendUInt32(.lifetime, 0)
            w.appendAddressFamily(.requestedAddressFamily, .ipv6)
        }
        let removed = h.receive(request, from: Addr.clientV6)
        #expect(removed.routes == [.down(v6)])
        #expect(removed.closes == [handles[1]])
        #expect(h.server.channelRoutes == [v4])
        #expect(try h.refresh(lifetime: 0, client: Addr.clientV6, id: 6).routes == [.down(v4)])
    }

    @Test func oneFamilyOfADualAllocationExpiringTakesOnlyItsRoutesDown() throws {
        // RFC 8656 §8.1: the relayed addresses of a dual allocation are refreshed separately, and
        // one that is not refreshed expires alone.
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (relays, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        let v4 = route(h, 0x4000, Addr.peer, client: Addr.clientV6, handle: handles[0], port: relays[0].port)
        let v6 = route(h, 0x4001, Addr.peerV6, client: Addr.clientV6, handle: handles[1], port: relays[1].port)
        try h.channelBind(0x4000, to: Addr.peer, client: Addr.clientV6)
        try h.channelBind(0x4001, to: Addr.peerV6, client: Addr.clientV6, id: 4)
        h.advance(seconds: 250)
        let request = message(.refresh, id: transactionID(5), auth: try h.auth(client: Addr.clientV6)) { w in
            w.appendUInt32(.lifetime, 600)
            w.appendAddressFamily(.requestedAddressFamily, .ipv4)
        }
        #expect(h.receive(request, from: Addr.clientV6).routes == [])
        // The permissions (300 s) are kept alive by CreatePermission.
        try h.createPermission([Addr.peer, Addr.peerV6], client: Addr.clientV6, id: 6)
        h.advance(seconds: 250)
        try h.createPermission([Addr.peer, Addr.peerV6], client: Addr.clientV6, id: 7)
        // The IPv4 channel is refreshed (§12: "Refreshing the binding ... resets the time-to-expiry
        // timer back to 10 minutes"); the IPv6 one would expire at 600 s with its relayed address.
        #expect(try h.channelBind(0x4000, to: Addr.peer, client: Addr.clientV6, id: 8).routes == [])
        // 600 s: the IPv6 relayed address expires; only its peer's route goes down.
        #expect(h.advance(seconds: 99).routes == [])
        let expiry = h.advance(seconds: 1)
        #expect(expiry.routes == [.down(v6)])
        #expect(expiry.closes == [handles[1]])
        #expect(h.server.channelRoutes == [v4])
    }

    @Test func ipv6OnlyAllocationRoutes() throws {
        let h = Harness { $0.relayAddressIPv6 = Addr.relayV6 }
        let (relays, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }
        #expect(relays.map(\.family) == [.ipv6])
        let value = route(h, 0x4abc, Addr.peerV6, client: Addr.clientV6, handle: handles[0], port: relays[0].port)
        #expect(try h.channelBind(0x4abc, to: Addr.peerV6, client: Addr.clientV6).routes == [.up(value)])
        #expect(h.advance(seconds: 300).routes == [.down(value)])
    }

    @Test func reloadDenyingThePeerTakesItsRouteDownCountsAndDropsItsTraffic() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        let port = h.relayPort
        let denied = route(h, 0x4000, Addr.peer, handle: handles[0], port: port)
        let kept = route(h, 0x4001, Addr.peer2, handle: handles[0], port: port)
        try h.channelBind(0x4000, to: Addr.peer)
        try h.channelBind(0x4001, to: Addr.peer2, id: 4)
        // A reload that denies nothing in use changes nothing.
        #expect(h.reload(peerPolicy: PeerPolicy(deny: [CIDR("9.9.9.0/24")!])).routes == [])
        #expect(h.server.statistics.permissionsRevokedByPolicy == 0)
        // One that denies 8.8.8.8: its permission is revoked, its route goes down.
        let reload = h.reload(peerPolicy: PeerPolicy(deny: [CIDR("8.8.8.0/24")!]))
        #expect(reload.routes == [.down(denied)])
        #expect(h.server.statistics.permissionsRevokedByPolicy == 1)
        #expect(ServerReport(statistics: h.server.statistics).value(of: "relay_permissions_revoked_by_policy_total") == 1)
        // The channel stays bound but relays nothing, either way.
        #expect(h.server.tableSizes.channels == 2)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.receive([2], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 2)
        // The other peer still relays, and its route stayed up.
        #expect(h.receive(channelData(0x4001, [1]), from: Addr.client).only?.destination == Addr.peer2)
        #expect(h.server.channelRoutes == [kept])
        // RFC 8656 §10.2/§12.2: "if a value is not allowed, the server rejects the request with a
        // 403 (Forbidden) error": no permission and no route come back by request.
        #expect(try code(try h.createPermission([Addr.peer], id: 5)) == 403)
        let rebind = try h.channelBind(0x4000, to: Addr.peer, id: 6)
        #expect(try code(rebind) == 403)
        #expect(rebind.routes == [])
        // A later reload that allows it again restores nothing by itself; CreatePermission does.
        #expect(h.reload(peerPolicy: PeerPolicy()).routes == [])
        #expect(try h.createPermission([Addr.peer], id: 7).routes == [.up(denied)])
    }

    @Test func aDeniedPeerNeverGetsARoute() throws {
        let h = Harness()
        try h.allocate()
        for (n, peer) in ["10.0.0.7:5000", "127.0.0.1:5000", "169.254.169.254:80", "[::ffff:127.0.0.1]:5000"].enumerated() {
            let bind = try h.channelBind(0x4000, to: TransportAddress(peer)!, id: UInt8(3 + n))
            let code = try code(bind)
            // IPv4-mapped to an IPv4-only allocation is a family mismatch (443); the rest 403.
            #expect(code == 403 || code == 443, "\(peer)")
            #expect(bind.routes == [])
        }
        #expect(h.server.channelRoutes.isEmpty)
        #expect(h.server.tableSizes.channels == 0)
    }

    @Test func peersOnThisHostsOwnAddressesNeverGetARoute() throws {
        let h = Harness { $0.listenerPorts = [3478] }
        let (_, handles, _) = try h.allocate()
        // The relay's listener: 403, no route.
        let listener = try h.channelBind(0x4000, to: TransportAddress(ip: .v4(Addr.relayV4), port: 3478))
        #expect(try code(listener) == 403)
        #expect(listener.routes == [])
        // Hairpin to a live allocation of this relay: bound and relayed, but checked per datagram,
        // so never a route (the ChannelRoute contract).
        let own = TransportAddress(ip: .v4(Addr.relayV4), port: h.relayPort)
        let hairpin = try h.channelBind(0x4001, to: own, id: 4)
        #expect(try code(hairpin) == nil)
        #expect(hairpin.routes == [])
        #expect(h.receive(channelData(0x4001, [1]), from: Addr.client).only?.socket == handles[0])
        #expect(try h.createPermission([own], id: 5).routes == [])
        #expect(h.server.channelRoutes.isEmpty)
    }

    @Test func peersOnThisHostThatAnOperatorAllowsAreRelayedButNeverRouted() throws {
        // An operator `allow` opens loopback (and the relay's own address) for same-host peers:
        // relayed without a per-datagram check, but the kernel fast path sends out of an
        // interface, so no route (`PeerPolicy.reachesThisHost`).
        let h = Harness { $0.peerPolicy = PeerPolicy(allow: [CIDR("127.0.0.0/8")!, CIDR("203.0.113.10/32")!]) }
        let (_, handles, _) = try h.allocate()
        for (n, peer) in ["127.0.0.1:5000", "203.0.113.10:6000"].enumerated() {
            let channel = 0x4000 + UInt16(n)
            let bind = try h.channelBind(channel, to: TransportAddress(peer)!, id: UInt8(3 + n))
            #expect(try code(bind) == nil, "\(peer)")
            #expect(bind.routes == [])
            #expect(h.receive(channelData(channel, [1]), from: Addr.client).only?.socket == handles[0])
        }
        #expect(h.server.channelRoutes.isEmpty)
        // A reload that drops the allow: loopback is denied now (its permission revoked); the
        // relay's own address is admitted only at live relay ports again (checked per datagram,
        // and 6000 is none). Still no route change.
        let reload = h.reload(peerPolicy: PeerPolicy())
        #expect(reload.routes == [])
        #expect(h.server.statistics.permissionsRevokedByPolicy == 1)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.receive(channelData(0x4001, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 1 && h.server.statistics.drops.peerDenied == 1)
    }

    @Test func aReloadThatPutsAPeerOnThisHostTakesItsRouteDownWithoutRevokingItsPermission() throws {
        let h = Harness { $0.listenerPorts = [3478] }
        let (_, handles, _) = try h.allocate()
        let peer = TransportAddress("8.8.8.8:3478")!
        let value = route(h, 0x4000, peer, handle: handles[0], port: h.relayPort)
        #expect(try h.channelBind(0x4000, to: peer).routes == [.up(value)])
        // 8.8.8.8 becomes one of the relay's addresses: at the listener port it is the relay
        // itself now (never a peer), so the route goes down and the channel relays nothing.
        let reload = h.reload(peerPolicy: PeerPolicy(relayAddresses: [.v4(IPv4Address(8, 8, 8, 8))]))
        #expect(reload.routes == [.down(value)])
        #expect(h.server.statistics.permissionsRevokedByPolicy == 0)
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.peerDenied == 1)
        // Back to an ordinary address: up again.
        #expect(h.reload(peerPolicy: PeerPolicy()).routes == [.up(value)])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.destination == peer)
    }

    @Test func drainKeepsRoutesUntilTheirAllocationsEnd() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        let value = route(h, 0x4000, Addr.peer, handle: handles[0], port: h.relayPort)
        try h.channelBind(0x4000, to: Addr.peer)
        h.server.drain()
        #expect(h.server.channelRoutes == [value])
        // Existing allocations keep working while draining: a refresh changes nothing.
        #expect(try h.channelBind(0x4000, to: Addr.peer, id: 4).routes == [])
        #expect(try h.refresh(lifetime: 0, id: 5).routes == [.down(value)])
    }

    @Test func withoutEmitsChannelRoutesThereIsNeverARouteChange() throws {
        let h = Harness {
            $0.emitsChannelRoutes = false
            $0.relayAddressIPv6 = Addr.relayV6
        }
        let (_, handles, _) = try h.allocate(Addr.clientV6) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        var changes: [RouteChange] = []
        changes += try h.channelBind(0x4000, to: Addr.peer, client: Addr.clientV6).routes
        changes += try h.channelBind(0x4001, to: Addr.peerV6, client: Addr.clientV6, id: 4).routes
        changes += h.receive(channelData(0x4000, [1]), from: Addr.clientV6).routes
        #expect(h.receive([2], from: Addr.peerV6, on: handles[1]).sent.count == 1)
        changes += h.advance(seconds: 300).routes
        changes += try h.createPermission([Addr.peer, Addr.peerV6], client: Addr.clientV6, id: 5).routes
        changes += h.reload(peerPolicy: PeerPolicy(deny: [CIDR("8.8.8.0/24")!])).routes
        changes += try h.refresh(lifetime: 0, client: Addr.clientV6, id: 6).routes
        #expect(changes == [])
        #expect(h.server.statistics.permissionsRevokedByPolicy == 1)
        #expect(h.server.channelRoutes.isEmpty)
    }
}

extension ServerReport {
    /// The exported value of the unlabelled series `name` (through its declaration).
    func value(of name: String) -> Int? {
        Self.metrics.first { $0.family.name == name && $0.labelValues.isEmpty }.map { Int($0.value(self)) }
    }
}
