import RelayCore

extension Server: DatagramProcessor {
    public typealias Reload = TURNReload

    /// New Allocates are refused (300 with ALTERNATE-SERVER, or 508); existing allocations continue.
    public func drain(now: Instant, into out: OutboundBatch) { drain() }

    public func apply(_ reload: TURNReload, now: Instant, into out: OutboundBatch) {
        self.reload(credentials: reload.credentials, peerPolicy: reload.peerPolicy, now: now, into: out)
    }

    /// The server's counters and gauges (`ServerReport`).
    public func report(now: Instant) -> (any Sendable)? { metricsReport }
}
