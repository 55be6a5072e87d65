import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Encodes one STUN message into a caller-provided buffer.
///
/// The header's length field is kept correct after every append, so `finish()` only reports the
/// size. Fixed-size attributes are written without heap allocation. When an attribute does not fit
/// (or the message would exceed the 16-bit length field), the writer stops writing: every later
/// append is ignored, `overflowed` is true and `finish()` returns nil. It never traps.
public struct STUNMessageWriter {
    @usableFromInline let buffer: UnsafeMutableRawBufferPointer
    public let transactionID: TransactionID
    @usableFromInline var offset: Int
    public private(set) var overflowed: Bool

    /// The byte written into attribute padding. RFC 8489 §14: "The padding bits MUST be set to
    /// zero on sending and MUST be ignored by the receiver." Keep the default; another value exists
    /// only to reproduce historical test vectors (RFC 5769 pads with spaces, 0x20).
    public var paddingByte: UInt8 = 0

    public init(into buffer: UnsafeMutableRawBufferPointer, type: STUNMessageType, transactionID: TransactionID) {
        self.buffer = buffer
        self.transactionID = transactionID
        guard buffer.count >= STUNMessage.headerLength else {
            offset = 0
            overflowed = true
            return
        }
        buffer.writeUInt16(type.rawValue, at: 0)
        buffer.writeUInt16(0, at: 2)
        buffer.writeUInt32(STUNMessage.magicCookie, at: 4)
        transactionID.write(to: buffer, at: 8)
        offset = STUNMessage.headerLength
        overflowed = false
    }

    /// Total bytes written, or nil when something did not fit.
    public func finish() -> Int? { overflowed ? nil : offset }

    // MARK: Generic attributes

    /// Appends an attribute with `bytes` as its value, padded to a multiple of 4.
    public mutating func append(_ type: AttributeType, bytes: UnsafeRawBufferPointer) {
        guard let at = beginAttribute(type, length: bytes.count), bytes.count > 0,
              let base = bytes.baseAddress, let dest = buffer.baseAddress else { return }
        (dest + at).copyMemory(from: base, byteCount: bytes.count)
    }

    /// Appends an attribute whose value is the UTF-8 of `string` (USERNAME, REALM, NONCE, SOFTWARE...).
    public mutating func append(_ type: AttributeType, string: String) {
        let utf8 = string.utf8
        guard let at = beginAttribute(type, length: utf8.count) else { return }
        var i = at
        for b in utf8 {
            buffer[i] = b
            i += 1
        }
    }

    /// Appends an attribute with no value (DONT-FRAGMENT).
    public mutating func appendEmpty(_ type: AttributeType) {
        _ = beginAttribute(type, length: 0)
    }

    public mutating func appendUInt32(_ type: AttributeType, _ value: UInt32) {
        guard let at = beginAttribute(type, length: 4) else { return }
        buffer.writeUInt32(value, at: at)
    }

    /// Appends an 8-byte value (RESERVATION-TOKEN).
    public mutating func appendUInt64(_ type: AttributeType, _ value: UInt64) {
        guard let at = beginAttribute(type, length: 8) else { return }
        buffer.writeUInt64(value, at: at)
    }

    // MARK: Addresses

    /// XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS or XOR-RELAYED-ADDRESS: the address XOR'ed with the magic
    /// cookie (and the transaction ID for IPv6), RFC 8489 §14.2.
    public mutating func appendXorAddress(_ type: AttributeType, _ address: TransportAddress) {
        guard let at = beginAttribute(type, length: AddressAttribute.valueLength(address.family)) else { return }
        AddressAttribute.encode(address, xor: transactionID, into: buffer, at: at)
    }

    /// MAPPED-ADDRESS (RFC 8489 §14.1), the address in the clear.
    public mutating func appendMappedAddress(_ address: TransportAddress) {
        appendPlainAddress(.mappedAddress, address)
    }

    /// An address in MAPPED-ADDRESS encoding under another type, e.g. ALTERNATE-SERVER (RFC 8489
    /// §14.15: "It is encoded in the same way as MAPPED-ADDRESS").
    public mutating func appendPlainAddress(_ type: AttributeType, _ address: TransportAddress) {
        guard let at = beginAttribute(type, length: AddressAttribute.valueLength(address.family)) else { return }
        AddressAttribute.encode(address, xor: nil, into: buffer, at: at)
    }

    // MARK: TURN values

    /// CHANNEL-NUMBER (RFC 8656 §18.1): the number, then 16 RFFU bits.
    public mutating func appendChannelNumber(_ channel: UInt16) {
        guard let at = beginAttribute(.channelNumber, length: 4) else { return }
        buffer.writeUInt16(channel, at: at)
        buffer.writeUInt16(0, at: at + 2)
    }

    /// REQUESTED-TRANSPORT (RFC 8656 §18.8): protocol number (17 = UDP), then 24 RFFU bits.
    public mutating func appendRequestedTransport(_ protocolNumber: UInt8) {
        guard let at = beginAttribute(.requestedTransport, length: 4) else { return }
        buffer.writeUInt32(UInt32(protocolNumber) << 24, at: at)
    }

    /// REQUESTED-ADDRESS-FAMILY or ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.6, §18.11).
    public mutating func appendAddressFamily(_ type: AttributeType, _ family: AddressFamily) {
        guard let at = beginAttribute(type, length: 4) else { return }
        buffer.writeUInt32(UInt32(family.rawValue) << 24, at: at)
    }

    /// EVEN-PORT (RFC 8656 §18.7): one byte, R in the most significant bit.
    public mutating func appendEvenPort(reserveNext: Bool) {
        guard let at = beginAttribute(.evenPort, length: 1) else { return }
        buffer[at] = reserveNext ? 0x80 : 0
    }

    /// ICMP (RFC 8656 §18.13).
    public mutating func appendICMP(type: UInt8, code: UInt8, errorData: UInt32) {
        guard let at = beginAttribute(.icmp, length: 8) else { return }
        buffer.writeUInt16(0, at: at)
        buffer[at + 2] = type
        buffer[at + 3] = code
        buffer.writeUInt32(errorData, at: at + 4)
    }

    // MARK: Errors

    /// ERROR-CODE (RFC 8489 §14.8): 21 reserved bits, the class (hundreds digit), the number
    /// (code modulo 100), then the UTF-8 reason phrase.
    public mutating func appendErrorCode(_ code: Int, reason: String) {
        appendCodeAndReason(.errorCode, firstByte: 0, code: code, reason: reason)
    }

    public mutating func appendErrorCode(_ error: STUNErrorCode) {
        appendErrorCode(error.code, reason: error.reason)
    }

    /// ADDRESS-ERROR-CODE (RFC 8656 §18.12): like ERROR-CODE, with the family in the first byte.
    public mutating func appendAddressErrorCode(family: AddressFamily, code: Int, reason: String) {
        appendCodeAndReason(.addressErrorCode, firstByte: family.rawValue, code: code, reason: reason)
    }

    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the 16-bit types, padded to a multiple of 4.
    public mutating func appendUnknownAttributes(_ types: [AttributeType]) {
        guard let at = beginAttribute(.unknownAttributes, length: 2 * types.count) else { return }
        for (i, t) in types.enumerated() { buffer.writeUInt16(t.rawValue, at: at + 2 * i) }
    }

    // MARK: Password algorithms

    /// PASSWORD-ALGORITHMS (RFC 8489 §14.12): each algorithm with an empty parameter list.
    public mutating func appendPasswordAlgorithms(_ algorithms: [PasswordAlgorithm]) {
        guard let at = beginAttribute(.passwordAlgorithms, length: 4 * algorithms.count) else { return }
        for (i, a) in algorithms.enumerated() {
            buffer.writeUInt16(a.rawValue, at: at + 4 * i)
            buffer.writeUInt16(0, at: at + 4 * i + 2)
        }
    }

    /// PASSWORD-ALGORITHM (RFC 8489 §14.11) with an empty parameter list.
    public mutating func appendPasswordAlgorithm(_ algorithm: PasswordAlgorithm) {
        guard let at = beginAttribute(.passwordAlgorithm, length: 4) else { return }
        buffer.writeUInt16(algorithm.rawValue, at: at)
        buffer.writeUInt16(0, at: at + 2)
    }

    // MARK: Integrity

    /// MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message so far, with the length field
    /// already counting the MESSAGE-INTEGRITY attribute.
    public mutating func appendMessageIntegrity(key: [UInt8]) {
        appendMessageIntegrity(key: HMACState<Insecure.SHA1>(key: key))
    }

    /// `appendMessageIntegrity(key:)` with the key's HMAC states already computed.
    public mutating func appendMessageIntegrity(key: HMACState<Insecure.SHA1>) {
        let start = offset
        guard let at = beginAttribute(.messageIntegrity, length: 20) else { return }
        let mac = key.authenticationCode(for: UnsafeRawBufferPointer(rebasing: buffer[0..<start]))
        mac.withUnsafeBytes { copy($0, to: at) }
    }

    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), by default the full 32-byte HMAC-SHA256.
    ///
    /// `truncatedTo` keeps only the first bytes of the HMAC: "The value will be at least 16 bytes
    /// and MUST be a multiple of 4 bytes". Other values are rounded down to a multiple of 4 and
    /// clamped to 16...32.
    public mutating func appendMessageIntegritySHA256(key: [UInt8], truncatedTo length: Int = 32) {
        appendMessageIntegritySHA256(key: HMACState<SHA256>(key: key), truncatedTo: length)
    }

    /// `appendMessageIntegritySHA256(key:truncatedTo:)` with the key's HMAC states already computed.
    public mutating func appendMessageIntegritySHA256(key: HMACState<SHA256>, truncatedTo length: Int = 32) {
        let length = min(32, max(16, length & ~3))
        let start = offset
        guard let at = beginAttribute(.messageIntegritySHA256, length: length) else { return }
        let mac = key.authenticationCode(for: UnsafeRawBufferPointer(rebasing: buffer[0..<start]))
        mac.withUnsafeBytes { copy(UnsafeRawBufferPointer(rebasing: $0.prefix(length)), to: at) }
    }

    /// FINGERPRINT (RFC 8489 §14.7); it must be the last attribute.
    public mutating func appendFingerprint() {
        let start = offset
        guard let at = beginAttribute(.fingerprint, length: 4) else { return }
        let value = Fingerprint.value(UnsafeRawBufferPointer(buffer), upTo: start,
                                      adjustedLength: offset - STUNMessage.headerLength)
        buffer.writeUInt32(value, at: at)
    }

    // MARK: Helpers

    /// Writes the attribute header and padding, updates the header's length field and returns the
    /// offset of the value; nil (and `overflowed`) when it does not fit.
    @usableFromInline
    mutating func beginAttribute(_ type: AttributeType, length: Int) -> Int? {
        guard !overflowed else { return nil }
        let padded = (length + 3) & ~3
        guard length <= 0xFFFF, buffer.count - offset >= 4 + padded,
              offset + 4 + padded - STUNMessage.headerLength <= 0xFFFF else {
            overflowed = true
            return nil
        }
        buffer.writeUInt16(type.rawValue, at: offset)
        buffer.writeUInt16(UInt16(length), at: offset + 2)
        let valueOffset = offset + 4
        for i in (valueOffset + length)..<(valueOffset + padded) { buffer[i] = paddingByte }
        offset = valueOffset + padded
        buffer.writeUInt16(UInt16(offset - STUNMessage.headerLength), at: 2)
        return valueOffset
    }

    private func copy(_ source: UnsafeRawBufferPointer, to at: Int) {
        guard let base = source.baseAddress, let dest = buffer.baseAddress, source.count > 0 else { return }
        (dest + at).copyMemory(from: base, byteCount: source.count)
    }

    private mutating func appendCodeAndReason(_ type: AttributeType, firstByte: UInt8, code: Int, reason: String) {
        let utf8 = reason.utf8
        guard let at = beginAttribute(type, length: 4 + utf8.count) else { return }
        buffer[at] = firstByte
        buffer[at + 1] = 0
        buffer[at + 2] = UInt8(truncatingIfNeeded: (code / 100) & 0x07)
        buffer[at + 3] = UInt8(truncatingIfNeeded: code % 100)
        var i = at + 4
        for b in utf8 {
            buffer[i] = b
            i += 1
        }
    }
}
