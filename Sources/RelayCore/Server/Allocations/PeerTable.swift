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

    init(channelSeed: UInt64, peerSeed: UInt64) {
        channels = KeyedTable(seed: channelSeed)
        channelByPeer = KeyedTable(seed: peerSeed)
    }

    var permissionCount: Int { permissions.count }
    var channelCount: Int { channels.count }
    var channelByPeerCount: Int { channelByPeer.count }
    /// Timers this table owns (one per permission, one per channel binding or cooldown).
    var timerCount: Int { permissions.count + channels.count }

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

    /// Removes everything allocation `id` holds (it is being deleted).
    mutating func detach(_ id: AllocationID, timers: inout TimerQueue) {
        remove(of: id, family: nil, timers: &timers)
        held[Int(id.index)] = nil
    }

    /// Removes the permissions and channels of allocation `id` towards peers of `family` (every
    /// family when nil): only that relayed address could reach them.
    mutating func remove(of id: AllocationID, family: AddressFamily?, timers: inout TimerQueue) {
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
        }
        held[index] = kept
    }

    // MARK: Permissions

    /// RFC 8656 §9: "If no permission for that IP address exists, then a permission is created ...
    /// If a permission for that IP address already exists, then the time-to-expiry for that
    /// permission is reset to Permission Lifetime."
    mutating func installPermission(_ id: AllocationID, peer: IPAddress, expiresAt: Instant, timers: inout TimerQueue) {
        let key = PermissionKey(allocation: id, peer: peer)
        if let timer = permissions[key]?.timer {
            permissions[key]!.expiresAt = expiresAt
            timers.reschedule(timer, at: expiresAt)
            return
        }
        permissions[key] = Permission(expiresAt: expiresAt, timer: timers.schedule(.permission(key), at: expiresAt))
        held[Int(id.index)]?.permissions.insert(peer)
        setChannelsPermitted(id, peer: peer, true)
    }

    /// The permission's timer fired: RFC 8656 §9, "the permission expires and is deleted".
    mutating func expirePermission(_ key: PermissionKey) {
        guard permissions.removeValue(forKey: key) != nil else { return }
        held[Int(key.allocation.index)]?.permissions.remove(key.peer)
        setChannelsPermitted(key.allocation, peer: key.peer, false)
    }

    /// Keeps the channels' copy of the permission state in step (at most
    /// `maxChannelsPerAllocation` entries, on the slow path only).
    private mutating func setChannelsPermitted(_ id: AllocationID, peer: IPAddress, _ permitted: Bool) {
        guard let entry = held(id) else { return }
        for number in entry.channels {
            let key = ChannelKey(client: entry.client, number: number)
            guard var channel = channels[key], channel.peer.address.ip == peer else { continue }
            channel.isPermitted = permitted
            channels[key] = channel
            channelByPeer[PeerChannelKey(allocation: id, peer: channel.peer)]?.isPermitted = permitted
        }
    }

    // MARK: Channels

    /// Creates or refreshes a binding (the caller has checked that neither the number nor the peer
    /// is bound to something else). RFC 8656 §12: "Refreshing the binding ... resets the
    /// time-to-expiry timer back to 10 minutes." Rebinding the same pair during the cooldown binds
    /// it again.
    mutating func bindChannel(_ id: AllocationID, number: ChannelNumber, peer: PeerSocket, relayHandle: SocketHandle,
                              peerIsOwnAddress: Bool, expiresAt: Instant, timers: inout TimerQueue) {
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
            channels[key] = Channel(allocation: id, peer: peer, relayHandle: relayHandle, isBound: true, isPermitted: permitted,
                                    peerIsOwnAddress: peerIsOwnAddress,
                                    expiresAt: expiresAt, timer: timers.schedule(.channel(key), at: expiresAt))
            held[Int(id.index)]?.channels.insert(number)
        }
        channelByPeer[PeerChannelKey(allocation: id, peer: peer)] = PeerChannel(number: number, isBound: true, isPermitted: permitted)
    }

    /// The binding's timer fired: RFC 8656 §12, "When the channel binding expires, the channel
    /// becomes unbound." The entry stays until `cooldownEnds` so neither side can be rebound to
    /// something else.
    mutating func unbindChannel(_ key: ChannelKey, cooldownEnds: (Instant) -> Instant, timers: inout TimerQueue) {
        guard var channel = channels[key] else { return }
        channel.isBound = false
        channel.timer = timers.schedule(.channelCooldown(key), at: cooldownEnds(channel.expiresAt))
        channels[key] = channel
        channelByPeer[PeerChannelKey(allocation: channel.allocation, peer: channel.peer)]?.isBound = false
    }

    /// The cooldown's timer fired: the number and the peer are free again.
    mutating func endCooldown(_ key: ChannelKey) {
        guard let channel = channels.removeValue(forKey: key) else { return }
        channelByPeer.removeValue(forKey: PeerChannelKey(allocation: channel.allocation, peer: channel.peer))
        held[Int(channel.allocation.index)]?.channels.remove(key.number)
    }

    // MARK: Invariants

    /// Every disagreement between the entries and their indices, described (empty when consistent).
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var permissionsListed = 0, channelsListed = 0
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
            }
        }
        for key in permissions.keys where held(key.allocation).map({ !$0.permissions.contains(key.peer) }) ?? true {
            problems.append("permission \(key.peer) of allocation \(key.allocation.index) not listed by it")
        }
        if permissionsListed != permissions.count { problems.append("permissions listed \(permissionsListed) != \(permissions.count)") }
        if channelsListed != channels.count { problems.append("channels listed \(channelsListed) != \(channels.count)") }
        if channelByPeer.count != channels.count { problems.append("peer index size") }
        return problems
    }
}
