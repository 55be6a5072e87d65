import RelayCore

/// What a worker drives: the TURN core, or (in tests and the benchmark's baseline) a plain forwarder.
///
/// A worker is generic over its processor and its backend (`Worker<P, B>`), so these calls are static, once per batch,
/// never once per datagram.
public protocol DatagramProcessor: AnyObject, SendableMetatype {
    /// A batch of received datagrams. Outputs go into `out`.
    func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch)
    /// The answer to a `SocketRequest.open` the processor wrote into an earlier batch.
    func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch)
    /// Timers due at or before `now`.
    func handleTimeout(now: Instant, into out: OutboundBatch)
    /// The earliest instant `handleTimeout` has work, or nil.
    func nextTimeout() -> Instant?
    /// Stop accepting new work (allocations); existing work continues. Called once, on SIGTERM/SIGINT.
    func drain(now: Instant, into out: OutboundBatch)
    /// The worker's own counters, handed over every `WorkerConfiguration.statisticsInterval` and
    /// once at exit, on the worker's thread: the place to publish the processor's and the worker's
    /// metrics together.
    func workerStatisticsDidUpdate(_ statistics: WorkerStatistics, now: Instant)
}

extension DatagramProcessor {
    public func drain(now: Instant, into out: OutboundBatch) {}
    public func workerStatisticsDidUpdate(_ statistics: WorkerStatistics, now: Instant) {}
}
