import Testing
import STUN
@testable import RelayCore

// Expected nonces computed independently with Python:
//   key = bytes(range(32)); feat = "AAAB" or "AAAA"; prefix = ("obMatJos2" + feat + "%08x" % (ts & 0xffffffff)).encode()
//   (compact: prefix = ("%08x" % (ts & 0xffffffff)).encode())
//   tag = hmac.new(key, prefix + bytes([family, port >> 8, port & 0xff]) + ip.packed, hashlib.sha256).digest()[:12].hex()

private let key: [UInt8] = Array(0 ..< 32)
private let now: UInt64 = 1_700_000_000
private let client = TransportAddress(ip: .v4(IPv4Address(192, 0, 2, 1)), port: 54321)
private let clientV6 = TransportAddress(ip: .v6(IPv6Address(high: 0x2001_0DB8_0000_0000, low: 1)), port: 3478)
private let authority = NonceAuthority(key: key)

@Test func nonceMatchesIndependentVector() {
    #expect(authority.mint(for: client, nowUnixSeconds: now) == "obMatJos2AAAB6553f1003fe3ee8a5f7a379d2245aaf4")
    #expect(authority.mint(for: clientV6, nowUnixSeconds: now) == "obMatJos2AAAB6553f100cc312a0c11f1b2c4ae4fb62b")
    let plain = NonceAuthority(key: key, advertisePasswordAlgorithms: false)
    #expect(plain.mint(for: client, nowUnixSeconds: now) == "obMatJos2AAAA6553f100fa02b53a940bc2ea10e13678")
    #expect(authority.mintCompact(for: client, nowUnixSeconds: now) == "6553f10001eb331b2ed1b6db2ab3fdfb")
}

@Test func nonceStartsWithCookieAndIsShortPrintableASCII() {
    for a in [authority, NonceAuthority(key: key, advertisePasswordAlgorithms: false)] {
        let n = a.mint(for: clientV6, nowUnixSeconds: UInt64.max)
        #expect(n.hasPrefix("obMatJos2"))
        #expect(n.utf8.count < 128)
        #expect(n.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E })
    }
}

@Test func securityFeatureBits() {
    let plain = NonceAuthority(key: key, advertisePasswordAlgorithms: false)
    #expect(authority.advertisesPasswordAlgorithms)
    #expect(!plain.advertisesPasswordAlgorithms)
    #expect(authority.mint(for: client, nowUnixSeconds: now).hasPrefix("obMatJos2AAAB"))
    #expect(plain.mint(for: client, nowUnixSeconds: now).hasPrefix("obMatJos2AAAA"))
    #expect(NonceAuthority.hasPasswordAlgorithmsBit(authority.mint(for: client, nowUnixSeconds: now)))
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit(plain.mint(for: client, nowUnixSeconds: now)))
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit(""))
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit("AAAB"))
    #expect(NonceAuthority.hasPasswordAlgorithmsBit("obMatJos2AAAD"), "both feature bits")
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit("obMatJos2AAAC"), "username anonymity only (RFC 8489 B.1)")
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit("obMatJos2gAAA"), "bit 23, not bit 0 (erratum 6290)")
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit("obMatJos2AAA"))
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit("obMatJos2"))
    #expect(!NonceAuthority.hasPasswordAlgorithmsBit("obMatJos2!AAA"))
}

@Test func nonceIsValidWithinItsLifetime() {
    let n = authority.mint(for: client, nowUnixSeconds: now)
    #expect(authority.validate(n, for: client, nowUnixSeconds: now) == .valid)
    #expect(authority.validate(n, for: client, nowUnixSeconds: now + 599) == .valid)
    let v6 = authority.mint(for: clientV6, nowUnixSeconds: now)
    #expect(authority.validate(v6, for: clientV6, nowUnixSeconds: now + 1) == .valid)
}

@Test func nonceIsStaleAfterItsLifetime() {
    let n = authority.mint(for: client, nowUnixSeconds: now)
    #expect(authority.validate(n, for: client, nowUnixSeconds: now + 600) == .stale)
    #expect(authority.validate(n, for: client, nowUnixSeconds: UInt64.max) == .stale)
    let short = NonceAuthority(key: key, lifetimeSeconds: 30)
    let s = short.mint(for: client, nowUnixSeconds: now)
    #expect(short.validate(s, for: client, nowUnixSeconds: now + 29) == .valid)
    #expect(short.validate(s, for: client, nowUnixSeconds: now + 30) == .stale)
}

@Test func nonceFromTheFutureIsStale() {
    // Authentic, but stamped after `now`: the clock went back. A fresh nonce fixes it.
    let n = authority.mint(for: client, nowUnixSeconds: now + 10)
    #expect(authority.validate(n, for: client, nowUnixSeconds: now) == .stale)
}

@Test func nonceIsInvalidForAnotherClient() {
    let n = authority.mint(for: client, nowUnixSeconds: now)
    let otherPort = TransportAddress(ip: client.ip, port: 54322)
    let otherIP = TransportAddress(ip: .v4(IPv4Address(192, 0, 2, 2)), port: 54321)
    let mapped = TransportAddress(ip: .v6(IPv6Address(high: 0, low: 0xFFFF_C000_0201)), port: 54321)
    #expect(authority.validate(n, for: otherPort, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(n, for: otherIP, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(n, for: mapped, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(n, for: clientV6, nowUnixSeconds: now) == .invalid)
}

@Test func nonceFromAnotherKeyIsInvalid() {
    let other = NonceAuthority(key: Array(repeating: 7, count: 32))
    #expect(authority.validate(other.mint(for: client, nowUnixSeconds: now), for: client, nowUnixSeconds: now) == .invalid)
}

@Test func everySingleCharacterTamperIsInvalid() {
    let n = Array(authority.mint(for: client, nowUnixSeconds: now).utf8)
    for i in n.indices {
        var t = n
        // Replace with another character of the same kind so parsing alone cannot catch it.
        switch t[i] {
        case UInt8(ascii: "0") ..< UInt8(ascii: "9"), UInt8(ascii: "a") ..< UInt8(ascii: "f"): t[i] += 1
        case UInt8(ascii: "9"): t[i] = UInt8(ascii: "a")
        case UInt8(ascii: "f"): t[i] = UInt8(ascii: "0")
        case UInt8(ascii: "A"): t[i] = UInt8(ascii: "B")
        default: t[i] = UInt8(ascii: "A")
        }
        #expect(authority.validate(String(decoding: t, as: UTF8.self), for: client, nowUnixSeconds: now) == .invalid, "position \(i)")
    }
}

@Test func featureBitForgeryIsInvalid() {
    // Turning the password-algorithms bit off (a bid-down attempt) breaks the tag.
    let n = authority.mint(for: client, nowUnixSeconds: now)
    let forged = "obMatJos2AAAA" + n.dropFirst(13)
    #expect(authority.validate(forged, for: client, nowUnixSeconds: now) == .invalid)
}

@Test func upperCaseHexIsInvalid() {
    let n = authority.mint(for: client, nowUnixSeconds: now)
    #expect(authority.validate(String(n.prefix(13)) + n.dropFirst(13).uppercased(), for: client, nowUnixSeconds: now) == .invalid)
}

@Test(arguments: [
    "", "obMatJos2", "obMatJos2AAAB", "garbage", String(repeating: "\u{0}", count: 61),
    "xbMatJos2AAAB000000006553f100e64dd7d82090f21e5436411ad17b3e86", "obMatJos2AAABzzzzzzzzzzzzzzzze64dd7d82090f21e5436411ad17b3e86",
    "obMatJos2AAAB000000006553f100é4dd7d82090f21e5436411ad17b3e8", "obMatJos2AAAB-00000006553f100e64dd7d82090f21e5436411ad17b3e86",
    "obMatJos2AAAB+00000006553f100e64dd7d82090f21e5436411ad17b3e86", "obMatJos2AAAB 00000006553f100e64dd7d82090f21e5436411ad17b3e86",
])
func garbageNoncesAreInvalid(_ nonce: String) {
    #expect(authority.validate(nonce, for: client, nowUnixSeconds: now) == .invalid)
}

@Test func truncatedOrExtendedNonceIsInvalid() {
    let n = authority.mint(for: client, nowUnixSeconds: now)
    #expect(authority.validate(String(n.dropLast()), for: client, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(n + "0", for: client, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(n + " ", for: client, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(" " + n, for: client, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(String(n.dropLast()) + "é", for: client, nowUnixSeconds: now) == .invalid)
}

@Test func hugeNonceIsInvalidWithoutTrapping() {
    let n = authority.mint(for: client, nowUnixSeconds: now)
    #expect(authority.validate(n + String(repeating: "A", count: 1_000_000), for: client, nowUnixSeconds: now) == .invalid)
    #expect(authority.validate(String(repeating: "\u{1F600}", count: 100_000), for: client, nowUnixSeconds: now) == .invalid)
}

@Test func mintingIsDeterministic() {
    #expect(authority.mint(for: client, nowUnixSeconds: now) == NonceAuthority(key: key).mint(for: client, nowUnixSeconds: now))
    #expect(authority.mint(for: client, nowUnixSeconds: now) != authority.mint(for: client, nowUnixSeconds: now + 1))
}
