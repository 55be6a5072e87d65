import STUN

/// The TURN server (RFC 8656 over RFC 8489) as a pure state machine. No I/O: the shell feeds it
/// batches of received datagrams and timer ticks and carries out what it writes into an
/// `OutboundBatch` (datagrams and socket requests).
///
/// PLACEHOLDER API: the state machine is being built; signatures are the contract with RelayIO.
public final class Server {
    public private(set) var configuration: ServerConfiguration

    public init(configuration: ServerConfiguration, random: any RandomNumberGenerator, now: Instant) {
        self.configuration = configuration
    }

    /// Processes a batch of received datagrams.
    public func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch) {}

    /// The shell's answer to a `SocketRequest.open`.
    public func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch) {}

    /// Expires allocations, permissions and channels due at or before `now`.
    public func handleTimeout(now: Instant, into out: OutboundBatch) {}

    /// The earliest instant at which `handleTimeout` has work, or nil.
    public func nextTimeout() -> Instant? { nil }
}
