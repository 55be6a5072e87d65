import STUN

/// An IP prefix ("10.0.0.0/8", "fc00::/7") compared numerically, never as text or bytes.
///
/// coturn CVE-2026-73213 compared IPv6 ranges byte-wise, so a deny range whose prefix length
/// was not a multiple of 8 (e.g. `2001:db8:8000::/33`) could be bypassed. Here every check is
/// `(address & mask) == network` on integers.
///
/// Host bits: text or an address with bits set below the prefix ("10.1.2.3/8") is accepted and
/// those bits are cleared, as iptables and Python's `ip_network(strict=False)` do. The stored
/// `network` and `description` show the masked form, so an operator sees what is enforced.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    /// The network address, host bits cleared.
    public let network: IPAddress
    /// 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    /// Parses "a.b.c.d/len", "v6/len", or a bare address (then /32 or /128).
    /// Returns nil for anything else: an invalid address, a length over 32 (IPv4) or 128 (IPv6),
    /// a sign, spaces, an empty length, a second "/", an IPv6 zone ("%eth0") or brackets.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let address = IPAddress(String(parts[0])) else { return nil }
        let maxLength = address.family == .ipv4 ? 32 : 128
        var length = maxLength
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.count <= 3,
                  digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let n = Int(digits), n <= maxLength else { return nil }
            length = n
        }
        self.init(address: address, prefixLength: length)
    }

    /// A prefix of `prefixLength` bits of `address`. Host bits are cleared; a length outside
    /// 0...32 (IPv4) or 0...128 (IPv6) is clamped into that range.
    public init(address: IPAddress, prefixLength: Int) {
        switch address {
        case .v4(let a):
            let p = min(max(prefixLength, 0), 32)
            self.prefixLength = p
            network = .v4(IPv4Address(a.value & CIDR.mask32(p)))
        case .v6(let a):
            let p = min(max(prefixLength, 0), 128)
            self.prefixLength = p
            let (mh, ml) = CIDR.mask128(p)
            network = .v6(IPv6Address(high: a.high & mh, low: a.low & ml))
        }
    }

    /// True when `ip` lies inside this prefix. An IPv4 prefix never contains an IPv6 address and
    /// vice versa: embedded IPv4 forms must be canonicalized first (`PeerPolicy.canonicalize`).
    public func contains(_ ip: IPAddress) -> Bool {
        switch (network, ip) {
        case (.v4(let n), .v4(let a)):
            return a.value & CIDR.mask32(prefixLength) == n.value
        case (.v6(let n), .v6(let a)):
            let (mh, ml) = CIDR.mask128(prefixLength)
            return a.high & mh == n.high && a.low & ml == n.low
        default:
            return false
        }
    }

    public var description: String { "\(network)/\(prefixLength)" }

    /// The IPv4 netmask for a prefix length in 0...32.
    @inlinable static func mask32(_ p: Int) -> UInt32 {
        p <= 0 ? 0 : (p >= 32 ? .max : ~(UInt32.max >> UInt32(p)))
    }

    /// The IPv6 netmask for a prefix length in 0...128, as (high 64 bits, low 64 bits).
    @inlinable static func mask128(_ p: Int) -> (UInt64, UInt64) {
        if p <= 0 { return (0, 0) }
        if p < 64 { return (~(UInt64.max >> UInt64(p)), 0) }
        if p == 64 { return (.max, 0) }
        if p < 128 { return (.max, ~(UInt64.max >> UInt64(p - 64))) }
        return (.max, .max)
    }
}
