import Testing
import TestSupport
@testable import RelayCore
import STUN

/// The server's table types on their own: random operation sequences (seeded, reproducible) keep
/// each table's indices consistent (`invariantViolations()` after every step) and agree with a
/// plain model of what should be in them.
@Suite struct ServerTableTypesTests {
    static func client(_ n: UInt64) -> ClientSocket {
        ClientSocket(TransportAddress(ip: .v4(IPv4Address(0x5DB8_D800 | UInt32(n & 0xFF))), port: UInt16(40000 + n % 7)))
    }

    static func pending(_ n: UInt64) -> PendingAllocate {
        PendingAllocate(transactionID: transactionID(UInt8(truncatingIfNeeded: n)), lifetimeSeconds: 600,
                        signer: ResponseSigner(sha1Key: [1, 2, 3]), evenPort: false, timer: .none)
    }

    @Test func allocationTableStaysConsistentUnderRandomOperations() {
        var random = SplitMix64(seed: 11)
        var table = AllocationTable()
        // The model, in insertion order (a Dictionary's order would differ from run to run).
        var model: [(client: ClientSocket, id: AllocationID, username: String)] = []
        func pick(_ r: UInt64) -> Int? { model.isEmpty ? nil : Int(r % UInt64(model.count)) }
        var orphaned: [Int] = []
        let usernames = ["alice", "bob", "carol"]
        let t0 = Instant(seconds: 1_800_000_000)
        for step in 0 ..< 20_000 {
            let r = random.next()
            let client = Self.client(r >> 8 % 64)
            switch r % 8 {
            case 0, 1:  // Allocate: one or two families
                guard !model.contains(where: { $0.client == client }) else { break }
                let username = usernames[Int(r >> 20 % 3)]
                let id = table.insert { _ in
                    Allocation(client: client, username: username, ipv4: nil, ipv6: nil,
                               allocateTransaction: transactionID(1), lifecycle: .opening(Self.pending(r)))
                }
                _ = table.addRelay(.ipv4, port: UInt16(50000 + step % 1000), to: id, expiresAt: t0, timer: .none, portOwner: .thisServer)
                if r >> 30 & 1 == 1 {
                    _ = table.addRelay(.ipv6, port: UInt16(50000 + step % 1000), to: id, expiresAt: t0, timer: .none, portOwner: .otherServer)
                }
                model.append((client, id, username))
            case 2, 3:  // the shell answers an open: opened, or failed and retried, or failed for good
                guard let at = pick(r >> 44), let allocation = table.allocation(model[at].id),
                      let relay = allocation.relays.first(where: { !$0.isOpen }), let index = relay.handle.allocationIndex,
                      let answered = table.openAnswered(socket: index) else { break }
                let entry = model[at]
                #expect(answered.id == entry.id && answered.family == relay.family)
                switch r >> 40 % 3 {
                case 0:
                    table.markOpen(relay.family, of: entry.id)
                case 1:
                    table.rebind(relay.family, of: entry.id, port: relay.port &+ 1)
                    #expect(table[entry.id].relay(for: relay.family)?.attempts == relay.attempts + 1)
                    #expect(table[entry.id].relay(for: relay.family)?.portOwner == .thisServer)
                default:
                    #expect(table.dropFailedRelay(relay.family, of: entry.id)?.handle == relay.handle)
                    if table[entry.id].relayCount == 0 {
                        _ = table.remove(entry.id)
                        model.remove(at: at)
                    }
                }
                if table.allocation(entry.id) != nil, table[entry.id].relays.allSatisfy(\.isOpen) {
                    table[entry.id].lifecycle = .active(.init())
                }
            case 4:  // one family of a dual allocation goes
                guard let at = pick(r >> 44), table[model[at].id].relayCount == 2 else { break }
                let relay = table.removeRelay(.ipv6, of: model[at].id)
                if relay?.isOpen == false, let index = relay?.handle.allocationIndex { orphaned.append(index) }
            case 5, 6:  // deleted, expired or failed
                guard let at = pick(r >> 44) else { break }
                let entry = model.remove(at: at)
                let removed = table.remove(entry.id)
                #expect(removed?.client == entry.client)
                for relay in removed?.relays ?? [] where !relay.isOpen {
                    if let index = relay.handle.allocationIndex { orphaned.append(index) }
                }
                #expect(table.allocation(entry.id) == nil)
            default:  // the shell answers an open whose allocation let go of it: the entry is freed
                guard !orphaned.isEmpty else { break }
                let index = orphaned.remove(at: Int(r >> 16 % UInt64(orphaned.count)))
                #expect(table.openAnswered(socket: index) == nil)
            }
            let problems = table.invariantViolations()
            #expect(problems == [], "step \(step)")
            if !problems.isEmpty { return }
            #expect(table.count == model.count)
        }
        for entry in model {
            #expect(table.id(of: entry.client) == entry.id)
        }
        for username in usernames {
            #expect(table.allocations(of: username) == model.filter { $0.username == username }.count)
        }
    }

    /// With `tracksRoutes`, also: the route changes, applied in order as the shell applies them,
    /// always pair up (an up for a route not up, a down with the value that went up) and leave
    /// exactly the table's routes; without it, no route change at all.
    @Test(arguments: [false, true])
    func peerTableStaysConsistentUnderRandomOperations(tracksRoutes: Bool) {
        var random = SplitMix64(seed: 12)
        var table = PeerTable(channelSeed: random.next(), peerSeed: random.next(), tracksRoutes: tracksRoutes)
        var timers = TimerQueue()
        var changes: [RouteChange] = []
        var applied: Set<ChannelRoute> = []
        var ups = 0
        var attached: [AllocationID: ClientSocket] = [:]
        var now = Instant(seconds: 1_800_000_000)
        func peer(_ r: UInt64) -> PeerSocket {
            let ip: IPAddress = r & 1 == 0 ? .v4(IPv4Address(0x0A00_0000 | UInt32(r >> 4 & 7)))
                                           : .v6(IPv6Address(high: 0x2001_0db8 << 32, low: r >> 4 & 7))
            return PeerSocket(TransportAddress(ip: ip, port: UInt16(3000 + (r >> 8 & 3))))
        }
        for step in 0 ..< 20_000 {
            let r = random.next()
            let id = AllocationID(index: UInt32(r >> 32 % 16))
            switch r % 10 {
            case 0:
                guard attached[id] == nil else { break }
                let client = Self.client(r >> 40)
                guard !attached.values.contains(client) else { break }
                table.attach(id, client: client)
                attached[id] = client
            case 1:
                guard attached[id] != nil else { break }
                table.detach(id, timers: &timers, routes: &changes)
                attached[id] = nil
            case 2:
                guard attached[id] != nil else { break }
                if r >> 21 & 1 == 0 {
                    table.remove(of: id, family: r >> 20 & 1 == 0 ? .ipv4 : .ipv6, timers: &timers, routes: &changes)
                } else {
                    // A reload: one peer IP denied, a few peers now checked per datagram.
                    let denied = peer(r >> 12).address.ip
                    _ = table.enforce(denies: { $0 == denied },
                                      classify: { ($0.port == 3000 + UInt16(r >> 22 & 3), $0.port == 3000 + UInt16(r >> 24 & 3)) },
                                      timers: &timers, routes: &changes)
                    #expect(!table.hasPermission(PermissionKey(allocation: id, peer: denied)))
                }
            case 3, 4:
                guard attached[id] != nil else { break }
                table.installPermission(id, peer: peer(r >> 12).address.ip, expiresAt: now.adding(seconds: 300), timers: &timers,
                                        routes: &changes)
            case 5, 6:
                guard let client = attached[id] else { break }
                let p = peer(r >> 12)
                let number = ChannelNumber(0x4000 + UInt16(r >> 24 & 7))
                // The handler's rule: neither the number nor the peer bound to something else.
                if let existing = table.channel(ChannelKey(client: client, number: number)), existing.peer != p { break }
                if let other = table.peerChannel(PeerChannelKey(allocation: id, peer: p)), other.number != number { break }
                table.bindChannel(id, number: number, peer: p, relayHandle: .allocation(index: Int(id.index)),
                                  relayPort: 50000 + UInt16(id.index), checksPeer: r >> 28 & 7 == 0, peerIsLocal: r >> 31 & 7 == 0,
                                  expiresAt: now.adding(seconds: 600), timers: &timers, routes: &changes)
                #expect(table.channel(ChannelKey(client: client, number: number))?.isBound == true)
            default:  // time passes: fire what is due, as the server does
                now = now.adding(seconds: r >> 16 % 200)
                while let target = timers.popExpired(now: now) {
                    switch target {
                    case .permission(let key): table.expirePermission(key, routes: &changes)
                    case .channel(let key):
                        table.unbindChannel(key, cooldownEnds: { $0.adding(seconds: 300) }, timers: &timers, routes: &changes)
                    case .channelCooldown(let key): table.endCooldown(key, routes: &changes)
                    default: Issue.record("unexpected timer \(target)")
                    }
                }
            }
            for change in changes {
                switch change {
                case .up(let route):
                    ups += 1
                    #expect(applied.insert(route).inserted, "step \(step): up for a route already up")
                case .down(let route): #expect(applied.remove(route) != nil, "step \(step): down for a route not up")
                }
            }
            changes.removeAll()
            #expect(applied == Set(table.routesUp), "step \(step)")
            let problems = table.invariantViolations()
            #expect(problems == [], "step \(step)")
            if !problems.isEmpty { return }
            #expect(timers.count == table.timerCount)
            #expect(Set(table.attached) == Set(attached.keys))
        }
        for id in attached.keys { table.detach(id, timers: &timers, routes: &changes) }
        // Every route that went up came down with its allocation.
        for case .down(let route) in changes { applied.remove(route) }
        #expect(applied.isEmpty)
        #expect(tracksRoutes ? ups > 20 : ups == 0, "routes up over the run: \(ups)")  // 43 with this seed
        #expect(table.permissionCount == 0 && table.channelCount == 0 && table.channelByPeerCount == 0)
        #expect(timers.count == 0)
    }

    @Test func quotaTableCountsPerUserAndInTotal() {
        var table = AllocationQuotaTable()
        #expect(table.acquire(username: "a", perUserLimit: 2, totalLimit: 3) == .granted)
        #expect(table.acquire(username: "a", perUserLimit: 2, totalLimit: 3) == .granted)
        #expect(table.acquire(username: "a", perUserLimit: 2, totalLimit: 3) == .userQuota)
        #expect(table.acquire(username: "b", perUserLimit: 2, totalLimit: 3) == .granted)
        #expect(table.acquire(username: "c", perUserLimit: 2, totalLimit: 3) == .full)
        // The username's limit is checked first (486 before 508, as the server answers).
        #expect(table.acquire(username: "a", perUserLimit: 2, totalLimit: 3) == .userQuota)
        table.release(username: "a")
        #expect(table.count(of: "a") == 1 && table.total == 2)
        #expect(table.acquire(username: "c", perUserLimit: 2, totalLimit: 3) == .granted)
        table.release(username: "nobody")
        #expect(table.total == 3 && table.usernames == 3)
    }
}
