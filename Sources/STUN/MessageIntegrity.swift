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
        guard messageIntegrityOffset >= 0 else { return false }
        return verifyMessageIntegrity(key: HMACState<Insecure.SHA1>(key: key))
    }

    /// `verifyMessageIntegrity(key:)` with the key's HMAC states already computed.
    public func verifyMessageIntegrity(key: HMACState<Insecure.SHA1>) -> Bool {
        let offset = messageIntegrityOffset
        guard offset >= 0 else { return false }
        let value = bytes.slice(offset + 4, Int(bytes.readUInt16(at: offset + 2)))
        guard value.count == 20 else { return false }
        let mac = key.authenticationCode { feed(&$0, upTo: offset, adjustedLength: offset - Self.headerLength + 24) }
        return mac.withUnsafeBytes { constantTimeEqual($0, value) }
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 with `key`. RFC 8489 §14.6: "The value will be at least 16
    /// bytes and MUST be a multiple of 4 bytes", at most 32; a shorter value is the truncated HMAC.
    public func verifyMessageIntegritySHA256(key: [UInt8]) -> Bool {
        guard messageIntegritySHA256Offset >= 0 else { return false }
        return verifyMessageIntegritySHA256(key: HMACState<SHA256>(key: key))
    }

    /// `verifyMessageIntegritySHA256(key:)` with the key's HMAC states already computed.
    public func verifyMessageIntegritySHA256(key: HMACState<SHA256>) -> Bool {
        let offset = messageIntegritySHA256Offset
        guard offset >= 0 else { return false }
        let value = bytes.slice(offset + 4, Int(bytes.readUInt16(at: offset + 2)))
        guard value.count >= 16, value.count <= 32, value.count & 3 == 0 else { return false }
        let mac = key.authenticationCode { feed(&$0, upTo: offset, adjustedLength: offset - Self.headerLength + 4 + value.count) }
        return mac.withUnsafeBytes { constantTimeEqual(UnsafeRawBufferPointer(rebasing: $0.prefix(value.count)), value) }
    }

    /// Feeds the message up to `end` with the header's length field replaced by `adjustedLength`,
    /// without copying the message.
    func feed<H: HashFunction>(_ hash: inout H, upTo end: Int, adjustedLength: Int) {
        hash.update(bufferPointer: bytes.slice(0, 2))
        withUnsafeBytes(of: UInt16(truncatingIfNeeded: adjustedLength).bigEndian) { hash.update(bufferPointer: $0) }
        hash.update(bufferPointer: bytes.slice(4, end - 4))
    }
}

/// Compares two buffers in time that depends only on their lengths.
func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for i in 0..<a.count { difference |= a[i] ^ b[i] }
    return difference == 0
}
