import STUN

/// The permissions and channel bindings of every allocation of one server (RFC 8656 §9 and §12),
/// with the indices that must agree with them:
///
/// - `channels`, keyed by the client's 5-tuple and channel number: the one lookup a ChannelData
///   message from a client needs;
/// - `channelByPeer`, keyed by allocation and peer: the one lookup a datagram from a peer needs;
/// - each channel's `isPermitted` (and its mirror in `channelByPeer`), kept equal to "a permission
///   for the peer's IP exists", so neither fast path looks up a permission for a bound channel;
/// - per allocation, the peers with a permission and the channel numbers in use, so that deleting
///   an allocation (or one family of it) touches only its own entries and quotas are counted.
///
/// - with `tracksRoutes`, the routes the kernel fast path may use (`ChannelRoute`): exactly the
///   usable bindings, i.e. bound (not in the cooldown), permitted, not checked per datagram
///   (`Channel.checksPeer`) and not to a peer on this host (`Channel.peerIsLocal`). Every method
///   that can change a binding's usability appends the difference to its `routes` argument: `.up`
///   when it becomes usable, `.down` (the same value) when it stops, nothing otherwise. Channels exist only on active allocations (ChannelBind
///   needs one), and a denied peer's permission is deleted (`enforce`), so those conditions need no
///   bookkeeping of their own.
///
/// Every change goes through a mutating method that keeps these in step; each entry owns exactly one
/// timer in the caller's `TimerQueue`, scheduled and cancelled here.
struct PeerTable {
    /// What one allocation holds here.
    struct Held {
        var client: ClientSocket
        var permissions: Set<IPAddress> = []
        var channels: Set<ChannelNumber> = []
    }

    private var permissions: [PermissionKey: Permission] = [:]
    /// Read per packet: open-addressed with a keyed hash seeded by the server (see `KeyedTable`).
    private var channels: KeyedTable<ChannelKey, Channel>
    private var channelByPeer: KeyedTable<PeerChannelKey, PeerChannel>
    /// By allocation slot; nil for a slot without a live allocation.
    private var held: [Held?] = []
    /// The routes up, by channel (empty unless `tracksRoutes`). Read on requests and timers only.
    private var routes: [ChannelKey: ChannelRoute] = [:]
    /// Route changes are kept and reported (`ServerConfiguration.emitsChannelRoutes`).
    let tracksRoutes: Bool

    init(channelSeed: UInt64, peerSeed: UInt64, tracksRoutes: Bool = false) {
        channels = KeyedTable(seed: channelSeed)
        channelByPeer = KeyedTable(seed: peerSeed)
        self.tracksRoutes = tracksRoutes
    }

    var permissionCount: Int { permissions.count }
    var channelCount: Int { channels.count }
    var channelByPeerCount: Int { channelByPeer.count }
    /// Timers this table owns (one per permission, one per channel binding or cooldown).
    var timerCount: Int { permissions.count + channels.count }
    /// The routes up (tests, invariants).
    var routesUp: [ChannelRoute] { Array(routes.values) }
    /// Every channel entry, bound or cooling down (invariants).
    var allChannels: [Channel] {
        held.compactMap { $0 }.flatMap { entry in entry.channels.compactMap { channels[ChannelKey(client: entry.client, number: $0)] } }
    }

    // MARK: Lookups (the fast paths read these)

    @inline(__always)
    func channel(_ key: ChannelKey) -> Channel? { channels[key] }

    @inline(__always)
    func peerChannel(_ key: PeerChannelKey) -> PeerChannel? { channelByPeer[key] }

    @inline(__always)
    func hasPermission(_ key: PermissionKey) -> Bool { permissions[key] != nil }

    func permissionCount(of id: AllocationID) -> Int { held(id)?.permissions.count ?? 0 }
    func channelCount(of id: AllocationID) -> Int { held(id)?.channels.count ?? 0 }
    func isAttached(_ id: AllocationID) -> Bool { held(id) != nil }
    /// The allocations attached (tests, diagnostics).
    var attached: [AllocationID] { held.indices.filter { held[$0] != nil }.map { AllocationID(index: UInt32($0)) } }

    private func held(_ id: AllocationID) -> Held? {
        let index = Int(id.index)
        return index < held.count ? held[index] : nil
    }

    // MARK: Allocations

    /// A new allocation in slot `id`, on `client`'s 5-tuple, holding nothing yet.
    mutating func attach(_ id: AllocationID, client: ClientSocket) {
        let index = Int(id.index)
        while held.count <= index { held.append(nil) }
        held[index] = Held(client: client)
    }

    /// Removes everything allocation `id` holds (it is being deleted): its routes go down.
    mutating func detach(_ id: AllocationID, timers: inout TimerQueue, routes changes: inout [RouteChange]) {
        remove(of: id, family: nil, timers: &timers, routes: &changes)
        held[Int(id.index)] = nil
    }

    /// Removes the permissions and channels of allocation `id` towards peers of `family` (every
    /// family when nil): only that relayed address could reach them. Their routes go down.
    mutating func remove(of id: AllocationID, family: AddressFamily?, timers: inout TimerQueue, routes changes: inout [RouteChange]) {
        let index = Int(id.index)
        guard index < held.count, let entry = held[index] else { return }
        var kept = Held(client: entry.client)
        for peer in entry.permissions {
            guard family == nil || peer.family == family else {
                kept.permissions.insert(peer)
                continue
            }
            if let permission = permissions.removeValue(forKey: PermissionKey(allocation: id, peer: peer)) {
                timers.cancel(permission.timer)
            }
        }
        for number in entry.channels {
            let key = ChannelKey(client: entry.client, number: number)
            guard let channel = channels[key], family == nil || channel.peer.address.family == family else {
                kept.channels.insert(number)
                continue
            }
            channels.removeValue(forKey: key)
            timers.cancel(channel.timer)
            channelByPeer.removeValue(forKey: PeerChannelKey(allocation: id, peer: channel.peer))
            syncRoute(key, nil, &changes)
        }
        held[index] = kept
    }

    // MARK: Permissions

    /// RFC 8656 §9: "If no permission for that IP address exists, then a permission is created ...
    /// If a permission for that IP address already exists, then the time-to-expiry for that
    /// permission is reset to Permission Lifetime."
    ///
    /// A new permission makes the bound channels to that IP usable again (routes up); a refreshed
    /// one changes no route.
    mutating func installPermission(_ id: AllocationID, peer: IPAddress, expiresAt: Instant, timers: inout TimerQueue,
                                    routes changes: inout [RouteChange]) {
        let key = PermissionKey(allocation: id, peer: peer)
        if let timer = permissions[key]?.timer {
            permissions[key]!.expiresAt = expiresAt
            timers.reschedule(timer, at: expiresAt)
            return
        }
        permissions[key] = Permission(expiresAt: expiresAt, timer: timers.schedule(.permission(key), at: expiresAt))
        held[Int(id.index)]?.permissions.insert(peer)
        setChannelsPermitted(id, peer: peer, true, &changes)
    }

    /// The permission's timer fired: RFC 8656 §9, "the permission expires and is deleted". The
    /// channels to that IP stay bound but stop relaying (routes down).
    mutating func expirePermission(_ key: PermissionKey, routes changes: inout [RouteChange]) {
        guard permissions.removeValue(forKey: key) != nil else { return }
        held[Int(key.allocation.index)]?.permissions.remove(key.peer)
        setChannelsPermitted(key.allocation, peer: key.peer, false, &changes)
    }

    /// Deletes a permission before its time (a reload's policy denies the peer): as if it had
    /// expired, and its timer is cancelled.
    mutating func revokePermission(_ key: PermissionKey, timers: inout TimerQueue, routes changes: inout [RouteChange]) {
        guard let permission = permissions[key] else { return }
        timers.cancel(permission.timer)
        expirePermission(key, routes: &changes)
    }

    /// Keeps the channels' copy of the permission state in step (at most
    /// `maxChannelsPerAllocation` entries, on the slow path only), and their routes.
    private mutating func setChannelsPermitted(_ id: AllocationID, peer: IPAddress, _ permitted: Bool,
                                               _ changes: inout [RouteChange]) {
        guard let entry = held(id) else { return }
        for number in entry.channels {
            let key = ChannelKey(client: entry.client, number: number)
            guard var channel = channels[key], channel.peer.address.ip == peer else { continue }
            channel.isPermitted = permitted
            channels[key] = channel
            channelByPeer[PeerChannelKey(allocation: id, peer: channel.peer)]?.isPermitted = permitted
            syncRoute(key, channel, &changes)
        }
    }

    /// A reload changed the peer policy: every permission whose IP `denies` names is revoked (its
    /// channels stay bound but relay nothing, as without a permission), and every channel's
    /// per-datagram check and locality are set to what `classify` says of its peer (so a peer
    /// that now needs a check, that the policy refuses by port, or that is on this host now, has
    /// no route). Returns how many permissions were revoked.
    mutating func enforce(denies: (IPAddress) -> Bool, classify: (TransportAddress) -> (checksPeer: Bool, isLocal: Bool),
                          timers: inout TimerQueue, routes changes: inout [RouteChange]) -> Int {
        var revoked = 0
        for (index, slot) in held.enumerated() {
            guard let entry = slot else { continue }
            let id = AllocationID(index: UInt32(index))
            for peer in entry.permissions where denies(peer) {
                revokePermission(PermissionKey(allocation: id, peer: peer), timers: &timers, routes: &changes)
                revoked += 1
            }
            for number in entry.channels {
                let key = ChannelKey(client: entry.client, number: number)
                guard var channel = channels[key] else { continue }
                let now = classify(channel.peer.address)
                guard channel.checksPeer != now.checksPeer || channel.peerIsLocal != now.isLocal else { continue }
                channel.checksPeer = now.checksPeer
                channel.peerIsLocal = now.isLocal
                channels[key] = channel
                syncRoute(key, channel, &changes)
            }
        }
        return revoked
    }

    // MARK: Routes

    /// Whether the kernel fast path may relay `channel` of `client`: bound, permitted, not a peer
    /// that needs a per-datagram check and not one on this host, and a client over UDP (the kernel
    /// fast path relays datagrams; a client over a stream connection is the shell's to frame).
    @inline(__always)
    private static func isUsable(_ channel: Channel, client: ClientSocket) -> Bool {
        channel.isBound && channel.isPermitted && !channel.checksPeer && !channel.peerIsLocal && !client.isStream
    }

    /// Brings the route of channel `key` in step with its entry (`nil`: removed): `.up` when it
    /// became usable, `.down` with the value that went up when it stopped, nothing when unchanged.
    private mutating func syncRoute(_ key: ChannelKey, _ channel: Channel?, _ changes: inout [RouteChange]) {
        guard tracksRoutes else { return }
        if let channel, Self.isUsable(channel, client: key.client) {
            guard routes[key] == nil else { return }
            let route = ChannelRoute(client: key.client.address, channel: key.number.rawValue, peer: channel.peer.address,
                                     relaySocket: channel.relayHandle, relayPort: channel.relayPort)
            routes[key] = route
            changes.append(.up(route))
        } else if let route = routes.removeValue(forKey: key) {
            changes.append(.down(route))
        }
    }

    // MARK: Channels

    /// Creates or refreshes a binding (the caller has checked that neither the number nor the peer
    /// is bound to something else). RFC 8656 §12: "Refreshing the binding ... resets the
    /// time-to-expiry timer back to 10 minutes." Rebinding the same pair during the cooldown binds
    /// it again.
    ///
    /// A new binding, or one rebound during its cooldown, goes up when its peer is permitted; a
    /// refresh of a bound one changes no route.
    mutating func bindChannel(_ id: AllocationID, number: ChannelNumber, peer: PeerSocket, relayHandle: SocketHandle,
                              relayPort: UInt16, checksPeer: Bool, peerIsLocal: Bool, expiresAt: Instant, timers: inout TimerQueue,
                              routes changes: inout [RouteChange]) {
        guard let client = held(id)?.client else { return }
        let key = ChannelKey(client: client, number: number)
        let permitted = permissions[PermissionKey(allocation: id, peer: peer.address.ip)] != nil
        if var channel = channels[key] {
            channel.expiresAt = expiresAt
            if channel.isBound {
                timers.reschedule(channel.timer, at: expiresAt)
            } else {
                timers.cancel(channel.timer)
                channel.timer = timers.schedule(.channel(key), at: expiresAt)
                channel.isBound = true
            }
            channels[key] = channel
        } else {
            channels[key] = Channel(allocation: id, peer: peer, relayHandle: relayHandle, relayPort: relayPort, isBound: true,
                                    isPermitted: permitted, checksPeer: checksPeer, peerIsLocal: peerIsLocal,
                                    expiresAt: expiresAt, timer: timers.schedule(.channel(key), at: expiresAt))
            held[Int(id.index)]?.channels.insert(number)
        }
        channelByPeer[PeerChannelKey(allocation: id, peer: peer)] = PeerChannel(number: number, isBound: true, isPermitted: permitted)
        syncRoute(key, channels[key], &changes)
    }

    /// The binding's timer fired: RFC 8656 §12, "When the channel binding expires, the channel
    /// becomes unbound." The entry stays until `cooldownEnds` so neither side can be rebound to
    /// something else. Its route goes down.
    mutating func unbindChannel(_ key: ChannelKey, cooldownEnds: (Instant) -> Instant, timers: inout TimerQueue,
                                routes changes: inout [RouteChange]) {
        guard var channel = channels[key] else { return }
        channel.isBound = false
        channel.timer = timers.schedule(.channelCooldown(key), at: cooldownEnds(channel.expiresAt))
        channels[key] = channel
        channelByPeer[PeerChannelKey(allocation: channel.allocation, peer: channel.peer)]?.isBound = false
        syncRoute(key, channel, &changes)
    }

    /// The cooldown's timer fired: the number and the peer are free again (its route went down
    /// when it was unbound).
    mutating func endCooldown(_ key: ChannelKey, routes changes: inout [RouteChange]) {
        guard let channel = channels.removeValue(forKey: key) else { return }
        channelByPeer.removeValue(forKey: PeerChannelKey(allocation: channel.allocation, peer: channel.peer))
        held[Int(channel.allocation.index)]?.channels.remove(key.number)
        syncRoute(key, nil, &changes)
    }

    // MARK: Invariants

    /// Every disagreement between the entries and their indices, described (empty when consistent).
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var permissionsListed = 0, channelsListed = 0, usable = 0
        for (index, slot) in held.enumerated() {
            guard let entry = slot else { continue }
            let id = AllocationID(index: UInt32(index))
            permissionsListed += entry.permissions.count
            channelsListed += entry.channels.count
            for peer in entry.permissions where permissions[PermissionKey(allocation: id, peer: peer)] == nil {
                problems.append("allocation \(index) lists a permission for \(peer) that does not exist")
            }
            for number in entry.channels {
                guard let channel = channels[ChannelKey(client: entry.client, number: number)] else {
                    problems.append("allocation \(index) lists channel \(number.rawValue) that does not exist")
                    continue
                }
                if channel.allocation != id { problems.append("channel \(number.rawValue) names another allocation") }
                let permitted = permissions[PermissionKey(allocation: id, peer: channel.peer.address.ip)] != nil
                if channel.isPermitted != permitted { problems.append("channel \(number.rawValue) permitted flag stale") }
                let byPeer = channelByPeer[PeerChannelKey(allocation: id, peer: channel.peer)]
                if byPeer?.number != number || byPeer?.isBound != channel.isBound || byPeer?.isPermitted != channel.isPermitted {
                    problems.append("channel \(number.rawValue) peer index mismatch")
                }
                // Routes up == usable bindings, each with the values its `.up` carried.
                guard tracksRoutes else { continue }
                let route = routes[ChannelKey(client: entry.client, number: number)]
                if Self.isUsable(channel, client: entry.client) {
                    usable += 1
                    let expected = ChannelRoute(client: entry.client.address, channel: number.rawValue, peer: channel.peer.address,
                                                relaySocket: channel.relayHandle, relayPort: channel.relayPort)
                    if route != expected { problems.append("channel \(number.rawValue) usable, route \(String(describing: route))") }
                } else if route != nil {
                    problems.append("channel \(number.rawValue) not usable but its route is up")
                }
            }
        }
        for key in permissions.keys where held(key.allocation).map({ !$0.permissions.contains(key.peer) }) ?? true {
            problems.append("permission \(key.peer) of allocation \(key.allocation.index) not listed by it")
        }
        if permissionsListed != permissions.count { problems.append("permissions listed \(permissionsListed) != \(permissions.count)") }
        if channelsListed != channels.count { problems.append("channels listed \(channelsListed) != \(channels.count)") }
        if channelByPeer.count != channels.count { problems.append("peer index size") }
        if routes.count != usable { problems.append("routes up \(routes.count) != usable bindings \(usable)") }
        return problems
    }
}
