import Crypto
import FuzzSupport
@testable import STUN

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

/// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT verification against a reference
/// written here from RFC 8489 §14.5-§14.7 (swift-crypto's one-shot HMAC over a copy of the message
/// with the length field adjusted; a bitwise CRC-32), on two kinds of input:
/// - first byte even: arbitrary bytes (after a key); each verifier agrees with the reference;
/// - first byte odd: a message built from the input's attributes and signed (MI and/or MI-SHA256,
///   maybe truncated, maybe FINGERPRINT) verifies with its key and not with another; then the input
///   mutates it (flip bytes, truncate, change a length) and the verifiers still agree with the
///   reference, whose answer for an untouched signed prefix is true.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let mode = input.byte()
    let key = input.chunk(max: 80)
    if mode & 1 == 0 {
        let bytes = input.rest()
        check(bytes, key: key)
        return 0
    }
    // Build and sign.
    let type = STUNMessageType(rawValue: input.uint16() & 0x3FFF)!
    let idBytes = input.take(12)
    let id = TransactionID(idBytes + [UInt8](repeating: 0, count: 12 - idBytes.count))
    let flags = input.byte()
    var attributes: [(UInt16, [UInt8])] = []
    for _ in 0..<input.below(6) {
        var t = input.uint16()
        if t == 0x0008 || t == 0x001C || t == 0x8028 { t = 0x0006 }
        attributes.append((t, input.chunk(max: 64)))
    }
    let truncation = 16 + 4 * input.below(5)
    var storage = [UInt8](repeating: 0, count: 2048)
    guard let n = storage.withUnsafeMutableBytes({ buffer -> Int? in
        var w = STUNMessageWriter(into: buffer, type: type, transactionID: id)
        for (t, v) in attributes { v.withUnsafeBytes { w.append(AttributeType(rawValue: t), bytes: $0) } }
        if flags & 1 != 0 { w.appendMessageIntegrity(key: key) }
        if flags & 2 != 0 { w.appendMessageIntegritySHA256(key: key, truncatedTo: truncation) }
        if flags & 4 != 0 { w.appendFingerprint() }
        return w.finish()
    }) else { return 0 }
    var message = Array(storage[0..<n])
    message.withUnsafeBytes { raw in
        guard let m = try? STUNMessage.parse(raw) else { fuzzCheck(false, "a written message does not parse"); return }
        let other = key + [0x5A]
        if flags & 1 != 0 {
            fuzzCheck(m.verifyMessageIntegrity(key: key), "MESSAGE-INTEGRITY does not verify with its key")
            fuzzCheck(!m.verifyMessageIntegrity(key: other), "MESSAGE-INTEGRITY verifies with another key")
        } else {
            fuzzCheck(!m.hasMessageIntegrity, "MESSAGE-INTEGRITY found where none was written")
        }
        if flags & 2 != 0 {
            fuzzCheck(m.verifyMessageIntegritySHA256(key: key), "MESSAGE-INTEGRITY-SHA256 (\(truncation)) does not verify")
            fuzzCheck(!m.verifyMessageIntegritySHA256(key: other), "MESSAGE-INTEGRITY-SHA256 verifies with another key")
        }
        if flags & 4 != 0 { fuzzCheck(m.verifyFingerprint(), "FINGERPRINT does not verify") }
    }
    check(message, key: key)
    // Mutate.
    for _ in 0..<(1 + input.below(4)) where !message.isEmpty {
        switch input.below(4) {
        case 0, 1:
            let at = Int(input.uint16()) % message.count
            let flip = input.byte() | 1
            message[at] ^= flip
        case 2:
            message = Array(message.prefix(Int(input.uint16()) % (message.count + 1)))
        default:
            // Rewrite one attribute length (keeps the message parseable more often than a flip).
            if message.count > 24 {
                let at = 20 + 4 * (Int(input.uint16()) % ((message.count - 20) / 4))
                message[at + 2] = input.byte(); message[at + 3] = input.byte()
            }
        }
        check(message, key: key)
    }
    return 0
}

/// The verifiers agree with the reference on `bytes`.
func check(_ bytes: [UInt8], key: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        guard let m = try? STUNMessage.parse(raw) else { return }
        let ref = Reference(bytes)
        fuzzCheck(m.verifyMessageIntegrity(key: key) == ref.messageIntegrity(key: key),
                  "verifyMessageIntegrity \(m.verifyMessageIntegrity(key: key)) differs from the reference")
        fuzzCheck(m.verifyMessageIntegrity(key: HMACState<Insecure.SHA1>(key: key)) == ref.messageIntegrity(key: key),
                  "verifyMessageIntegrity(HMACState) differs from the reference")
        fuzzCheck(m.verifyMessageIntegritySHA256(key: key) == ref.messageIntegritySHA256(key: key),
                  "verifyMessageIntegritySHA256 \(m.verifyMessageIntegritySHA256(key: key)) differs from the reference")
        fuzzCheck(m.verifyFingerprint() == ref.fingerprint(), "verifyFingerprint \(m.verifyFingerprint()) differs from the reference")
        fuzzCheck(m.hasMessageIntegrity == (ref.offset(of: 0x0008) != nil), "hasMessageIntegrity differs")
        fuzzCheck(m.hasMessageIntegritySHA256 == (ref.offset(of: 0x001C) != nil), "hasMessageIntegritySHA256 differs")
        fuzzCheck(m.hasFingerprint == (ref.offset(of: 0x8028) != nil), "hasFingerprint differs")
    }
}

/// RFC 8489 read directly: the attribute walk with §14.5-§14.7's ordering rules, the HMAC input
/// with the length field adjusted, and CRC-32 bit by bit.
struct Reference {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func u16(_ i: Int) -> Int { Int(bytes[i]) << 8 | Int(bytes[i + 1]) }

    /// The offset of the first counting MI (0x0008), MI-SHA256 (0x001C) or FINGERPRINT (0x8028).
    /// After MI only MI-SHA256 and FINGERPRINT count; after MI-SHA256 only FINGERPRINT; nothing after
    /// FINGERPRINT.
    func offset(of wanted: Int) -> Int? {
        var seenMI = false, seenMI256 = false, seenFP = false
        var i = 20
        while i + 4 <= bytes.count {
            let t = u16(i), l = u16(i + 2)
            var counts = !seenFP
            if seenMI256 && t != 0x8028 { counts = false }
            if seenMI && t != 0x001C && t != 0x8028 { counts = false }
            if counts {
                if t == wanted { return i }
                if t == 0x0008 { seenMI = true }
                if t == 0x001C { seenMI256 = true }
                if t == 0x8028 { seenFP = true }
            }
            i += 4 + ((l + 3) & ~3)
        }
        return nil
    }

    func signedPrefix(upTo end: Int, length: Int) -> [UInt8] {
        var copy = Array(bytes[0..<end])
        copy[2] = UInt8(length >> 8); copy[3] = UInt8(length & 0xFF)
        return copy
    }

    func messageIntegrity(key: [UInt8]) -> Bool {
        guard let at = offset(of: 0x0008), u16(at + 2) == 20 else { return false }
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: signedPrefix(upTo: at, length: at - 20 + 24),
                                                         using: SymmetricKey(data: key))
        return Array(mac) == Array(bytes[(at + 4)..<(at + 24)])
    }

    func messageIntegritySHA256(key: [UInt8]) -> Bool {
        guard let at = offset(of: 0x001C) else { return false }
        let l = u16(at + 2)
        guard l >= 16, l <= 32, l % 4 == 0 else { return false }
        let mac = HMAC<SHA256>.authenticationCode(for: signedPrefix(upTo: at, length: at - 20 + 4 + l),
                                                  using: SymmetricKey(data: key))
        return Array(Array(mac).prefix(l)) == Array(bytes[(at + 4)..<(at + 4 + l)])
    }

    func fingerprint() -> Bool {
        guard let at = offset(of: 0x8028), u16(at + 2) == 4 else { return false }
        var crc: UInt32 = 0xFFFF_FFFF
        for b in signedPrefix(upTo: at, length: at - 20 + 8) {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        let expected = (crc ^ 0xFFFF_FFFF) ^ 0x5354_554E
        let actual = UInt32(bytes[at + 4]) << 24 | UInt32(bytes[at + 5]) << 16 | UInt32(bytes[at + 6]) << 8 | UInt32(bytes[at + 7])
        return actual == expected
    }
}
