/// An error response code with its RFC reason phrase, for ERROR-CODE.
///
/// Use as `writer.appendErrorCode(.badRequest)` or read `.code` / `.reason`.
public struct STUNErrorCode: Hashable, Sendable {
    public var code: Int
    public var reason: String

    public init(code: Int, reason: String) {
        self.code = code
        self.reason = reason
    }

    // RFC 8489 §14.8
    public static let tryAlternate = STUNErrorCode(code: 300, reason: "Try Alternate")
    public static let badRequest = STUNErrorCode(code: 400, reason: "Bad Request")
    /// RFC 8489 renamed RFC 5389's "Unauthorized" to "Unauthenticated".
    public static let unauthenticated = STUNErrorCode(code: 401, reason: "Unauthenticated")
    public static let unknownAttribute = STUNErrorCode(code: 420, reason: "Unknown Attribute")
    public static let staleNonce = STUNErrorCode(code: 438, reason: "Stale Nonce")
    public static let serverError = STUNErrorCode(code: 500, reason: "Server Error")

    // RFC 8656 §19
    public static let forbidden = STUNErrorCode(code: 403, reason: "Forbidden")
    public static let allocationMismatch = STUNErrorCode(code: 437, reason: "Allocation Mismatch")
    public static let addressFamilyNotSupported = STUNErrorCode(code: 440, reason: "Address Family not Supported")
    public static let wrongCredentials = STUNErrorCode(code: 441, reason: "Wrong Credentials")
    public static let unsupportedTransportProtocol = STUNErrorCode(code: 442, reason: "Unsupported Transport Protocol")
    public static let peerAddressFamilyMismatch = STUNErrorCode(code: 443, reason: "Peer Address Family Mismatch")
    public static let allocationQuotaReached = STUNErrorCode(code: 486, reason: "Allocation Quota Reached")
    public static let insufficientCapacity = STUNErrorCode(code: 508, reason: "Insufficient Capacity")

    // RFC 6062 §6.3 (TURN-TCP)
    public static let connectionAlreadyExists = STUNErrorCode(code: 446, reason: "Connection Already Exists")
    public static let connectionTimeoutOrFailure = STUNErrorCode(code: 447, reason: "Connection Timeout or Failure")

    public static let all: [STUNErrorCode] = [
        tryAlternate, badRequest, unauthenticated, forbidden, unknownAttribute, allocationMismatch, staleNonce,
        addressFamilyNotSupported, wrongCredentials, unsupportedTransportProtocol, peerAddressFamilyMismatch,
        connectionAlreadyExists, connectionTimeoutOrFailure, allocationQuotaReached, serverError, insufficientCapacity,
    ]

    /// The registered error for `code`, if any.
    public init?(code: Int) {
        guard let e = Self.all.first(where: { $0.code == code }) else { return nil }
        self = e
    }
}
