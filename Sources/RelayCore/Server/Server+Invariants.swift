import STUN

extension Server {
    /// Consistency of the redundant indices (for tests): every violation, described. Empty when
    /// the channel, permission, socket and timer tables agree with each other.
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var expectedTimers = reservations.count + permissions.count + channels.count
            + (claimedPortsToGiveBack.isEmpty ? 0 : 1)
        for (index, slot) in allocations.enumerated() {
            guard let allocation = slot else { continue }
            let id = AllocationID(index: UInt32(index))
            if allocationByClient[allocation.client] != id { problems.append("allocation \(index) not indexed by its client") }
            expectedTimers += allocation.relays.count + (allocation.pending == nil ? 0 : 1)
            for relay in allocation.relays {
                guard let socket = relay.handle.allocationIndex, socket < sockets.count,
                      sockets[socket].allocation == id.index, sockets[socket].family == relay.family else {
                    problems.append("allocation \(index) relay \(relay.family) socket entry mismatch")
                    continue
                }
            }
            for peer in allocation.permissions where permissions[PermissionKey(allocation: id, peer: peer)] == nil {
                problems.append("allocation \(index) lists a permission for \(peer) that does not exist")
            }
            for number in allocation.channels {
                guard let channel = channels[ChannelKey(client: allocation.client, number: number)] else {
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
        if allocationByClient.count != allocations.count - freeAllocationSlots.count { problems.append("client index size") }
        if channelByPeer.count != channels.count { problems.append("peer index size") }
        if timers.count != expectedTimers { problems.append("timers \(timers.count) != live entries \(expectedTimers)") }
        return problems
    }
}
