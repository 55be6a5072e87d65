import CUDP
import Glibc
import RelayCore
import SocketAddressing
import STUN

/// This host's interface addresses (getifaddrs), for `ServerConfiguration.localAddresses`, or
/// those of one interface (`XDPInterfaces`).
public enum HostAddresses {
    public static func current(interface: String? = nil) -> [IPAddress] {
        addresses(of: interface).map(\.address)
    }

    /// The prefixes directly connected to `interface` (each address with its netmask): the
    /// destinations reached on the link itself, not through a router.
    public static func connectedPrefixes(interface: String) -> [CIDR] {
        addresses(of: interface).compactMap { entry in
            guard let netmask = entry.netmask, netmask.family == entry.address.family else { return nil }
            return CIDR(address: entry.address, prefixLength: prefixLength(of: netmask))
        }
    }

    /// Every IPv4 and IPv6 address getifaddrs lists (of `interface` only, when given), with its
    /// netmask.
    static func addresses(of interface: String?) -> [(address: IPAddress, netmask: IPAddress?)] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [(address: IPAddress, netmask: IPAddress?)] = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr else { continue }
            if let interface, String(cString: entry.pointee.ifa_name) != interface { continue }
            guard let address = cu_addr(copying: sa).transportAddress else { continue }
            found.append((address.ip, entry.pointee.ifa_netmask.flatMap { cu_addr(copying: $0).transportAddress?.ip }))
        }
        return found
    }

    /// The number of leading one bits of a netmask.
    static func prefixLength(of netmask: IPAddress) -> Int {
        switch netmask {
        case .v4(let a): (~a.value).leadingZeroBitCount
        case .v6(let a): a.high == .max ? 64 + (~a.low).leadingZeroBitCount : (~a.high).leadingZeroBitCount
        }
    }
}
