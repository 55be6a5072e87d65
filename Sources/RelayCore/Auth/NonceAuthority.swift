import Crypto
import STUN

/// Stateless nonces (hardening notes §4.2 item 3): nothing is stored per client, so a flood of
/// requests from spoofed sources creates no state. A nonce proves that this process minted it
/// for this client transport address at a given time.
///
/// Layout, 61 printable ASCII characters (RFC 8489 §14.10: "MUST be fewer than 128 characters"):
///
///     obMatJos2 FFFF TTTTTTTTTTTTTTTT MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM
///     cookie    feat timestamp (hex)  HMAC-SHA256 tag, first 16 bytes (hex)
///
/// - RFC 8489 §9.2: "the nonce value starts with the 'nonce cookie'": the nine characters
///   "obMatJos2" followed by "the Security Feature Set ... encoded as 4 characters by taking the
///   24-bit value and encoding it using base64". Bit 0 is "Password algorithms" (§18.1), and
///   per RFC errata 6290 bits are numbered from the least significant end, so the features read
///   "AAAB" when it is set and "AAAA" when not (the RFC's own B.1 example "AAAC" is bit 1,
///   username anonymity; libjuice tests `bits & 0x01`).
/// - The timestamp is the minting time in Unix seconds, 16 lower-case hex digits.
/// - The tag is HMAC-SHA256(key, first 29 characters ‖ family ‖ port ‖ address bytes), so the
///   feature bits and the timestamp are authenticated together with the client 5-tuple's
///   source (the server's side of the 5-tuple is fixed per socket).
public struct NonceAuthority: Sendable {
    static let cookie: [UInt8] = Array("obMatJos2".utf8)
    static let length = 9 + 4 + 16 + 32
    private static let signedLength = 9 + 4 + 16
    private static let tagBytes = 16

    /// Raw bytes: swift-crypto's `SymmetricKey` is not `Sendable`.
    private let key: [UInt8]
    public let lifetimeSeconds: UInt64
    public let advertisesPasswordAlgorithms: Bool

    /// - Parameters:
    ///   - key: a per-process random key of at least 16 bytes (configuration, not input: a shorter
    ///     key is a programming error and traps).
    ///   - lifetimeSeconds: a nonce is valid for ages 0 ..< lifetime; older ones are stale (438).
    public init(key: [UInt8], lifetimeSeconds: UInt64 = 600, advertisePasswordAlgorithms: Bool = true) {
        precondition(key.count >= 16, "NonceAuthority key must be at least 16 bytes")
        self.key = key
        self.lifetimeSeconds = lifetimeSeconds
        self.advertisesPasswordAlgorithms = advertisePasswordAlgorithms
    }

    public func mint(for client: TransportAddress, nowUnixSeconds: UInt64) -> String {
        var text = Self.cookie
        text.reserveCapacity(Self.length)
        text += Array((advertisesPasswordAlgorithms ? "AAAB" : "AAAA").utf8)
        Self.appendHex(nowUnixSeconds, digits: 16, to: &text)
        let tag = self.tag(signed: text, client: client)
        for b in tag { Self.appendHex(UInt64(b), digits: 2, to: &text) }
        return String(decoding: text, as: UTF8.self)
    }

    public enum Validity: Equatable, Sendable {
        /// Minted here for this client less than `lifetimeSeconds` ago.
        case valid
        /// Minted here for this client, but too old, or stamped later than `now` (the clock went
        /// back): answer 438 with a fresh nonce.
        case stale
        /// Not minted here, or for another client address or port, or altered, or not a nonce.
        /// RFC 8489 §9.2.4 answers this with 438 too; the caller decides.
        case invalid
    }

    public func validate(_ nonce: String, for client: TransportAddress, nowUnixSeconds: UInt64) -> Validity {
        let utf8 = nonce.utf8
        guard utf8.count == Self.length else { return .invalid }
        let bytes = Array(utf8)
        guard bytes.starts(with: Self.cookie),
              let timestamp = Self.parseHex(bytes[Self.signedLength - 16 ..< Self.signedLength]) else { return .invalid }
        var received = [UInt8](repeating: 0, count: Self.tagBytes)
        for i in 0 ..< Self.tagBytes {
            let start = Self.signedLength + 2 * i
            guard let b = Self.parseHex(bytes[start ..< start + 2]) else { return .invalid }
            received[i] = UInt8(truncatingIfNeeded: b)
        }
        let expected = tag(signed: Array(bytes[0 ..< Self.signedLength]), client: client)
        guard Self.constantTimeEqual(expected, received) else { return .invalid }
        guard timestamp <= nowUnixSeconds, nowUnixSeconds - timestamp < lifetimeSeconds else { return .stale }
        return .valid
    }

    /// Whether a nonce's Security Feature Set has the "Password algorithms" bit (RFC 8489 §9.2):
    /// when it does, the request must carry PASSWORD-ALGORITHMS and PASSWORD-ALGORITHM
    /// (RFC 8489 §9.2.4). Reads only the feature characters; validate the nonce first.
    public static func hasPasswordAlgorithmsBit(_ nonce: String) -> Bool {
        // The fourth base64 character carries the six least significant bits; bit 0 is its lowest.
        let features = nonce.utf8.dropFirst(cookie.count).prefix(4)
        guard nonce.utf8.starts(with: cookie), features.count == 4, let last = features.last,
              let v = base64Value(last) else { return false }
        return v & 0x01 != 0
    }

    // MARK: - Private

    private func tag(signed: [UInt8], client: TransportAddress) -> [UInt8] {
        var data = signed
        data.append(client.family.rawValue)
        data.append(UInt8(truncatingIfNeeded: client.port >> 8))
        data.append(UInt8(truncatingIfNeeded: client.port))
        switch client.ip {
        case .v4(let a):
            for shift in stride(from: 24, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: a.value >> UInt32(shift))) }
        case .v6(let a):
            for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: a.high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { data.append(UInt8(truncatingIfNeeded: a.low >> UInt64(shift))) }
        }
        let mac = HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: key))
        return Array(Array(mac).prefix(Self.tagBytes))
    }

    private static func appendHex(_ value: UInt64, digits: Int, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        for i in stride(from: digits - 1, through: 0, by: -1) {
            out.append(hex[Int(value >> UInt64(4 * i) & 0xF)])
        }
    }

    /// Lower-case hex digits only (the form `mint` writes), at most 16 of them.
    private static func parseHex(_ digits: ArraySlice<UInt8>) -> UInt64? {
        guard digits.count <= 16 else { return nil }
        var v: UInt64 = 0
        for d in digits {
            let n: UInt8
            switch d {
            case UInt8(ascii: "0") ... UInt8(ascii: "9"): n = d - UInt8(ascii: "0")
            case UInt8(ascii: "a") ... UInt8(ascii: "f"): n = d - UInt8(ascii: "a") + 10
            default: return nil
            }
            v = v << 4 | UInt64(n)
        }
        return v
    }

    private static func base64Value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A") ... UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
        case UInt8(ascii: "a") ... UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }

    /// Compares every byte whatever the first difference, so timing does not reveal how much of
    /// a forged tag was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0 ..< a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
