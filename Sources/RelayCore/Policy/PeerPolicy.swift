import STUN

/// Which peers the relay may send to: the SSRF defence of a TURN server.
///
/// A TURN relay sends UDP from its own host to any address a client names in XOR-PEER-ADDRESS,
/// so without a policy every client can reach the relay's loopback services, its cloud
/// metadata endpoint (169.254.169.254) and the private networks around it. coturn's history
/// (hardening notes §4.1) shows each way this was bypassed; each is a test in
/// `PeerPolicyTests`. Egress firewalling or network-namespace isolation remains the primary
/// control; this list is defence in depth.
///
/// Decision order for `evaluate`:
/// 1. Canonicalize: an IPv6 address that embeds an IPv4 address is judged as that IPv4 address.
/// 2. One of the relay's own addresses → `.allowed` when an operator `allow` covers it and no
///    operator `deny` does (the operator opened that address explicitly, e.g. `::1/128` on a relay
///    serving on ::1, the only IPv6 loopback address); otherwise `.relaySelf` (the server allows
///    only its relay ports, so two clients of this relay reach each other even inside a denied
///    range).
/// 3. Operator `deny` → `.denied`. Deny beats allow, so an operator can open a range and carve a
///    hole back out of it (allow 10.0.0.0/8, deny 10.0.5.0/24). Deny is matched against both the
///    canonical address and the address as received, so `deny: ["2002::/16"]` blocks all 6to4.
/// 4. Operator `allow` → `.allowed`. Allow is matched against the canonical address only, so
///    allowing an IPv6 range never re-opens an IPv4 range embedded in it.
/// 5. `defaultDenied` → `.denied`.
/// 6. Otherwise `.allowed`.
///
/// Opening loopback for tests or a same-host peer: `PeerPolicy(allow: [CIDR("127.0.0.0/8")!])`
/// (and `CIDR("::1")!` for IPv6 loopback).
public struct PeerPolicy: Sendable {
    /// Ranges denied unless the operator allows them: the hardening notes §4.2 item 2, plus
    /// a few special-purpose IPv6 ranges from the IANA registry (marked "added").
    ///
    /// Teredo (2001::/32, RFC 4380) is denied as a whole rather than canonicalized: the IPv4
    /// address in it is the client's obfuscated NAT mapping reached through a third-party Teredo
    /// relay, not a destination this host routes to, and Teredo is obsolete. An operator who
    /// needs it can allow 2001::/32.
    public static let defaultDenied: [CIDR] = [
        // IPv4 (RFC 6890 special-purpose registry).
        v4(0, 0, 0, 0, 8),          // "this network", incl. 0.0.0.0 (CVE-2020-26262)
        v4(127, 0, 0, 0, 8),        // loopback (CVE-2018-4058)
        v4(10, 0, 0, 0, 8),         // private
        v4(100, 64, 0, 0, 10),      // shared address space (CGNAT)
        v4(169, 254, 0, 0, 16),     // link-local, incl. the 169.254.169.254 metadata service
        v4(172, 16, 0, 0, 12),      // private
        v4(192, 0, 0, 0, 24),       // IETF protocol assignments
        v4(192, 0, 2, 0, 24),       // documentation TEST-NET-1
        v4(192, 88, 99, 0, 24),     // 6to4 relay anycast (deprecated)
        v4(192, 168, 0, 0, 16),     // private
        v4(198, 18, 0, 0, 15),      // benchmarking
        v4(198, 51, 100, 0, 24),    // documentation TEST-NET-2
        v4(203, 0, 113, 0, 24),     // documentation TEST-NET-3
        v4(224, 0, 0, 0, 4),        // multicast
        v4(240, 0, 0, 0, 4),        // reserved, incl. 255.255.255.255 broadcast
        // IPv6.
        v6(0, 0, 128),                          // ::/128 unspecified (CVE-2020-26262)
        v6(0, 1, 128),                          // ::1/128 loopback (CVE-2020-26262)
        v6(0xFC00_0000_0000_0000, 0, 7),        // unique local (ULA)
        v6(0xFE80_0000_0000_0000, 0, 10),       // link-local
        v6(0xFEC0_0000_0000_0000, 0, 10),       // site-local (deprecated)
        v6(0xFF00_0000_0000_0000, 0, 8),        // multicast
        v6(0x0100_0000_0000_0000, 0, 64),       // discard-only
        v6(0x2001_0DB8_0000_0000, 0, 32),       // documentation
        v6(0x2001_0000_0000_0000, 0, 32),       // Teredo (see above)
        v6(0x2001_0002_0000_0000, 0, 48),       // added: benchmarking (RFC 5180)
        v6(0x3FFF_0000_0000_0000, 0, 20),       // added: documentation (RFC 9637)
        v6(0x0064_FF9B_0001_0000, 0, 48),       // added: local-use NAT64 (RFC 8215), see canonicalize
    ]

    public let allow: [CIDR]
    public let deny: [CIDR]
    public let relayAddresses: [IPAddress]

    private let allowSet: PrefixSet
    private let denySet: PrefixSet
    private let defaultSet: PrefixSet
    private let selfSet: PrefixSet

    public init(allow: [CIDR] = [], deny: [CIDR] = [], relayAddresses: [IPAddress] = []) {
        self.allow = allow
        self.deny = deny
        self.relayAddresses = relayAddresses
        allowSet = PrefixSet(allow)
        denySet = PrefixSet(deny)
        defaultSet = PrefixSet(Self.defaultDenied)
        selfSet = PrefixSet(addresses: relayAddresses.map(Self.canonicalize))
    }

    /// Decides whether the relay may send to `ip`. Runs per CreatePermission, ChannelBind and
    /// Send indication; allocation-free.
    public func evaluate(_ ip: IPAddress) -> PeerDecision {
        let canonical = Self.canonicalize(ip)
        let operatorDenied = denySet.contains(canonical) || (canonical != ip && denySet.contains(ip))
        if selfSet.contains(canonical) {
            return !operatorDenied && allowSet.contains(canonical) ? .allowed : .relaySelf
        }
        if operatorDenied { return .denied }
        if allowSet.contains(canonical) { return .allowed }
        if defaultSet.contains(canonical) { return .denied }
        return .allowed
    }

    /// Whether a datagram sent to `ip` stays on this host: one of `relayAddresses` (the relay's and
    /// the host's own addresses), any loopback address (127.0.0.0/8, ::1) or an unspecified one
    /// (0.0.0.0/8, ::, which Linux delivers locally), in any spelling `canonicalize` knows.
    public func reachesThisHost(_ ip: IPAddress) -> Bool {
        let canonical = Self.canonicalize(ip)
        return selfSet.contains(canonical) || Self.thisHost.contains(canonical)
    }

    private static let thisHost = PrefixSet([
        v4(127, 0, 0, 0, 8), v4(0, 0, 0, 0, 8), v6(0, 0, 128), v6(0, 1, 128),
    ])

    /// The IPv4 address embedded in an IPv6 address, or the address unchanged.
    ///
    /// coturn CVE-2026-27624, CVE-2026-53450 and CVE-2026-73212 each let `::ffff:127.0.0.1`,
    /// `2002:7f00:1::` or `64:ff9b::7f00:1` past an IPv4 deny rule. Recognized forms:
    /// - IPv4-mapped `::ffff:0:0/96` (RFC 4291 §2.5.5.2);
    /// - IPv4-translated `::ffff:0:0:0/96` (RFC 2765 §2.1, SIIT);
    /// - IPv4-compatible `::/96` except `::` and `::1` (RFC 4291 §2.5.5.1, deprecated);
    /// - NAT64 well-known prefix `64:ff9b::/96` (RFC 6052 §2.1) and the /96 layout inside the
    ///   local-use prefix, `64:ff9b:1::/96` (RFC 8215). Other layouts inside `64:ff9b:1::/48` are
    ///   operator-defined, so they are not decoded; `defaultDenied` denies them instead;
    /// - 6to4 `2002::/16`, IPv4 address in bits 16...47 (RFC 3056 §2).
    public static func canonicalize(_ ip: IPAddress) -> IPAddress {
        guard case .v6(let a) = ip else { return ip }
        let embedded = IPv4Address(UInt32(truncatingIfNeeded: a.low))
        let lowUpper = a.low >> 32
        if a.high == 0 {
            if lowUpper == 0x0000_FFFF { return .v4(embedded) }            // ::ffff:a.b.c.d
            if lowUpper == 0xFFFF_0000 { return .v4(embedded) }            // ::ffff:0:a.b.c.d
            if lowUpper == 0 && a.low > 1 { return .v4(embedded) }         // ::a.b.c.d
            return ip
        }
        if lowUpper == 0 && (a.high == 0x0064_FF9B_0000_0000 || a.high == 0x0064_FF9B_0001_0000) {
            return .v4(embedded)                                           // 64:ff9b::a.b.c.d, 64:ff9b:1::a.b.c.d
        }
        if a.high >> 48 == 0x2002 {
            return .v4(IPv4Address(UInt32(truncatingIfNeeded: a.high >> 16)))  // 2002:AABB:CCDD::/48
        }
        return ip
    }

    private static func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8, _ length: Int) -> CIDR {
        CIDR(address: .v4(IPv4Address(a, b, c, d)), prefixLength: length)
    }

    private static func v6(_ high: UInt64, _ low: UInt64, _ length: Int) -> CIDR {
        CIDR(address: .v6(IPv6Address(high: high, low: low)), prefixLength: length)
    }
}
