/// A STUN method: the 12-bit operation code of a message (RFC 8489 §5, RFC 8656 §17).
public struct STUNMethod: RawRepresentable, Hashable, Sendable {
    /// The method number. Only the low 12 bits are carried on the wire.
    public var rawValue: UInt16

    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// RFC 8489 §18.2.
    public static let binding = STUNMethod(rawValue: 0x001)
    /// RFC 8656 §17.
    public static let allocate = STUNMethod(rawValue: 0x003)
    public static let refresh = STUNMethod(rawValue: 0x004)
    public static let send = STUNMethod(rawValue: 0x006)
    public static let data = STUNMethod(rawValue: 0x007)
    public static let createPermission = STUNMethod(rawValue: 0x008)
    public static let channelBind = STUNMethod(rawValue: 0x009)
    /// RFC 6062 §6.1 (TCP allocations).
    public static let connect = STUNMethod(rawValue: 0x00A)
    public static let connectionBind = STUNMethod(rawValue: 0x00B)
    public static let connectionAttempt = STUNMethod(rawValue: 0x00C)
}

extension STUNMethod: CustomStringConvertible {
    public var description: String {
        switch self {
        case .binding: return "Binding"
        case .allocate: return "Allocate"
        case .refresh: return "Refresh"
        case .send: return "Send"
        case .data: return "Data"
        case .createPermission: return "CreatePermission"
        case .channelBind: return "ChannelBind"
        case .connect: return "Connect"
        case .connectionBind: return "ConnectionBind"
        case .connectionAttempt: return "ConnectionAttempt"
        default: return "Method(0x\(String(rawValue, radix: 16)))"
        }
    }
}
