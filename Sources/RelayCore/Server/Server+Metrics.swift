import STUN

extension Server {
    /// Allocations whose sockets are open, by relayed address family (a dual-stack allocation
    /// counts once in each). A scan of the allocation table: call it when publishing metrics
    /// (a few times a second), never per packet.
    public var activeAllocationsByFamily: (ipv4: Int, ipv6: Int) {
        var ipv4 = 0, ipv6 = 0
        allocations.forEach { _, allocation in
            guard allocation.isActive else { return }
            if allocation.ipv4 != nil { ipv4 += 1 }
            if allocation.ipv6 != nil { ipv6 += 1 }
        }
        return (ipv4, ipv6)
    }

    /// What the worker publishes about this server (about once a second): its counters and the
    /// active-allocation gauges (one scan of the table).
    public var metricsReport: ServerReport {
        let active = activeAllocationsByFamily
        return ServerReport(statistics: statistics, activeIPv4: active.ipv4, activeIPv6: active.ipv6)
    }
}
