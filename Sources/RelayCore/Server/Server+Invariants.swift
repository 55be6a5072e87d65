import STUN

extension Server {
    /// Consistency of the server's tables (for tests): every violation, described. Each table checks
    /// its own indices (`AllocationTable.invariantViolations`, `PeerTable.invariantViolations`);
    /// what is left here is what spans tables: the peer table holds an entry for exactly the live
    /// allocations, every timer belongs to a live entry, every channel is checked per datagram
    /// exactly when the current policy does not simply allow its peer, and every route up (the
    /// peer table checks that they are exactly the usable bindings) is on an active allocation,
    /// through its open relay of the peer's family, to a peer the policy allows.
    func invariantViolations() -> [String] {
        var problems = allocations.invariantViolations() + peers.invariantViolations()
        var expectedTimers = reservations.count + peers.timerCount + (claimedPortsToGiveBack.isEmpty ? 0 : 1)
        let live = allocations.live
        for (id, allocation) in live {
            expectedTimers += allocation.relayCount + (allocation.pending == nil ? 0 : 1)
        }
        // RFC 6062: every peer data connection belongs to a live TCP allocation; one waiting for
        // its connect or its ConnectionBind has its timer, a bound one none.
        for (id, connection) in tcpConnections.byID {
            if case .bound = connection.state {
                if connection.timer != .none { problems.append("bound TCP connection \(id) has a timer") }
            } else {
                expectedTimers += 1
            }
            if allocations.allocation(connection.allocation)?.relayTransport != .tcp {
                problems.append("TCP connection \(id) outlived its TCP allocation")
            }
            for handle in connection.handles where tcpConnections.id(of: handle) != id {
                problems.append("TCP connection \(id)'s handle \(handle.raw) is not indexed")
            }
        }
        if tcpConnections.handleCount != tcpConnections.byID.values.reduce(0, { $0 + $1.handles.count }) {
            problems.append("TCP connection handle index holds stale handles")
        }
        if Set(live.map(\.id)) != Set(peers.attached) {
            problems.append("peer table entries \(peers.attached.map(\.index)) != live allocations \(live.map(\.id.index))")
        }
        if timers.count != expectedTimers { problems.append("timers \(timers.count) != live entries \(expectedTimers)") }
        for channel in peers.allChannels where channel.checksPeer != (admission(of: channel.peer.address) != .allowed)
            || channel.peerIsLocal != peerPolicy.reachesThisHost(channel.peer.address.ip) {
            problems.append("channel to \(channel.peer.address) checksPeer/peerIsLocal disagree with the policy")
        }
        if !configuration.emitsChannelRoutes && !peers.routesUp.isEmpty { problems.append("routes kept without emitsChannelRoutes") }
        for route in peers.routesUp {
            guard case let (_, allocation)? = allocations.allocation(of: ClientSocket(route.client)), allocation.isActive,
                  let relay = allocation.relay(for: route.peer.family), relay.isOpen,
                  relay.handle == route.relaySocket, relay.port == route.relayPort else {
                problems.append("route \(route) is not through an open relay of an active allocation")
                continue
            }
            if admission(of: route.peer) != .allowed || peerPolicy.reachesThisHost(route.peer.ip) {
                problems.append("route \(route) to a peer the policy does not allow or on this host")
            }
        }
        return problems
    }
}
