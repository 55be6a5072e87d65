import Foundation
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Picks UDP ports on loopback for the servers and peers a test starts.
enum LoopbackPorts {
    /// The IPv4 loopback address the peers use. It differs from the relay's 127.0.0.1 so that the
    /// peer is "another host" to the relay, as in a real deployment (turn-relay refuses peers on its
    /// own address outside its relay port range, a defence against reaching the relay host's services).
    static let peerIPv4 = "127.0.0.2"

    /// Whether ::1 exists on this machine (a UDP socket can bind to it); tests that need it are
    /// skipped without it (`IPv6Loopback`).
    static var ipv6Available: Bool { IPv6Loopback.isAvailable }

    /// A window of `count` consecutive UDP ports for relayed addresses, outside the kernel's
    /// ephemeral range (32768–60999 by default) so that client sockets do not land in it.
    /// Windows are handed out in turn (22 of 200 ports), so relays running at the same time get
    /// different windows unless more than 22 of them run at once.
    static func relayPortRange(count: Int = 200) throws -> ClosedRange<UInt16> {
        let first = 61_000
        let last = 65_400
        let windows = (last - first + 1) / count
        for _ in 0..<windows {
            // The counter is shared by every window size: reduce it to this size's windows.
            let index = nextWindow.withLock { next in
                defer { next = (next + 1) % 1_000_000 }
                return next % windows
            }
            let low = first + index * count
            let range = UInt16(low)...UInt16(low + count - 1)
            if range.allSatisfy({ canBind(ipv6: false, port: $0) }) { return range }
        }
        throw NoFreePort(what: "\(count) free consecutive UDP ports in \(first)–\(last)")
    }

    struct NoFreePort: Error, CustomStringConvertible {
        let what: String
        var description: String { "could not find \(what)" }
    }

    private static let nextWindow = LockedValue(Int(getpid()) % 20)

    static func canBind(ipv6: Bool, port: UInt16, ipv4Address: String = "127.0.0.1") -> Bool {
        let fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if ipv6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_addr = in6addr_loopback
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) == 0
                }
            }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr(ipv4Address)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// A value behind a lock, for the little shared state the test harness keeps.
final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
