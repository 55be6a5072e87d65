/// A STUN attribute type (RFC 8489 §14, §18.3; RFC 8656 §18).
public struct AttributeType: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt16

    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// RFC 8489 §14: "Attributes with type values between 0x0000 and 0x7FFF are
    /// comprehension-required attributes, which means that the STUN agent cannot successfully
    /// process the message unless it understands the attribute."
    @inlinable public var isComprehensionRequired: Bool { rawValue < 0x8000 }

    // Comprehension-required range (0x0000-0x7FFF).
    public static let mappedAddress = AttributeType(rawValue: 0x0001)
    public static let username = AttributeType(rawValue: 0x0006)
    public static let messageIntegrity = AttributeType(rawValue: 0x0008)
    public static let errorCode = AttributeType(rawValue: 0x0009)
    public static let unknownAttributes = AttributeType(rawValue: 0x000A)
    public static let channelNumber = AttributeType(rawValue: 0x000C)
    public static let lifetime = AttributeType(rawValue: 0x000D)
    public static let xorPeerAddress = AttributeType(rawValue: 0x0012)
    public static let data = AttributeType(rawValue: 0x0013)
    public static let realm = AttributeType(rawValue: 0x0014)
    public static let nonce = AttributeType(rawValue: 0x0015)
    public static let xorRelayedAddress = AttributeType(rawValue: 0x0016)
    public static let requestedAddressFamily = AttributeType(rawValue: 0x0017)
    public static let evenPort = AttributeType(rawValue: 0x0018)
    public static let requestedTransport = AttributeType(rawValue: 0x0019)
    public static let dontFragment = AttributeType(rawValue: 0x001A)
    public static let messageIntegritySHA256 = AttributeType(rawValue: 0x001C)
    public static let passwordAlgorithm = AttributeType(rawValue: 0x001D)
    public static let userhash = AttributeType(rawValue: 0x001E)
    public static let xorMappedAddress = AttributeType(rawValue: 0x0020)
    public static let reservationToken = AttributeType(rawValue: 0x0022)
    /// RFC 6062 §6.2: identifies a peer data connection of a TCP allocation.
    public static let connectionID = AttributeType(rawValue: 0x002A)

    // Comprehension-optional range (0x8000-0xFFFF).
    public static let additionalAddressFamily = AttributeType(rawValue: 0x8000)
    public static let addressErrorCode = AttributeType(rawValue: 0x8001)
    public static let passwordAlgorithms = AttributeType(rawValue: 0x8002)
    public static let alternateDomain = AttributeType(rawValue: 0x8003)
    public static let icmp = AttributeType(rawValue: 0x8004)
    public static let software = AttributeType(rawValue: 0x8022)
    public static let alternateServer = AttributeType(rawValue: 0x8023)
    public static let fingerprint = AttributeType(rawValue: 0x8028)
    /// ADDITIONAL-ADDRESS-FAMILY as draft-ietf-tram-turn-ipv6 numbered it before RFC 8656 assigned
    /// 0x8000; coturn (4.6 included) still sends this codepoint. Unassigned in the IANA registry.
    public static let draftAdditionalAddressFamily = AttributeType(rawValue: 0x8032)
}

extension AttributeType: CustomStringConvertible {
    public var description: String { "0x" + String(rawValue, radix: 16, uppercase: true) }
}
