import RelayCore

extension Server: DatagramProcessor {
    /// New Allocates are refused (300 with ALTERNATE-SERVER, or 508); existing allocations continue.
    public func drain(now: Instant, into out: OutboundBatch) { drain() }
}
