import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The listen ports the test process has handed out. Every test target runs in one process, and
/// the tests pick "a free port" by trying to bind it and closing the socket again: two suites
/// running side by side can both find the same port free before either relay has bound it, and
/// turn-relay's listeners use SO_REUSEPORT, so both relays then bind it and the kernel splits the
/// port's datagrams (or connections) between them. A sanitizer run saw it: a TLS client got
/// another test's certificate. A port is handed out once per process.
public enum ListenPortClaims {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var claimed: Set<UInt16> = []

    /// Whether `port` was not handed out before in this process (and is now).
    public static func claim(_ port: UInt16) -> Bool {
        claim(port...port)
    }

    /// Whether none of `ports` was handed out before in this process (and all are now).
    public static func claim(_ ports: ClosedRange<UInt16>) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard claimed.isDisjoint(with: ports) else { return false }
        claimed.formUnion(ports)
        return true
    }

    /// A port for a test's relay or worker to listen on: free for UDP and TCP on 127.0.0.1 and
    /// on ::1 (where ::1 exists) right now, never handed out before in this process, and below the
    /// kernel's ephemeral range (32768+), where other tests' client sockets come and go and a port
    /// found with bind-to-0 is the next client's.
    public static func freePort(in range: ClosedRange<UInt16> = 20000...32000) throws -> UInt16 {
        try freePorts(1, in: range)
    }

    /// The first of `count` consecutive such ports (a relay that listens on several).
    public static func freePorts(_ count: UInt16, in range: ClosedRange<UInt16> = 20000...32000) throws -> UInt16 {
        precondition(count >= 1 && Int(count) <= range.count)
        for _ in 0..<500 {
            let first = UInt16.random(in: range.lowerBound...(range.upperBound - (count - 1)))
            let ports = first...(first + (count - 1))
            let free = ports.allSatisfy { port in
                [SOCK_DGRAM, SOCK_STREAM].allSatisfy { type in
                    bindable(AF_INET, Int32(type.rawValue), port) == true && bindable(AF_INET6, Int32(type.rawValue), port) != false
                }
            }
            if free, claim(ports) { return first }
        }
        throw NoFreePort(range: range)
    }

    public struct NoFreePort: Error, CustomStringConvertible {
        let range: ClosedRange<UInt16>
        public var description: String { "no free UDP and TCP port on loopback in \(range)" }
    }

    /// A plain bind (no SO_REUSEPORT, so any holder conflicts) to the loopback address of
    /// `family`; for IPv6 nil when ::1 is missing on this machine.
    static func bindable(_ family: Int32, _ type: Int32, _ port: UInt16) -> Bool? {
        let fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return family == AF_INET6 ? nil : false }
        defer { close(fd) }
        if family == AF_INET6 {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            address.sin6_addr = in6addr_loopback
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
            if rc == 0 { return true }
            return errno == EADDRNOTAVAIL ? nil : false
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}
