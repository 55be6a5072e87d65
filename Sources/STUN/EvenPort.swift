/// The value of EVEN-PORT (RFC 8656 §18.7).
public struct EvenPort: Hashable, Sendable {
    /// The R bit: "If the value is 1, the server is requested to reserve the next-higher port number
    /// (on the same IP address) for a subsequent allocation."
    public var reserveNext: Bool

    public init(reserveNext: Bool) { self.reserveNext = reserveNext }
}
