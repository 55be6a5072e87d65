import RelayCore
import STUN

/// What a worker drives: the TURN core, or (in tests and the benchmark's baseline) a plain forwarder.
///
/// A worker is generic over its processor and its backend (`Worker<P, B>`), so these calls are static, once per batch,
/// never once per datagram.
public protocol DatagramProcessor: AnyObject, SendableMetatype {
    /// What a `ReloadMailbox` delivers to this processor (`Never`: it takes no reloads).
    associatedtype Reload: Sendable = Never

    /// A batch of received datagrams. Outputs go into `out`.
    func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch)
    /// The answer to a `SocketRequest.open` the processor wrote into an earlier batch.
    func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch)
    /// Timers due at or before `now`.
    func handleTimeout(now: Instant, into out: OutboundBatch)
    /// The earliest instant `handleTimeout` has work, or nil.
    func nextTimeout() -> Instant?
    /// The stream connection `handle` (TCP/TLS) closed; `client` was its remote address. Messages
    /// already received from it have been processed; nothing more will arrive from it, and what is
    /// sent to it afterwards is dropped. No default: a wrapper that forgot it would leave the
    /// connection's allocation alive.
    func connectionClosed(_ handle: SocketHandle, client: TransportAddress, now: Instant, into out: OutboundBatch)
    /// The answer to a `SocketRequest.connect` (RFC 6062 TCP allocations). No default either: a
    /// wrapper that forgot it would leave every Connect unanswered.
    func peerConnected(attempt: UInt32, result: PeerConnectResult, now: Instant, into out: OutboundBatch)
    /// A peer connected to the TCP allocation listening as `listener`; the shell accepted it as
    /// `handle` and reads nothing from it until the processor splices it (or closes it).
    func peerConnectionAccepted(_ handle: SocketHandle, on listener: SocketHandle, from peer: TransportAddress,
                                now: Instant, into out: OutboundBatch)
    /// Stop accepting new work (allocations); existing work continues. Called once, on SIGTERM/SIGINT.
    func drain(now: Instant, into out: OutboundBatch)
    /// A configuration update posted to the worker's `ReloadMailbox`, on the worker's thread, at
    /// the top of the loop after the post (the post wakes the loop).
    func apply(_ reload: Reload, now: Instant, into out: OutboundBatch)
    /// The processor's part of the worker's report (`WorkerReport.processor`), asked for on the
    /// worker's thread every `WorkerConfiguration.statisticsIntervalNanoseconds` and once at exit:
    /// copy the counters out here, never per packet.
    func report(now: Instant) -> (any Sendable)?
}

extension DatagramProcessor {
    public func drain(now: Instant, into out: OutboundBatch) {}
    public func report(now: Instant) -> (any Sendable)? { nil }
}

extension DatagramProcessor where Reload == Never {
    public func apply(_ reload: Never, now: Instant, into out: OutboundBatch) {}
}
