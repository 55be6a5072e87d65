import RelayCore
import STUN

/// What a processor factory learns about the worker it is made for.
public struct WorkerContext: Sendable {
    public var index: Int
    /// The listener sockets' bound addresses (useful when the configured port was 0).
    public var listenerAddresses: [TransportAddress]
    public var clock: RelayClock
}
