import STUN

/// The client's side of the 5-tuple as the server sees it (RFC 8656 §2: "the client's
/// server-reflexive transport address"), and what it reached the server through: `via` is the UDP
/// listener of the address's family, or the stream connection (TCP/TLS) it arrived on. The
/// listener's address and the transport follow from `via`, so the pair names the 5-tuple: a
/// client at the same address and port over UDP and over TCP has two 5-tuples, two allocations.
/// Everything sent to the client goes to `via`.
public struct ClientSocket: Hashable, Sendable {
    public var address: TransportAddress
    public var via: SocketHandle
    /// A client over UDP (the listener of its address's family).
    @inlinable public init(_ address: TransportAddress) {
        self.address = address
        self.via = .listener(address.family)
    }
    /// The client of a datagram or stream message received on `socket` from `address`.
    @inlinable public init(_ address: TransportAddress, receivedOn socket: SocketHandle) {
        self.address = address
        self.via = socket.isConnection ? socket : .listener(address.family)
    }
    /// True for a client over a stream connection (TCP or TLS).
    @inlinable public var isStream: Bool { via.isConnection }
    /// How the client reaches the server.
    @inlinable public var transport: ClientTransport {
        via.isConnection ? (via.isTLSConnection ? .tls : .tcp) : .udp
    }
}

/// A peer's transport address, as carried in XOR-PEER-ADDRESS or seen as the source of a datagram
/// on a relayed transport address.
public struct PeerSocket: Hashable, Sendable {
    public var address: TransportAddress
    @inlinable public init(_ address: TransportAddress) { self.address = address }
}

/// A TURN channel number (RFC 8656 §12: "0x4000 through 0x4FFF").
public struct ChannelNumber: Hashable, Sendable {
    public var rawValue: UInt16
    @inlinable public init(_ rawValue: UInt16) { self.rawValue = rawValue }
    public static let valid: ClosedRange<UInt16> = 0x4000...0x4FFF
    public var isValid: Bool { Self.valid.contains(rawValue) }
    /// RFC 5766 §11: "0x4000 through 0x7FFF: These values are the allowed channel numbers".
    public static let validRFC5766: ClosedRange<UInt16> = 0x4000...0x7FFF
    /// `isValid`, or within RFC 5766's wider range when `rfc5766` is set.
    public func isValid(rfc5766: Bool) -> Bool { (rfc5766 ? Self.validRFC5766 : Self.valid).contains(rawValue) }
}

/// A slot in the allocation table. Slots are reused after an allocation is deleted; every timer and
/// table key that names a slot is removed with it.
struct AllocationID: Hashable {
    var index: UInt32
}

/// RFC 8656 §9: "Note that only addresses are compared and port numbers are not considered."
struct PermissionKey: Hashable {
    var allocation: AllocationID
    var peer: IPAddress
}

/// RFC 8656 §12: "Within the context of an allocation, a channel binding is uniquely identified
/// either by the channel number or by the peer's transport address." An allocation is identified
/// by its 5-tuple, so a ChannelData message finds its channel with this one key.
struct ChannelKey: Hashable {
    var client: ClientSocket
    var number: ChannelNumber
}

struct PeerChannelKey: Hashable {
    var allocation: AllocationID
    var peer: PeerSocket
}

/// Responses are cached per 5-tuple and transaction (RFC 8489 §6.3.4).
struct TransactionKey: Hashable {
    var client: ClientSocket
    var transactionID: TransactionID
}

/// How a client reaches the server (RFC 8656 §3.1): the `transport` label of the responses by transport.
public enum ClientTransport: Int, Sendable, CaseIterable {
    case udp = 0, tcp, tls
    public var label: String { self == .udp ? "udp" : self == .tcp ? "tcp" : "tls" }
}
