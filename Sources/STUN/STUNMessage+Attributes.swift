/// Typed accessors for the attributes STUN and TURN use.
///
/// Each returns nil (or an empty list) when the attribute is absent, and throws
/// `.malformed(type)` when it is present but its value is invalid. Only attributes that count
/// (see `forEachAttribute`) are considered; for repeated attributes the first one wins.
extension STUNMessage {
    // MARK: Text

    /// USERNAME, at most 513 bytes of UTF-8. RFC 8489 §14.3 asks senders for "a UTF-8-encoded
    /// [RFC3629] sequence of fewer than 509 bytes"; RFC 5389 allowed "less than 513 bytes", so the
    /// receiver accepts the older, larger bound.
    public func username() throws(STUNAttributeError) -> String? {
        try text(.username, maxBytes: 513, maxCharacters: nil)
    }

    /// REALM. RFC 8489 §14.9: "It MUST be a UTF-8-encoded [RFC3629] sequence of fewer than 128
    /// characters (which can be as long as 509 bytes when encoding them and as long as 763 bytes
    /// when decoding them)".
    public func realm() throws(STUNAttributeError) -> String? {
        try text(.realm, maxBytes: 763, maxCharacters: 127)
    }

    /// NONCE. RFC 8489 §14.10: "It MUST be fewer than 128 characters (which can be as long as 509
    /// bytes when encoding them and a long as 763 bytes when decoding them)."
    public func nonce() throws(STUNAttributeError) -> String? {
        try text(.nonce, maxBytes: 763, maxCharacters: 127)
    }

    /// SOFTWARE. RFC 8489 §14.14: "It MUST be a UTF-8-encoded [RFC3629] sequence of fewer than 128
    /// characters (which can be as long as 509 when encoding them and as long as 763 bytes when
    /// decoding them)."
    public func software() throws(STUNAttributeError) -> String? {
        try text(.software, maxBytes: 763, maxCharacters: 127)
    }

    /// USERHASH. RFC 8489 §14.4: "The value of USERHASH has a fixed length of 32 bytes."
    public func userhash() throws(STUNAttributeError) -> UnsafeRawBufferPointer? {
        guard let v = attribute(.userhash) else { return nil }
        guard v.count == 32 else { throw .malformed(.userhash) }
        return v
    }

    // MARK: Addresses

    public func xorMappedAddress() throws(STUNAttributeError) -> TransportAddress? {
        try address(.xorMappedAddress, xor: true)
    }

    public func mappedAddress() throws(STUNAttributeError) -> TransportAddress? {
        try address(.mappedAddress, xor: false)
    }

    /// ALTERNATE-SERVER (RFC 8489 §14.15), encoded like MAPPED-ADDRESS.
    public func alternateServer() throws(STUNAttributeError) -> TransportAddress? {
        try address(.alternateServer, xor: false)
    }

    /// Every XOR-PEER-ADDRESS, in order. RFC 8656 §10.1: a CreatePermission request "MUST contain
    /// at least one XOR-PEER-ADDRESS attribute and MAY contain multiple such attributes".
    public func xorPeerAddresses() throws(STUNAttributeError) -> [TransportAddress] {
        try addresses(.xorPeerAddress)
    }

    /// Every XOR-RELAYED-ADDRESS, in order (a dual-stack allocation carries two).
    public func xorRelayedAddresses() throws(STUNAttributeError) -> [TransportAddress] {
        try addresses(.xorRelayedAddress)
    }

    // MARK: Fixed-size values

    /// LIFETIME (RFC 8656 §18.2): 32 bits, seconds.
    public func lifetime() throws(STUNAttributeError) -> UInt32? {
        guard let v = attribute(.lifetime) else { return nil }
        guard v.count == 4 else { throw .malformed(.lifetime) }
        return v.readUInt32(at: 0)
    }

    /// CONNECTION-ID (RFC 6062 §6.2): "a 32-bit value that uniquely identifies a peer data
    /// connection".
    public func connectionID() throws(STUNAttributeError) -> UInt32? {
        guard let v = attribute(.connectionID) else { return nil }
        guard v.count == 4 else { throw .malformed(.connectionID) }
        return v.readUInt32(at: 0)
    }

    /// CHANNEL-NUMBER (RFC 8656 §18.1): a 16-bit channel number followed by 16 RFFU bits.
    /// Range checking (0x4000-0x4FFF) is the server's job.
    public func channelNumber() throws(STUNAttributeError) -> UInt16? {
        guard let v = attribute(.channelNumber) else { return nil }
        guard v.count == 4 else { throw .malformed(.channelNumber) }
        return v.readUInt16(at: 0)
    }

    /// REQUESTED-TRANSPORT (RFC 8656 §18.8): the IP protocol number (17 = UDP) and 24 RFFU bits.
    public func requestedTransport() throws(STUNAttributeError) -> UInt8? {
        guard let v = attribute(.requestedTransport) else { return nil }
        guard v.count == 4 else { throw .malformed(.requestedTransport) }
        return v[0]
    }

    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6): family byte and 24 reserved bits.
    /// An unknown family value is malformed.
    public func requestedAddressFamily() throws(STUNAttributeError) -> AddressFamily? {
        try family(.requestedAddressFamily)
    }

    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): same layout as REQUESTED-ADDRESS-FAMILY.
    public func additionalAddressFamily() throws(STUNAttributeError) -> AddressFamily? {
        try family(.additionalAddressFamily)
    }

    /// ADDITIONAL-ADDRESS-FAMILY under its pre-RFC draft codepoint 0x8032 (same layout).
    public func draftAdditionalAddressFamily() throws(STUNAttributeError) -> AddressFamily? {
        try family(.draftAdditionalAddressFamily)
    }

    /// EVEN-PORT (RFC 8656 §18.7): one byte whose most significant bit is R ("the server is
    /// requested to reserve the next-higher port number").
    /// (Swift has no one-element labelled tuple, so this is the `EvenPort` struct with the same
    /// `reserveNext` member.)
    public func evenPort() throws(STUNAttributeError) -> EvenPort? {
        guard let v = attribute(.evenPort) else { return nil }
        guard v.count == 1 else { throw .malformed(.evenPort) }
        return EvenPort(reserveNext: v[0] & 0x80 != 0)
    }

    /// RESERVATION-TOKEN (RFC 8656 §18.10): 8 bytes.
    public func reservationToken() throws(STUNAttributeError) -> UInt64? {
        guard let v = attribute(.reservationToken) else { return nil }
        guard v.count == 8 else { throw .malformed(.reservationToken) }
        return v.readUInt64(at: 0)
    }

    /// DONT-FRAGMENT (RFC 8656 §18.9): "This attribute has no value part".
    public var hasDontFragment: Bool { attribute(.dontFragment) != nil }

    /// DATA (RFC 8656 §18.4): the payload, as a slice of `bytes` (no copy).
    public func data() -> UnsafeRawBufferPointer? { attribute(.data) }

    /// ICMP (RFC 8656 §18.13): 16 reserved bits, ICMP type, ICMP code, 32 bits of error data.
    public func icmp() throws(STUNAttributeError) -> (type: UInt8, code: UInt8, errorData: UInt32)? {
        guard let v = attribute(.icmp) else { return nil }
        guard v.count == 8 else { throw .malformed(.icmp) }
        return (type: v[2], code: v[3], errorData: v.readUInt32(at: 4))
    }

    // MARK: Errors

    /// ERROR-CODE (RFC 8489 §14.8): "The Class represents the hundreds digit of the error code. The
    /// value MUST be between 3 and 6. The Number represents the binary encoding of the error code
    /// modulo 100, and its value MUST be between 0 and 99."
    public func errorCode() throws(STUNAttributeError) -> (code: Int, reason: String)? {
        guard let v = attribute(.errorCode) else { return nil }
        guard let e = Self.decodeErrorCode(v) else { throw .malformed(.errorCode) }
        return e
    }

    /// ADDRESS-ERROR-CODE (RFC 8656 §18.12): ERROR-CODE's layout with the address family in the
    /// first byte.
    public func addressErrorCode() throws(STUNAttributeError) -> (family: AddressFamily, code: Int, reason: String)? {
        guard let v = attribute(.addressErrorCode) else { return nil }
        guard v.count >= 4, let family = AddressFamily(rawValue: v[0]),
              let e = Self.decodeErrorCode(v) else { throw .malformed(.addressErrorCode) }
        return (family: family, code: e.code, reason: e.reason)
    }

    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): a list of 16-bit attribute types.
    public func unknownAttributes() throws(STUNAttributeError) -> [AttributeType] {
        guard let v = attribute(.unknownAttributes) else { return [] }
        guard v.count & 1 == 0 else { throw .malformed(.unknownAttributes) }
        return stride(from: 0, to: v.count, by: 2).map { AttributeType(rawValue: v.readUInt16(at: $0)) }
    }

    // MARK: Password algorithms

    /// PASSWORD-ALGORITHM (RFC 8489 §14.11): algorithm (16 bits), parameters length (16 bits),
    /// parameters (padded to 4 bytes).
    public func passwordAlgorithm() throws(STUNAttributeError) -> (algorithm: UInt16, parameters: UnsafeRawBufferPointer)? {
        guard let v = attribute(.passwordAlgorithm) else { return nil }
        guard v.count >= 4 else { throw .malformed(.passwordAlgorithm) }
        let length = Int(v.readUInt16(at: 2))
        guard v.count - 4 == (length + 3) & ~3 || v.count - 4 == length else { throw .malformed(.passwordAlgorithm) }
        return (algorithm: v.readUInt16(at: 0), parameters: v.slice(4, length))
    }

    /// PASSWORD-ALGORITHMS (RFC 8489 §14.12): a list of (algorithm, parameters length, parameters
    /// padded to 4 bytes). Returns the algorithm numbers in order.
    public func passwordAlgorithms() throws(STUNAttributeError) -> [UInt16] {
        guard let v = attribute(.passwordAlgorithms) else { return [] }
        var out: [UInt16] = []
        var offset = 0
        while offset < v.count {
            guard v.count - offset >= 4 else { throw .malformed(.passwordAlgorithms) }
            let length = Int(v.readUInt16(at: offset + 2))
            let padded = (length + 3) & ~3
            guard v.count - offset - 4 >= padded else { throw .malformed(.passwordAlgorithms) }
            out.append(v.readUInt16(at: offset))
            offset += 4 + padded
        }
        return out
    }

    // MARK: Helpers

    func text(_ type: AttributeType, maxBytes: Int, maxCharacters: Int?) throws(STUNAttributeError) -> String? {
        guard let v = attribute(type) else { return nil }
        guard v.count <= maxBytes, let s = String(validating: v, as: UTF8.self) else { throw .malformed(type) }
        // A character takes at least one byte, so only values longer in bytes need counting.
        if let maxCharacters, v.count > maxCharacters, s.unicodeScalars.count > maxCharacters { throw .malformed(type) }
        return s
    }

    func address(_ type: AttributeType, xor: Bool) throws(STUNAttributeError) -> TransportAddress? {
        guard let v = attribute(type) else { return nil }
        guard let a = AddressAttribute.decode(v, xor: xor ? transactionID : nil) else { throw .malformed(type) }
        return a
    }

    func addresses(_ type: AttributeType) throws(STUNAttributeError) -> [TransportAddress] {
        var out: [TransportAddress] = []
        var bad = false
        walk { t, v in
            guard t == type else { return true }
            guard let a = AddressAttribute.decode(v, xor: transactionID) else { bad = true; return false }
            out.append(a)
            return true
        }
        if bad { throw .malformed(type) }
        return out
    }

    func family(_ type: AttributeType) throws(STUNAttributeError) -> AddressFamily? {
        guard let v = attribute(type) else { return nil }
        guard v.count == 4, let f = AddressFamily(rawValue: v[0]) else { throw .malformed(type) }
        return f
    }

    static func decodeErrorCode(_ v: UnsafeRawBufferPointer) -> (code: Int, reason: String)? {
        guard v.count >= 4, v.count - 4 <= 763 else { return nil }
        let errorClass = Int(v[2] & 0x07), number = Int(v[3])
        guard (3...6).contains(errorClass), number <= 99 else { return nil }
        guard let reason = String(validating: v.slice(4, v.count - 4), as: UTF8.self) else { return nil }
        return (code: errorClass * 100 + number, reason: reason)
    }
}
