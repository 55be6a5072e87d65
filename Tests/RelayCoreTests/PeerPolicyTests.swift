import Testing
import STUN
@testable import RelayCore

// MARK: - Helpers

private func ip(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> IPAddress {
    guard let a = IPAddress(text) else {
        Issue.record("test address does not parse: \(text)", sourceLocation: sourceLocation)
        return .v4(IPv4Address(0))
    }
    return a
}

private func cidr(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> CIDR {
    guard let c = CIDR(text) else {
        Issue.record("test CIDR does not parse: \(text)", sourceLocation: sourceLocation)
        return CIDR(address: .v4(IPv4Address(0)), prefixLength: 32)
    }
    return c
}

private let defaultPolicy = PeerPolicy()

// MARK: - Default ranges: first and last address inside, one address outside each boundary

/// One default-denied range with its boundary addresses. `below`/`above` are the addresses just
/// outside the range; nil where that neighbour lies in another default range or does not exist.
private struct RangeCase: CustomTestStringConvertible, Sendable {
    var range: String
    var first: String
    var last: String
    var below: String?
    var above: String?
    var testDescription: String { range }
}

private let defaultRangeCases: [RangeCase] = [
    .init(range: "0.0.0.0/8", first: "0.0.0.0", last: "0.255.255.255", below: nil, above: "1.0.0.0"),
    .init(range: "127.0.0.0/8", first: "127.0.0.0", last: "127.255.255.255", below: "126.255.255.255", above: "128.0.0.0"),
    .init(range: "10.0.0.0/8", first: "10.0.0.0", last: "10.255.255.255", below: "9.255.255.255", above: "11.0.0.0"),
    .init(range: "100.64.0.0/10", first: "100.64.0.0", last: "100.127.255.255", below: "100.63.255.255", above: "100.128.0.0"),
    .init(range: "169.254.0.0/16", first: "169.254.0.0", last: "169.254.255.255", below: "169.253.255.255", above: "169.255.0.0"),
    .init(range: "172.16.0.0/12", first: "172.16.0.0", last: "172.31.255.255", below: "172.15.255.255", above: "172.32.0.0"),
    .init(range: "192.0.0.0/24", first: "192.0.0.0", last: "192.0.0.255", below: "191.255.255.255", above: "192.0.1.0"),
    .init(range: "192.0.2.0/24", first: "192.0.2.0", last: "192.0.2.255", below: "192.0.1.255", above: "192.0.3.0"),
    .init(range: "192.88.99.0/24", first: "192.88.99.0", last: "192.88.99.255", below: "192.88.98.255", above: "192.88.100.0"),
    .init(range: "192.168.0.0/16", first: "192.168.0.0", last: "192.168.255.255", below: "192.167.255.255", above: "192.169.0.0"),
    .init(range: "198.18.0.0/15", first: "198.18.0.0", last: "198.19.255.255", below: "198.17.255.255", above: "198.20.0.0"),
    .init(range: "198.51.100.0/24", first: "198.51.100.0", last: "198.51.100.255", below: "198.51.99.255", above: "198.51.101.0"),
    .init(range: "203.0.113.0/24", first: "203.0.113.0", last: "203.0.113.255", below: "203.0.112.255", above: "203.0.114.0"),
    // above 224/4 is 240.0.0.0, itself denied.
    .init(range: "224.0.0.0/4", first: "224.0.0.0", last: "239.255.255.255", below: "223.255.255.255", above: nil),
    .init(range: "240.0.0.0/4", first: "240.0.0.0", last: "255.255.255.255", below: nil, above: nil),
    // The neighbours of :: and ::1 are IPv4-compatible forms of 0.0.0.x: denied as 0.0.0.0/8.
    .init(range: "::/128", first: "::", last: "::", below: nil, above: nil),
    .init(range: "::1/128", first: "::1", last: "::1", below: nil, above: nil),
    .init(range: "fc00::/7", first: "fc00::", last: "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
          below: "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", above: "fe00::"),
    // above fe80::/10 is fec0::, site-local, denied.
    .init(range: "fe80::/10", first: "fe80::", last: "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
          below: "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", above: nil),
    // above fec0::/10 is ff00::, multicast, denied.
    .init(range: "fec0::/10", first: "fec0::", last: "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", below: nil, above: nil),
    .init(range: "ff00::/8", first: "ff00::", last: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", below: nil, above: nil),
    .init(range: "100::/64", first: "100::", last: "100::ffff:ffff:ffff:ffff",
          below: "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", above: "100:0:0:1::"),
    .init(range: "2001:db8::/32", first: "2001:db8::", last: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
          below: "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", above: "2001:db9::"),
    .init(range: "2001::/32", first: "2001::", last: "2001:0:ffff:ffff:ffff:ffff:ffff:ffff",
          below: "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", above: "2001:1::"),
    .init(range: "2001:2::/48", first: "2001:2::", last: "2001:2:0:ffff:ffff:ffff:ffff:ffff",
          below: "2001:1:ffff:ffff:ffff:ffff:ffff:ffff", above: "2001:2:1::"),
    .init(range: "3fff::/20", first: "3fff::", last: "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
          below: "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", above: "3fff:1000::"),
    .init(range: "64:ff9b:1::/48", first: "64:ff9b:1::", last: "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
          below: "64:ff9b:0:ffff:ffff:ffff:ffff:ffff", above: "64:ff9b:2::"),
]

@Test func defaultDeniedListIsExactlyTheDocumentedRanges() {
    #expect(Set(PeerPolicy.defaultDenied.map(\.description)) == Set(defaultRangeCases.map(\.range)))
    #expect(PeerPolicy.defaultDenied.count == defaultRangeCases.count)
}

@Test(arguments: defaultRangeCases)
private func defaultRangeBoundaries(_ c: RangeCase) {
    #expect(defaultPolicy.evaluate(ip(c.first)) == .denied, "first address of \(c.range)")
    #expect(defaultPolicy.evaluate(ip(c.last)) == .denied, "last address of \(c.range)")
    #expect(cidr(c.range).contains(ip(c.first)))
    #expect(cidr(c.range).contains(ip(c.last)))
    if let below = c.below {
        #expect(defaultPolicy.evaluate(ip(below)) == .allowed, "\(below) below \(c.range)")
        #expect(!cidr(c.range).contains(ip(below)))
    }
    if let above = c.above {
        #expect(defaultPolicy.evaluate(ip(above)) == .allowed, "\(above) above \(c.range)")
        #expect(!cidr(c.range).contains(ip(above)))
    }
}

@Test func publicAddressesAreAllowedByDefault() {
    for a in ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2a00:1450:4001:82b::200e", "2606:4700:4700::1111"] {
        #expect(defaultPolicy.evaluate(ip(a)) == .allowed, "\(a)")
    }
}

// MARK: - coturn CVEs about peer addresses (hardening notes §4.1)

/// CVE-2018-4058: coturn relayed to loopback by default.
@Test func cve_2018_4058_loopbackDeniedByDefault() {
    #expect(defaultPolicy.evaluate(ip("127.0.0.1")) == .denied)
    #expect(defaultPolicy.evaluate(ip("127.0.0.53")) == .denied)
    #expect(defaultPolicy.evaluate(ip("127.255.255.254")) == .denied)
}

/// CVE-2020-26262: XOR-PEER-ADDRESS 0.0.0.0, [::1] and [::] bypassed the loopback deny.
@Test func cve_2020_26262_unspecifiedAndIPv6LoopbackDenied() {
    #expect(defaultPolicy.evaluate(ip("0.0.0.0")) == .denied)
    #expect(defaultPolicy.evaluate(ip("::1")) == .denied)
    #expect(defaultPolicy.evaluate(ip("::")) == .denied)
    #expect(defaultPolicy.evaluate(ip("0.1.2.3")) == .denied)
}

/// CVE-2026-27624: `::ffff:127.0.0.1` bypassed an explicit denied-peer-ip rule.
/// A public IPv4 range is used so that only the operator's deny rule can refuse it.
@Test func cve_2026_27624_mappedAddressHitsExplicitDeny() {
    let policy = PeerPolicy(deny: [cidr("8.8.8.0/24")])
    #expect(policy.evaluate(ip("8.8.8.8")) == .denied)
    #expect(policy.evaluate(ip("::ffff:8.8.8.8")) == .denied)
    #expect(policy.evaluate(ip("::ffff:808:808")) == .denied)
    #expect(policy.evaluate(ip("8.8.9.8")) == .allowed)
    #expect(policy.evaluate(ip("::ffff:8.8.9.8")) == .allowed)

    // The CVE's own shape: loopback opened by the operator, one loopback address denied again.
    let loopbackPolicy = PeerPolicy(allow: [cidr("127.0.0.0/8")], deny: [cidr("127.0.0.1")])
    #expect(loopbackPolicy.evaluate(ip("::ffff:127.0.0.1")) == .denied)
    #expect(loopbackPolicy.evaluate(ip("::ffff:127.0.0.2")) == .allowed)
}

/// CVE-2026-53450: `::ffff:127.0.0.1` bypassed the *default* loopback guard.
@Test func cve_2026_53450_mappedLoopbackDeniedByDefault() {
    #expect(defaultPolicy.evaluate(ip("::ffff:127.0.0.1")) == .denied)
    #expect(defaultPolicy.evaluate(ip("::ffff:7f00:1")) == .denied)
    #expect(defaultPolicy.evaluate(ip("::ffff:0.0.0.0")) == .denied)
    #expect(defaultPolicy.evaluate(ip("::ffff:169.254.169.254")) == .denied)
    // SIIT IPv4-translated form ::ffff:0:a.b.c.d (RFC 2765).
    #expect(defaultPolicy.evaluate(ip("::ffff:0:127.0.0.1")) == .denied)
    #expect(defaultPolicy.evaluate(ip("::ffff:8.8.8.8")) == .allowed)
}

/// CVE-2026-73212: 6to4, NAT64 and IPv4-compatible forms were not normalized.
@Test func cve_2026_73212_allEmbeddedIPv4FormsAreJudgedAsIPv4() {
    let denied = ["2002:7f00:0001::", "2002:7f00:1:abcd:1:2:3:4", "64:ff9b::7f00:1", "64:ff9b::127.0.0.1",
                  "64:ff9b:1::7f00:1", "::127.0.0.1", "::a9fe:a9fe", "2002:a9fe:a9fe::1", "64:ff9b::a00:1"]
    for a in denied {
        #expect(defaultPolicy.evaluate(ip(a)) == .denied, "\(a)")
    }
    #expect(PeerPolicy.canonicalize(ip("2002:7f00:0001::")) == ip("127.0.0.1"))
    #expect(PeerPolicy.canonicalize(ip("64:ff9b::7f00:1")) == ip("127.0.0.1"))
    #expect(PeerPolicy.canonicalize(ip("::127.0.0.1")) == ip("127.0.0.1"))
    #expect(PeerPolicy.canonicalize(ip("::a9fe:a9fe")) == ip("169.254.169.254"))

    // The same forms of a public address are allowed by default and hit an explicit IPv4 deny.
    let publicForms = ["2002:808:808::", "64:ff9b::808:808", "::8.8.8.8", "::ffff:8.8.8.8"]
    let policy = PeerPolicy(deny: [cidr("8.8.8.8")])
    for a in publicForms {
        #expect(defaultPolicy.evaluate(ip(a)) == .allowed, "\(a)")
        #expect(policy.evaluate(ip(a)) == .denied, "\(a)")
        #expect(PeerPolicy.canonicalize(ip(a)) == ip("8.8.8.8"), "\(a)")
    }
}

/// CVE-2026-73213: IPv6 ranges compared byte-wise let a non-octet-aligned deny range be bypassed.
@Test func cve_2026_73213_nonOctetAlignedRangesMatchNumerically() {
    // 2001:db8::/32 is default-denied, so the operator opens it and denies its upper half.
    let policy = PeerPolicy(allow: [cidr("2001:db8::/32")], deny: [cidr("2001:db8:8000::/33")])
    #expect(policy.evaluate(ip("2001:db8:8000::")) == .denied)
    #expect(policy.evaluate(ip("2001:db8:8000::1")) == .denied)
    #expect(policy.evaluate(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")) == .denied)
    #expect(policy.evaluate(ip("2001:db8:7fff:ffff:ffff:ffff:ffff:ffff")) == .allowed)
    #expect(policy.evaluate(ip("2001:db8::")) == .allowed)

    // Public space, bits cut inside a byte and inside the low half.
    let r = cidr("2a00:1450:4000::/37")
    #expect(r.contains(ip("2a00:1450:4000::")))
    #expect(r.contains(ip("2a00:1450:47ff:ffff:ffff:ffff:ffff:ffff")))
    #expect(!r.contains(ip("2a00:1450:4800::")))
    #expect(!r.contains(ip("2a00:1450:3fff:ffff:ffff:ffff:ffff:ffff")))
    let low = cidr("2a00:1450::8000:0/97")
    #expect(low.contains(ip("2a00:1450::8000:0")))
    #expect(low.contains(ip("2a00:1450::ffff:ffff")))
    #expect(!low.contains(ip("2a00:1450::7fff:ffff")))
    #expect(!low.contains(ip("2a00:1450::1:8000:0")))
    let v4 = PeerPolicy(deny: [cidr("8.8.8.128/25")])
    #expect(v4.evaluate(ip("8.8.8.128")) == .denied)
    #expect(v4.evaluate(ip("8.8.8.255")) == .denied)
    #expect(v4.evaluate(ip("8.8.8.127")) == .allowed)
}

/// Cloud metadata service (Slack SSRF report, coturn commit d49ee56a).
@Test func metadataServiceDenied() {
    #expect(defaultPolicy.evaluate(ip("169.254.169.254")) == .denied)
    #expect(defaultPolicy.evaluate(ip("fd00:ec2::254")) == .denied)
}

/// ULA-hosted services reachable over native IPv6 (coturn commit d49ee56a).
@Test func uniqueLocalDenied() {
    #expect(defaultPolicy.evaluate(ip("fd00::1")) == .denied)
    #expect(defaultPolicy.evaluate(ip("fc00::1")) == .denied)
}

@Test func teredoDeniedAsAWholeNotDecoded() {
    // Teredo for client 192.0.2.45 behind server 65.54.227.120 (RFC 4380 §4 example shape).
    let teredo = ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")
    #expect(PeerPolicy.canonicalize(teredo) == teredo)
    #expect(defaultPolicy.evaluate(teredo) == .denied)
    #expect(PeerPolicy(allow: [cidr("2001::/32")]).evaluate(teredo) == .allowed)
}

// MARK: - Operator allow and deny

@Test func operatorDenyBeatsOperatorAllow() {
    let policy = PeerPolicy(allow: [cidr("10.0.0.0/8")], deny: [cidr("10.0.5.0/24")])
    #expect(policy.evaluate(ip("10.0.4.255")) == .allowed)
    #expect(policy.evaluate(ip("10.0.5.1")) == .denied)
    #expect(policy.evaluate(ip("10.0.6.0")) == .allowed)
    #expect(policy.evaluate(ip("192.168.1.1")) == .denied, "other default ranges stay denied")
    // The same address in both lists: deny wins.
    let both = PeerPolicy(allow: [cidr("8.8.8.8")], deny: [cidr("8.8.8.8")])
    #expect(both.evaluate(ip("8.8.8.8")) == .denied)
}

@Test func operatorOpensLoopbackForTests() {
    let policy = PeerPolicy(allow: [cidr("127.0.0.0/8")])
    #expect(policy.evaluate(ip("127.0.0.1")) == .allowed)
    #expect(policy.evaluate(ip("::ffff:127.0.0.1")) == .allowed, "judged as its IPv4 address")
    #expect(policy.evaluate(ip("::1")) == .denied, "IPv6 loopback needs its own allow entry")
    #expect(PeerPolicy(allow: [cidr("::1")]).evaluate(ip("::1")) == .allowed)
    #expect(policy.evaluate(ip("10.0.0.1")) == .denied)
}

@Test func operatorDenyOfPublicRange() {
    let policy = PeerPolicy(deny: [cidr("93.184.216.0/24"), cidr("2606:2800::/32")])
    #expect(policy.evaluate(ip("93.184.216.34")) == .denied)
    #expect(policy.evaluate(ip("2606:2800:220:1::1")) == .denied)
    #expect(policy.evaluate(ip("93.184.217.34")) == .allowed)
}

@Test func allowOfAnIPv6EncodingDoesNotReopenEmbeddedIPv4() {
    // Allow is matched against the canonical (IPv4) address only.
    let policy = PeerPolicy(allow: [cidr("2002::/16"), cidr("::ffff:0:0/96"), cidr("64:ff9b::/96")])
    #expect(policy.evaluate(ip("2002:7f00:1::")) == .denied)
    #expect(policy.evaluate(ip("::ffff:10.0.0.1")) == .denied)
    #expect(policy.evaluate(ip("64:ff9b::a9fe:a9fe")) == .denied)
}

@Test func denyOfAnIPv6EncodingBlocksIt() {
    // Deny is matched against the address as received too: an operator can close 6to4 entirely.
    let policy = PeerPolicy(deny: [cidr("2002::/16"), cidr("64:ff9b::/96")])
    #expect(policy.evaluate(ip("2002:808:808::")) == .denied)
    #expect(policy.evaluate(ip("64:ff9b::808:808")) == .denied)
    #expect(policy.evaluate(ip("8.8.8.8")) == .allowed)
}

// MARK: - The relay's own addresses

@Test func relayOwnAddressesAreRelaySelf() {
    let policy = PeerPolicy(relayAddresses: [ip("85.10.20.30"), ip("2a01:4f8::1")])
    #expect(policy.evaluate(ip("85.10.20.30")) == .relaySelf)
    #expect(policy.evaluate(ip("2a01:4f8::1")) == .relaySelf)
    #expect(policy.evaluate(ip("::ffff:85.10.20.30")) == .relaySelf, "mapped form")
    #expect(policy.evaluate(ip("2002:550a:141e::")) == .relaySelf, "6to4 form")
    #expect(policy.evaluate(ip("64:ff9b::550a:141e")) == .relaySelf, "NAT64 form")
    #expect(policy.evaluate(ip("85.10.20.31")) == .allowed)
    #expect(policy.evaluate(ip("2a01:4f8::2")) == .allowed)
}

@Test func relayOnPrivateAddressStillReachesItself() {
    // Relay address given in mapped form; private ranges otherwise stay denied.
    let policy = PeerPolicy(relayAddresses: [ip("::ffff:10.0.0.5")])
    #expect(policy.evaluate(ip("10.0.0.5")) == .relaySelf)
    #expect(policy.evaluate(ip("10.0.0.6")) == .denied)
    // Relay self is decided before operator deny (the server limits it to the relay port range).
    let denied = PeerPolicy(deny: [cidr("10.0.0.0/8")], relayAddresses: [ip("10.0.0.5")])
    #expect(denied.evaluate(ip("10.0.0.5")) == .relaySelf)
}

@Test func operatorAllowOpensTheRelaysOwnAddressOnEveryPort() {
    // A relay serving on ::1 (the only IPv6 loopback address) with ::1/128 allowed: a peer on ::1
    // is the relay's own address, and the operator opened it explicitly.
    let policy = PeerPolicy(allow: [cidr("::1/128"), cidr("127.0.0.0/8")], relayAddresses: [ip("::1"), ip("127.0.0.1")])
    #expect(policy.evaluate(ip("::1")) == .allowed)
    #expect(policy.evaluate(ip("127.0.0.1")) == .allowed)
    #expect(policy.evaluate(ip("::ffff:127.0.0.1")) == .allowed, "judged as its IPv4 address")
    // Without the allow, the relay's own address is relay-self (relay ports only).
    #expect(PeerPolicy(relayAddresses: [ip("::1")]).evaluate(ip("::1")) == .relaySelf)
    // An allow of another range does not open the relay's address.
    #expect(PeerPolicy(allow: [cidr("10.0.0.0/8")], relayAddresses: [ip("10.0.0.5")]).evaluate(ip("10.0.0.5")) == .allowed)
    #expect(PeerPolicy(allow: [cidr("10.1.0.0/16")], relayAddresses: [ip("10.0.0.5")]).evaluate(ip("10.0.0.5")) == .relaySelf)
    // Operator deny still comes first: allowed and denied together leaves only relay-self.
    let both = PeerPolicy(allow: [cidr("::1/128")], deny: [cidr("::1/128")], relayAddresses: [ip("::1")])
    #expect(both.evaluate(ip("::1")) == .relaySelf)
}

// MARK: - canonicalize edge cases

@Test func canonicalizeLeavesOrdinaryAddressesAlone() {
    for a in ["::", "::1", "8.8.8.8", "2a00:1450::1", "::1:0:0:0", "64:ff9b::1:0:0:1", "::fffe:7f00:1"] {
        #expect(PeerPolicy.canonicalize(ip(a)) == ip(a), "\(a)")
    }
    #expect(PeerPolicy.canonicalize(ip("::2")) == ip("0.0.0.2"))
    #expect(PeerPolicy.canonicalize(ip("2002:ffff:ffff::")) == ip("255.255.255.255"))
}

// MARK: - CIDR text

@Test func cidrParsesAndPrintsValidText() {
    #expect(cidr("10.0.0.0/8").description == "10.0.0.0/8")
    #expect(cidr("fc00::/7").description == "fc00::/7")
    #expect(cidr("192.0.2.1").description == "192.0.2.1/32")
    #expect(cidr("::1").description == "::1/128")
    #expect(cidr("0.0.0.0/0").description == "0.0.0.0/0")
    #expect(cidr("::/0").description == "::/0")
    #expect(cidr("10.0.0.0/32").prefixLength == 32)
    #expect(cidr("::/128").prefixLength == 128)
    #expect(cidr("::ffff:1.2.3.4/96").description == "::ffff:0:0/96")
}

@Test func cidrMasksHostBits() {
    #expect(cidr("10.1.2.3/8") == cidr("10.0.0.0/8"))
    #expect(cidr("10.1.2.3/8").description == "10.0.0.0/8")
    #expect(cidr("2001:db8:ffff::1/33").description == "2001:db8:8000::/33")
    #expect(CIDR(address: ip("192.168.7.9"), prefixLength: 16).network == ip("192.168.0.0"))
}

@Test func cidrInitClampsPrefixLength() {
    #expect(CIDR(address: ip("10.0.0.1"), prefixLength: 40).prefixLength == 32)
    #expect(CIDR(address: ip("10.0.0.1"), prefixLength: -3).prefixLength == 0)
    #expect(CIDR(address: ip("::1"), prefixLength: 200).prefixLength == 128)
}

@Test(arguments: [
    "", "/", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0 /8",
    "10.0.0.0/ 8", " 10.0.0.0/8", "10.0.0.0/0008", "10.0.0/8", "256.0.0.0/8", "10.0.0.0/8a", "10.0.0.0/0x8",
    "::/129", "::/1000", "fe80::1%eth0", "fe80::1%eth0/64", "[::1]/128", "garbage", "a.b.c.d/8", "1:2:3/64",
    "10.0.0.0/٨", "10.0.0.0\u{0}/8",
])
func cidrRejectsMalformedText(_ text: String) {
    #expect(CIDR(text) == nil)
}

@Test func cidrRejectsHugeText() {
    #expect(CIDR(String(repeating: "1", count: 100_000)) == nil)
    #expect(CIDR("10.0.0.0/" + String(repeating: "8", count: 100_000)) == nil)
    #expect(CIDR(String(repeating: "::", count: 50_000)) == nil)
}

@Test func cidrNeverMatchesTheOtherFamily() {
    #expect(cidr("0.0.0.0/0").contains(ip("8.8.8.8")))
    #expect(!cidr("0.0.0.0/0").contains(ip("::ffff:8.8.8.8")))
    #expect(!cidr("0.0.0.0/0").contains(ip("::")))
    #expect(cidr("::/0").contains(ip("::ffff:8.8.8.8")))
    #expect(!cidr("::/0").contains(ip("8.8.8.8")))
    #expect(!cidr("::/96").contains(ip("0.0.0.1")))
}

@Test func cidrPrefixLengthsAtEveryBoundary() {
    // For each length, the network's last address is inside and the next address is outside.
    for p in 1...31 {
        let r = CIDR(address: .v4(IPv4Address(0x0A00_0000)), prefixLength: p)
        let size = UInt32(1) << UInt32(32 - p)
        let base: UInt32 = 0x0A00_0000 & ~(size &- 1)
        #expect(r.contains(.v4(IPv4Address(base))))
        #expect(r.contains(.v4(IPv4Address(base + size - 1))), "/\(p)")
        #expect(!r.contains(.v4(IPv4Address(base &+ size))), "/\(p)")
    }
    for p in 1...127 {
        let r = CIDR(address: .v6(IPv6Address(high: 0x2A00_0000_0000_0000, low: 0)), prefixLength: p)
        // The first address past the prefix: add 1 at bit position p.
        let next: IPv6Address = p <= 64
            ? IPv6Address(high: 0x2A00_0000_0000_0000 &+ (UInt64(1) << UInt64(64 - p)), low: 0)
            : IPv6Address(high: 0x2A00_0000_0000_0000, low: UInt64(1) << UInt64(128 - p))
        let lastInside: IPv6Address = p < 64
            ? IPv6Address(high: 0x2A00_0000_0000_0000 | ((UInt64(1) << UInt64(64 - p)) - 1), low: .max)
            : IPv6Address(high: 0x2A00_0000_0000_0000, low: p == 64 ? .max : (UInt64(1) << UInt64(128 - p)) - 1)
        #expect(r.contains(.v6(lastInside)), "/\(p)")
        #expect(!r.contains(.v6(next)), "/\(p)")
    }
}
