import Glibc
import RelayCore
import STUN

/// This host's interface addresses (getifaddrs), for `ServerConfiguration.localAddresses`.
public enum HostAddresses {
    public static func current() -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [IPAddress] = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr else { continue }
            switch Int32(sa.pointee.sa_family) {
            case AF_INET:
                let v = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt32(bigEndian: $0.pointee.sin_addr.s_addr) }
                found.append(.v4(IPv4Address(v)))
            case AF_INET6:
                let ip = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { p -> IPAddress in
                    withUnsafeBytes(of: p.pointee.sin6_addr) { raw in
                        var high: UInt64 = 0, low: UInt64 = 0
                        for i in 0..<8 {
                            high = high << 8 | UInt64(raw[i])
                            low = low << 8 | UInt64(raw[8 + i])
                        }
                        return .v6(IPv6Address(high: high, low: low))
                    }
                }
                found.append(ip)
            default:
                continue
            }
        }
        return found
    }
}
