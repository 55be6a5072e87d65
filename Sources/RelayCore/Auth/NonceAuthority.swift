import Crypto
import STUN

/// Stateless nonces (hardening notes §4.2 item 3): nothing is stored per client, so a flood of
/// requests from spoofed sources creates no state. A nonce proves that this process minted it
/// for this client transport address at a given time.
///
/// Two forms, printable ASCII (RFC 8489 §14.10: "MUST be fewer than 128 characters"):
///
///     obMatJos2 FFFF TTTTTTTT MMMMMMMMMMMMMMMMMMMMMMMM     45 characters (with the nonce cookie)
///                    TTTTTTTT MMMMMMMMMMMMMMMMMMMMMMMM     32 characters (compact)
///     cookie    feat time     HMAC-SHA256 tag, first 12 bytes (hex)
///
/// - RFC 8489 §9.2: "the nonce value starts with the 'nonce cookie'": the nine characters
///   "obMatJos2" followed by "the Security Feature Set ... encoded as 4 characters by taking the
///   24-bit value and encoding it using base64". Bit 0 is "Password algorithms" (§18.1), and
///   per RFC errata 6290 bits are numbered from the least significant end, so the features read
///   "AAAB" when it is set and "AAAA" when not (the RFC's own B.1 example "AAAC" is bit 1,
///   username anonymity; libjuice tests `bits & 0x01`).
/// - The compact form has no cookie, so it offers no security features: RFC 8489 §9.2.4 then
///   processes the request "as though PASSWORD-ALGORITHM were MD5". It serves challenges that
///   must stay small (`Server.respond` keeps an unauthenticated answer within 3× its request, so
///   a spoofed source cannot use the relay as an amplifier).
/// - The time is the minting second's low 32 bits, 8 lower-case hex digits; validation restores
///   the high bits as those that put it nearest the validation time (a nonce is stale long before
///   that choice could be wrong).
/// - The tag is HMAC-SHA256(key, everything before the tag ‖ family ‖ port ‖ address bytes), so
///   the form, the feature bits and the time are authenticated together with the client
///   5-tuple's source (the server's side of the 5-tuple is fixed per socket). 96 bits bound to one
///   client address and a minutes-long lifetime cannot be guessed.
public struct NonceAuthority: Sendable {
    static let cookie: [UInt8] = Array("obMatJos2".utf8)
    private static let timeDigits = 8
    private static let tagDigits = 24
    /// The form with the nonce cookie.
    static let length = 9 + 4 + timeDigits + tagDigits
    /// The compact form.
    static let compactLength = timeDigits + tagDigits

    /// The key's HMAC-SHA256 states, padded once here rather than per nonce.
    private let key: HMACState<SHA256>
    public let lifetimeSeconds: UInt64
    public let advertisesPasswordAlgorithms: Bool

    /// - Parameters:
    ///   - key: a per-process random key of at least 16 bytes (configuration, not input: a shorter
    ///     key is a programming error and traps).
    ///   - lifetimeSeconds: a nonce is valid for ages 0 ..< lifetime; older ones are stale (438).
    public init(key: [UInt8], lifetimeSeconds: UInt64 = 600, advertisePasswordAlgorithms: Bool = true) {
        precondition(key.count >= 16, "NonceAuthority key must be at least 16 bytes")
        self.key = HMACState(key: key)
        self.lifetimeSeconds = lifetimeSeconds
        self.advertisesPasswordAlgorithms = advertisePasswordAlgorithms
    }

    /// A nonce with the cookie and this authority's security features.
    public func mint(for client: TransportAddress, nowUnixSeconds: UInt64) -> String {
        var text = Self.cookie
        text.reserveCapacity(Self.length)
        text += Array((advertisesPasswordAlgorithms ? "AAAB" : "AAAA").utf8)
        return finish(&text, client: client, nowUnixSeconds: nowUnixSeconds)
    }

    /// A compact nonce (no cookie, so no security features).
    public func mintCompact(for client: TransportAddress, nowUnixSeconds: UInt64) -> String {
        var text: [UInt8] = []
        text.reserveCapacity(Self.compactLength)
        return finish(&text, client: client, nowUnixSeconds: nowUnixSeconds)
    }

    private func finish(_ text: inout [UInt8], client: TransportAddress, nowUnixSeconds: UInt64) -> String {
        Self.appendHex(nowUnixSeconds & 0xFFFF_FFFF, digits: Self.timeDigits, to: &text)
        let tag = text.withUnsafeBytes { self.tag(signed: $0, client: client) }
        Self.appendHex(tag.high, digits: 16, to: &text)
        Self.appendHex(tag.low >> 32, digits: 8, to: &text)
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
        var nonce = nonce
        return nonce.withUTF8 { validate(UnsafeRawBufferPointer($0), for: client, nowUnixSeconds: nowUnixSeconds) }
    }

    /// `validate` over the nonce's UTF-8 bytes, without copying them.
    func validate(_ bytes: UnsafeRawBufferPointer, for client: TransportAddress, nowUnixSeconds: UInt64) -> Validity {
        guard let mintedAt = authenticate(bytes, for: client, nowUnixSeconds: nowUnixSeconds) else { return .invalid }
        return freshness(mintedAt: mintedAt, nowUnixSeconds: nowUnixSeconds)
    }

    /// The minting time of a nonce minted here for `client`, or nil when it was not (see
    /// `.invalid`). `nowUnixSeconds` restores the time's high bits.
    func authenticate(_ bytes: UnsafeRawBufferPointer, for client: TransportAddress, nowUnixSeconds: UInt64) -> UInt64? {
        let start: Int
        switch bytes.count {
        case Self.length:
            var cookieMatches = true
            for (i, c) in Self.cookie.enumerated() where bytes[i] != c { cookieMatches = false }
            guard cookieMatches else { return nil }
            start = Self.length - Self.compactLength
        case Self.compactLength:
            start = 0
        default:
            return nil
        }
        // Every index below is < bytes.count.
        guard let low = Self.parseHex(bytes, from: start, digits: Self.timeDigits),
              let receivedHigh = Self.parseHex(bytes, from: start + Self.timeDigits, digits: 16),
              let receivedLow = Self.parseHex(bytes, from: start + Self.timeDigits + 16, digits: 8) else { return nil }
        let expected = tag(signed: UnsafeRawBufferPointer(rebasing: bytes[0 ..< start + Self.timeDigits]), client: client)
        // Every bit compared whatever the first difference, so timing does not reveal how much of a
        // forged tag was right.
        guard (expected.high ^ receivedHigh) | ((expected.low >> 32) ^ receivedLow) == 0 else { return nil }
        return Self.expandTime(low, reference: nowUnixSeconds)
    }

    /// The Unix time whose low 32 bits are `low` and that lies nearest `reference`.
    static func expandTime(_ low: UInt64, reference: UInt64) -> UInt64 {
        let base = reference & ~0xFFFF_FFFF
        var best = base | low
        for candidate in [base &- 0x1_0000_0000, base &+ 0x1_0000_0000] {
            let c = candidate | low
            if distance(c, reference) < distance(best, reference) { best = c }
        }
        return best
    }

    private static func distance(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : b - a }

    /// `.valid` for a nonce minted at `mintedAt` that is less than `lifetimeSeconds` old, else `.stale`.
    func freshness(mintedAt: UInt64, nowUnixSeconds: UInt64) -> Validity {
        mintedAt <= nowUnixSeconds && nowUnixSeconds - mintedAt < lifetimeSeconds ? .valid : .stale
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

    /// The first 16 bytes of HMAC-SHA256(key, signed ‖ family ‖ port ‖ address bytes), big-endian,
    /// as two words. `signed` is everything before the nonce's tag.
    private func tag(signed: UnsafeRawBufferPointer, client: TransportAddress) -> (high: UInt64, low: UInt64) {
        // 21 + 1 + 2 + 16 bytes at most: one buffer on the stack, hashed in one update.
        var input: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
        let length = withUnsafeMutableBytes(of: &input) { b -> Int in
            let n = min(signed.count, Self.length - Self.tagDigits)
            b.copyMemory(from: UnsafeRawBufferPointer(rebasing: signed[0 ..< n]))
            b[n] = client.family.rawValue
            b.storeBytes(of: client.port.bigEndian, toByteOffset: n + 1, as: UInt16.self)
            switch client.ip {
            case .v4(let a):
                b.storeBytes(of: a.value.bigEndian, toByteOffset: n + 3, as: UInt32.self)
                return n + 3 + 4
            case .v6(let a):
                b.storeBytes(of: a.high.bigEndian, toByteOffset: n + 3, as: UInt64.self)
                b.storeBytes(of: a.low.bigEndian, toByteOffset: n + 11, as: UInt64.self)
                return n + 3 + 16
            }
        }
        let mac = withUnsafeBytes(of: &input) { key.authenticationCode(for: UnsafeRawBufferPointer(rebasing: $0[0 ..< length])) }
        return mac.withUnsafeBytes { d in
            (d.loadUnaligned(fromByteOffset: 0, as: UInt64.self).bigEndian,
             d.loadUnaligned(fromByteOffset: 8, as: UInt64.self).bigEndian)
        }
    }

    private static func appendHex(_ value: UInt64, digits: Int, to out: inout [UInt8]) {
        for i in stride(from: digits - 1, through: 0, by: -1) {
            let d = UInt8(truncatingIfNeeded: value >> UInt64(4 * i) & 0xF)
            out.append(d < 10 ? UInt8(ascii: "0") + d : UInt8(ascii: "a") + d - 10)
        }
    }

    /// The `digits` lower-case hex digits (the form `mint` writes) at `bytes[start ..< start + digits]`;
    /// the caller checked that they lie inside `bytes`.
    private static func parseHex(_ bytes: UnsafeRawBufferPointer, from start: Int, digits: Int = 16) -> UInt64? {
        var v: UInt64 = 0
        for i in start ..< start + digits {
            let d = bytes[i]
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
}
