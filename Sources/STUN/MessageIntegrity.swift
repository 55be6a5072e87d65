import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// MESSAGE-INTEGRITY (RFC 8489 §14.5) and MESSAGE-INTEGRITY-SHA256 (§14.6) verification.
///
/// RFC 8489 §14.5: "The text used as input to HMAC is the STUN message, up to and including the
/// attribute preceding the MESSAGE-INTEGRITY attribute. The Length field of the STUN message header
/// is adjusted to point to the end of the MESSAGE-INTEGRITY attribute."
extension STUNMessage {
    public var hasMessageIntegrity: Bool { messageIntegrityOffset >= 0 }
    public var hasMessageIntegritySHA256: Bool { messageIntegritySHA256Offset >= 0 }
    public var hasFingerprint: Bool { fingerprintOffset >= 0 }

    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes) with `key`. False when absent or of the
    /// wrong length. The comparison takes the same time wherever the first difference is.
    public func verifyMessageIntegrity(key: [UInt8]) -> Bool {
        let offset = messageIntegrityOffset
        guard offset >= 0 else { return false }
        let value = bytes.slice(offset + 4, Int(bytes.readUInt16(at: offset + 2)))
        guard value.count == 20 else { return false }
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: STUNMessage.hmacInput(bytes, upTo: offset, adjustedLength: offset - Self.headerLength + 24),
            using: SymmetricKey(data: key))
        return mac.withUnsafeBytes { constantTimeEqual($0, value) }
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 with `key`. RFC 8489 §14.6: "The value will be at least 16
    /// bytes and MUST be a multiple of 4 bytes", at most 32; a shorter value is the truncated HMAC.
    public func verifyMessageIntegritySHA256(key: [UInt8]) -> Bool {
        let offset = messageIntegritySHA256Offset
        guard offset >= 0 else { return false }
        let value = bytes.slice(offset + 4, Int(bytes.readUInt16(at: offset + 2)))
        guard value.count >= 16, value.count <= 32, value.count & 3 == 0 else { return false }
        let mac = HMAC<SHA256>.authenticationCode(
            for: STUNMessage.hmacInput(bytes, upTo: offset, adjustedLength: offset - Self.headerLength + 4 + value.count),
            using: SymmetricKey(data: key))
        return mac.withUnsafeBytes { constantTimeEqual(UnsafeRawBufferPointer(rebasing: $0.prefix(value.count)), value) }
    }

    /// The message up to `end` with the header's length field replaced by `adjustedLength`.
    static func hmacInput(_ bytes: UnsafeRawBufferPointer, upTo end: Int, adjustedLength: Int) -> [UInt8] {
        var input = [UInt8](bytes[0..<end])
        input[2] = UInt8(truncatingIfNeeded: adjustedLength >> 8)
        input[3] = UInt8(truncatingIfNeeded: adjustedLength)
        return input
    }
}

/// Compares two buffers in time that depends only on their lengths.
func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}
