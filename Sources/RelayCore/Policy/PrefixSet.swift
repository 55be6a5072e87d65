import STUN

/// A list of CIDRs flattened into integer (network, mask) pairs per family, so a lookup is a
/// linear scan of plain integers: no allocation, no enum payload switching per entry.
struct PrefixSet: Sendable {
    private struct V4: Sendable {
        var network: UInt32
        var mask: UInt32
    }

    private struct V6: Sendable {
        var networkHigh: UInt64
        var networkLow: UInt64
        var maskHigh: UInt64
        var maskLow: UInt64
    }

    private var v4: [V4] = []
    private var v6: [V6] = []

    init(_ cidrs: [CIDR]) {
        for c in cidrs {
            switch c.network {
            case .v4(let n):
                v4.append(V4(network: n.value, mask: CIDR.mask32(c.prefixLength)))
            case .v6(let n):
                let (mh, ml) = CIDR.mask128(c.prefixLength)
                v6.append(V6(networkHigh: n.high, networkLow: n.low, maskHigh: mh, maskLow: ml))
            }
        }
    }

    /// Exact addresses (a /32 or /128 each).
    init(addresses: [IPAddress]) {
        self.init(addresses.map { CIDR(address: $0, prefixLength: 128) })
    }

    var isEmpty: Bool { v4.isEmpty && v6.isEmpty }

    func contains(_ ip: IPAddress) -> Bool {
        switch ip {
        case .v4(let a):
            for r in v4 where a.value & r.mask == r.network { return true }
            return false
        case .v6(let a):
            for r in v6 where a.high & r.maskHigh == r.networkHigh && a.low & r.maskLow == r.networkLow {
                return true
            }
            return false
        }
    }
}
