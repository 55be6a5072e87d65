import STUN

/// Everything the core needs to know at construction. PLACEHOLDER: fields grow with the core.
public struct ServerConfiguration: Sendable {
    /// The addresses clients are told their relayed transport addresses live on (XOR-RELAYED-ADDRESS).
    public var relayAddressIPv4: IPv4Address?
    public var relayAddressIPv6: IPv6Address?
    /// Allocation ports are chosen from this range.
    public var portRange: ClosedRange<UInt16> = 49152...65535
    public var realm: String = "turn-relay"

    public init(relayAddressIPv4: IPv4Address? = nil, relayAddressIPv6: IPv6Address? = nil) {
        self.relayAddressIPv4 = relayAddressIPv4
        self.relayAddressIPv6 = relayAddressIPv6
    }
}
