import Testing
@testable import RelayCore
import STUN

/// Operator-set permission and channel lifetimes (`ServerConfiguration.permissionLifetime`,
/// `.channelLifetime`; `turn-relay --permission-lifetime`, `--channel-lifetime`). The RFC fixes
/// both: RFC 8656 §9 "The Permission Lifetime MUST be 300 seconds (= 5 minutes)", §12 "A channel
/// binding lasts for 10 minutes unless refreshed". Other values are non-standard (for tests, like
/// coturn's options of the same names); whatever they are, expiry happens at the configured time,
/// takes the channel's route down in the same batch, and the userspace path then drops.
@Suite struct ServerLifetimeTests {
    func code(_ out: Outputs) throws -> Int? { errorCode(try #require(out.only).bytes) }

    @Test func theDefaultsAreTheRFCs() {
        let c = ServerConfiguration()
        #expect(c.permissionLifetime == 300)
        #expect(c.channelLifetime == 600)
        // RFC 8656 §12: "the client MUST wait 5 minutes after the channel binding expires before
        // attempting to bind the channel number to a different transport address".
        #expect(c.channelCooldown == 300)
    }

    @Test(arguments: [(UInt64(600), UInt64(300)), (3600, 300), (601, 300), (599, 299), (6, 3), (3, 1), (1, 1)])
    func theCooldownIsHalfTheLifetimeAtMostTheRFCs(lifetime: UInt64, cooldown: UInt64) {
        var c = ServerConfiguration()
        c.channelLifetime = lifetime
        #expect(c.channelCooldown == cooldown)
    }

    @Test func aShortPermissionLapsesAtItsLifetimeAndTheRouteGoesDown() throws {
        let h = Harness { $0.permissionLifetime = 4; $0.channelLifetime = 10 }
        let (_, handles, _) = try h.allocate()
        let bind = try h.channelBind(0x4000, to: Addr.peer)
        #expect(try code(bind) == nil)
        let value = ChannelRoute(client: Addr.client, channel: 0x4000, peer: Addr.peer, relaySocket: handles[0],
                                 relayPort: h.relayPort)
        #expect(bind.routes == [.up(value)])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.destination == Addr.peer)
        #expect(h.advance(seconds: 3).routes == [])
        #expect(h.server.channelRoutes == [value])
        // ChannelBind's own permission (RFC 8656 §12: ChannelBind "also installs or refreshes a
        // permission") lapses at 4 s: RFC 8656 §9, "the permission expires and is deleted".
        #expect(h.advance(seconds: 1).routes == [.down(value)])
        #expect(h.server.channelRoutes == [])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.receive([2], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 2)
        // The channel is still bound until 10 s: a CreatePermission brings the same route back.
        #expect(try h.createPermission([Addr.peer], id: 4).routes == [.up(value)])
        // ...for another 4 s only.
        #expect(h.advance(seconds: 3).routes == [])
        #expect(h.advance(seconds: 1).routes == [.down(value)])
    }

    @Test func aShortChannelExpiresAtItsLifetimeThenItsCooldownEnds() throws {
        let h = Harness { $0.permissionLifetime = 30; $0.channelLifetime = 6 }
        let (_, handles, _) = try h.allocate()
        let bind = try h.channelBind(0x4000, to: Addr.peer)
        let value = ChannelRoute(client: Addr.client, channel: 0x4000, peer: Addr.peer, relaySocket: handles[0],
                                 relayPort: h.relayPort)
        #expect(bind.routes == [.up(value)])
        // RFC 8656 §12.6: "the receipt of a ChannelData message MUST NOT refresh either the
        // channel binding or the permission towards the peer".
        #expect(h.advance(seconds: 5).routes == [])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).only?.destination == Addr.peer)
        // RFC 8656 §12: "When the channel binding expires, the channel becomes unbound."
        #expect(h.advance(seconds: 1).routes == [.down(value)])
        #expect(h.server.channelRoutes == [])
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noChannel == 1)
        // The permission outlives the channel: from the peer, a Data indication, not ChannelData.
        let fromPeer = try #require(h.receive([2], from: Addr.peer, on: handles[0]).only)
        #expect(fromPeer.bytes.first == 0x00)
        // The cooldown (half of 6 s) holds the number: bound to another peer it is refused...
        #expect(try code(h.channelBind(0x4000, to: Addr.peer2, id: 4)) == 400)
        #expect(h.advance(seconds: 2).routes == [])
        #expect(h.server.tableSizes.channels == 1)
        // ...until it ends at 9 s; then the number is free.
        #expect(h.advance(seconds: 1).routes == [])
        #expect(h.server.tableSizes.channels == 0)
        let rebound = try h.channelBind(0x4000, to: Addr.peer2, id: 5)
        #expect(try code(rebound) == nil)
        #expect(rebound.routes.count == 1)
    }

    @Test func aChannelBindRefreshResetsTheConfiguredLifetime() throws {
        // RFC 8656 §12: "Refreshing the binding ... resets the time-to-expiry timer back to 10
        // minutes": here back to the configured lifetime.
        let h = Harness { $0.permissionLifetime = 30; $0.channelLifetime = 6 }
        try h.allocate()
        try h.channelBind(0x4000, to: Addr.peer)
        #expect(h.advance(seconds: 4).routes == [])
        #expect(try code(h.channelBind(0x4000, to: Addr.peer, id: 4)) == nil)
        #expect(h.advance(seconds: 5).routes == [])
        #expect(h.advance(seconds: 1).routes.count == 1)
    }
}
