import STUN
import TURNRequests

/// The TURN requests the load generator sends (RFC 8656), and what it needs from the answers.
public enum ControlRequest: Sendable, Equatable {
    /// Binding (RFC 8489 §3): used to see whether a server is up.
    case binding
    /// Allocate with REQUESTED-TRANSPORT UDP, and REQUESTED-ADDRESS-FAMILY when `family` is given.
    case allocate(family: AddressFamily? = nil)
    /// Refresh with this LIFETIME (0 deletes the allocation).
    case refresh(lifetime: UInt32)
    /// ChannelBind `channel` to `peer` (also installs the permission, RFC 8656 §12).
    case channelBind(channel: UInt16, peer: TransportAddress)
    case createPermission(peer: TransportAddress)
    /// Allocate with REQUESTED-TRANSPORT TCP (RFC 6062 §4.1).
    case allocateTCP
    /// Connect to `peer` from a TCP allocation's relayed address (RFC 6062 §4.3): CONNECTION-ID.
    case connect(peer: TransportAddress)
    /// ConnectionBind on a new data connection (RFC 6062 §4.4).
    case connectionBind(id: UInt32)

    public var method: UInt16 {
        switch self {
        case .binding: return 0x001
        case .allocate, .allocateTCP: return 0x003
        case .connect: return 0x00A
        case .connectionBind: return 0x00B
        case .refresh: return 0x004
        case .createPermission: return 0x008
        case .channelBind: return 0x009
        }
    }
}

/// The long-term credential attributes of an authenticated request: the shared builder's
/// (`TURNRequests.LongTermAuth`; MD5 key, USERNAME, MESSAGE-INTEGRITY unless set otherwise).
public typealias ControlAuth = LongTermAuth

/// A decoded response to a `ControlRequest`.
public struct ControlResponse: Sendable, Equatable {
    public var transactionID: [UInt8]
    public var method: UInt16
    public var isSuccess: Bool
    public var errorCode: Int?
    public var realm: String?
    public var nonce: String?
    public var relayedAddress: TransportAddress?
    public var mappedAddress: TransportAddress?
    public var lifetime: UInt32?
    /// CONNECTION-ID (RFC 6062), in a Connect success.
    public var connectionID: UInt32?

    public init(transactionID: [UInt8], method: UInt16, isSuccess: Bool, errorCode: Int? = nil, realm: String? = nil,
                nonce: String? = nil, relayedAddress: TransportAddress? = nil, mappedAddress: TransportAddress? = nil,
                lifetime: UInt32? = nil) {
        self.transactionID = transactionID
        self.method = method
        self.isSuccess = isSuccess
        self.errorCode = errorCode
        self.realm = realm
        self.nonce = nonce
        self.relayedAddress = relayedAddress
        self.mappedAddress = mappedAddress
        self.lifetime = lifetime
    }
}
