/// IP addresses and transport addresses as STUN and TURN name them.
///
/// Values are kept in host byte order as plain integers so that hashing, comparison and
/// CIDR prefix checks are numeric (never byte-string comparisons; see coturn CVE-2026-73213).

public enum AddressFamily: UInt8, Hashable, Sendable, CaseIterable {
    /// RFC 8489 §14.1: 0x01 IPv4, 0x02 IPv6.
    case ipv4 = 0x01
    case ipv6 = 0x02
}

public struct IPv4Address: Hashable, Comparable, Sendable {
    public var value: UInt32

    @inlinable public init(_ value: UInt32) { self.value = value }

    @inlinable public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    @inlinable public static func < (l: Self, r: Self) -> Bool { l.value < r.value }

    public static let any = IPv4Address(0)
    public static let loopback = IPv4Address(127, 0, 0, 1)
}

public struct IPv6Address: Hashable, Comparable, Sendable {
    /// The first 64 bits (network order: the most significant half).
    public var high: UInt64
    /// The last 64 bits.
    public var low: UInt64

    @inlinable public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Eight 16-bit groups, as written in text.
    public init(groups g: [UInt16]) {
        precondition(g.count == 8)
        high = UInt64(g[0]) << 48 | UInt64(g[1]) << 32 | UInt64(g[2]) << 16 | UInt64(g[3])
        low = UInt64(g[4]) << 48 | UInt64(g[5]) << 32 | UInt64(g[6]) << 16 | UInt64(g[7])
    }

    @inlinable public static func < (l: Self, r: Self) -> Bool {
        (l.high, l.low) < (r.high, r.low)
    }

    public static let any = IPv6Address(high: 0, low: 0)
    public static let loopback = IPv6Address(high: 0, low: 1)
}

public enum IPAddress: Hashable, Sendable {
    case v4(IPv4Address)
    case v6(IPv6Address)

    @inlinable public var family: AddressFamily {
        switch self {
        case .v4: return .ipv4
        case .v6: return .ipv6
        }
    }
}

public struct TransportAddress: Hashable, Sendable {
    public var ip: IPAddress
    public var port: UInt16

    @inlinable public init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    @inlinable public var family: AddressFamily { ip.family }
}

// MARK: - Text forms

extension IPv4Address: CustomStringConvertible, LosslessStringConvertible {
    public var description: String {
        "\(value >> 24).\((value >> 16) & 0xFF).\((value >> 8) & 0xFF).\(value & 0xFF)"
    }

    /// Parses dotted-quad text ("192.0.2.1"). Each part is 0...255 in decimal; nothing else is accepted.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = UInt32(p), n <= 255 else { return nil }
            v = v << 8 | n
        }
        value = v
    }
}

extension IPv6Address: CustomStringConvertible, LosslessStringConvertible {
    public var groups: [UInt16] {
        [UInt16(truncatingIfNeeded: high >> 48), UInt16(truncatingIfNeeded: high >> 32),
         UInt16(truncatingIfNeeded: high >> 16), UInt16(truncatingIfNeeded: high),
         UInt16(truncatingIfNeeded: low >> 48), UInt16(truncatingIfNeeded: low >> 32),
         UInt16(truncatingIfNeeded: low >> 16), UInt16(truncatingIfNeeded: low)]
    }

    /// RFC 5952 text: lower case, longest run (≥ 2) of zero groups compressed to "::".
    public var description: String {
        let g = groups
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if g[i] == 0 {
                var j = i
                while j < 8 && g[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else { i += 1 }
        }
        func hex(_ r: Range<Int>) -> String { r.map { String(g[$0], radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
    }

    /// Parses RFC 4291 text, including "::" compression and a trailing dotted IPv4 part.
    public init?(_ text: String) {
        guard !text.isEmpty, text.count <= 45 else { return nil }
        var head: [UInt16] = [], tail: [UInt16] = []
        var halves: [String] = []
        if let r = text.firstRange(of: "::") {
            halves = [String(text[..<r.lowerBound]), String(text[r.upperBound...])]
            guard !halves[1].contains("::") else { return nil }
        } else {
            halves = [text]
        }
        func parse(_ s: String, allowV4: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if allowV4 && i == parts.count - 1 && p.contains(".") {
                    guard let v4 = IPv4Address(String(p)) else { return nil }
                    out.append(UInt16(v4.value >> 16)); out.append(UInt16(v4.value & 0xFFFF))
                } else {
                    guard !p.isEmpty, p.count <= 4, let n = UInt16(p, radix: 16) else { return nil }
                    out.append(n)
                }
            }
            return out
        }
        if halves.count == 2 {
            guard let h = parse(halves[0], allowV4: false), let t = parse(halves[1], allowV4: true),
                  h.count + t.count <= 7 else { return nil }
            head = h; tail = t
            head += Array(repeating: 0, count: 8 - h.count - t.count)
        } else {
            guard let h = parse(halves[0], allowV4: true), h.count == 8 else { return nil }
            head = h
        }
        self.init(groups: head + tail)
    }
}

extension IPAddress: CustomStringConvertible, LosslessStringConvertible {
    public var description: String {
        switch self {
        case .v4(let a): return a.description
        case .v6(let a): return a.description
        }
    }

    public init?(_ text: String) {
        if let v4 = IPv4Address(text) { self = .v4(v4) } else if let v6 = IPv6Address(text) { self = .v6(v6) } else { return nil }
    }
}

extension TransportAddress: CustomStringConvertible, LosslessStringConvertible {
    /// "192.0.2.1:3478" or "[2001:db8::1]:3478".
    public var description: String {
        switch ip {
        case .v4(let a): return "\(a):\(port)"
        case .v6(let a): return "[\(a)]:\(port)"
        }
    }

    public init?(_ text: String) {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()), let ip = IPv6Address(host) else { return nil }
            self.init(ip: .v6(ip), port: port)
        } else {
            guard let colon = text.lastIndex(of: ":"), let ip = IPv4Address(String(text[..<colon])),
                  let port = UInt16(text[text.index(after: colon)...]) else { return nil }
            self.init(ip: .v4(ip), port: port)
        }
    }
}
