import Glibc
import Testing

/// Whether ::1 exists here, and the one policy for when it does not: tests that need it are
/// skipped with `.enabled(if: IPv6Loopback.isAvailable, IPv6Loopback.missing)`, so the runner prints
/// each skipped test with the reason (CI machines and containers may have no IPv6 loopback).
public enum IPv6Loopback {
    /// A UDP socket can bind to [::1]:0.
    public static let isAvailable: Bool = {
        let fd = socket(AF_INET6, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_addr = in6addr_loopback
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
            }
        }
    }()

    /// The skip reason the runner prints.
    public static let missing: Comment = "::1 is not configured on this machine's loopback"
}
