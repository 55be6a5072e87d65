import STUN

extension Server {
    /// Consistency of the server's tables (for tests): every violation, described. Each table checks
    /// its own indices (`AllocationTable.invariantViolations`, `PeerTable.invariantViolations`);
    /// what is left here is what spans tables: the peer table holds an entry for exactly the live
    /// allocations, and every timer belongs to a live entry.
    func invariantViolations() -> [String] {
        var problems = allocations.invariantViolations() + peers.invariantViolations()
        var expectedTimers = reservations.count + peers.timerCount + (claimedPortsToGiveBack.isEmpty ? 0 : 1)
        let live = allocations.live
        for (id, allocation) in live {
            expectedTimers += allocation.relayCount + (allocation.pending == nil ? 0 : 1)
        }
        if Set(live.map(\.id)) != Set(peers.attached) {
            problems.append("peer table entries \(peers.attached.map(\.index)) != live allocations \(live.map(\.id.index))")
        }
        if timers.count != expectedTimers { problems.append("timers \(timers.count) != live entries \(expectedTimers)") }
        return problems
    }
}
