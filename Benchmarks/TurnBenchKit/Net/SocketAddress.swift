import Glibc
import STUN

/// Conversions between `TransportAddress` and the kernel's socket addresses.
public enum SocketAddress {
    /// Writes `a` into `storage`; returns the length to pass to the kernel.
    public static func write(_ a: TransportAddress, to storage: UnsafeMutablePointer<sockaddr_storage>) -> socklen_t {
        storage.pointee = sockaddr_storage()
        switch a.ip {
        case .v4(let v4):
            return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                sin.pointee.sin_family = sa_family_t(AF_INET)
                sin.pointee.sin_port = a.port.bigEndian
                sin.pointee.sin_addr.s_addr = v4.value.bigEndian
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            }
        case .v6(let v6):
            return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                sin6.pointee.sin6_family = sa_family_t(AF_INET6)
                sin6.pointee.sin6_port = a.port.bigEndian
                withUnsafeMutableBytes(of: &sin6.pointee.sin6_addr) { raw in
                    for i in 0..<8 {
                        raw[i] = UInt8((v6.high >> UInt64(56 - 8 * i)) & 0xFF)
                        raw[8 + i] = UInt8((v6.low >> UInt64(56 - 8 * i)) & 0xFF)
                    }
                }
                return socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
    }

    public static func read(_ storage: UnsafePointer<sockaddr_storage>) -> TransportAddress? {
        switch Int32(storage.pointee.ss_family) {
        case AF_INET:
            return storage.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                TransportAddress(ip: .v4(IPv4Address(UInt32(bigEndian: sin.pointee.sin_addr.s_addr))),
                                 port: UInt16(bigEndian: sin.pointee.sin_port))
            }
        case AF_INET6:
            return storage.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var hi: UInt64 = 0, lo: UInt64 = 0
                withUnsafeBytes(of: sin6.pointee.sin6_addr) { raw in
                    for i in 0..<8 { hi = hi << 8 | UInt64(raw[i]) }
                    for i in 8..<16 { lo = lo << 8 | UInt64(raw[i]) }
                }
                return TransportAddress(ip: .v6(IPv6Address(high: hi, low: lo)), port: UInt16(bigEndian: sin6.pointee.sin6_port))
            }
        default:
            return nil
        }
    }

    /// True for 127.0.0.0/8 and ::1: the only destinations this benchmark sends to.
    public static func isLoopback(_ ip: IPAddress) -> Bool {
        switch ip {
        case .v4(let a): return a.value >> 24 == 127
        case .v6(let a): return a == .loopback
        }
    }
}

public struct SocketError: Error, CustomStringConvertible {
    public var call: String
    public var errno: Int32
    public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// A non-blocking UDP socket bound to `address` (port 0 = any), with large buffers.
public func openUDPSocket(bindTo address: TransportAddress, bufferBytes: Int32 = 4 << 20) throws(SocketError) -> Int32 {
    let fd = socket(address.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SocketError(call: "socket", errno: errno) }
    var size = bufferBytes
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    var storage = sockaddr_storage()
    let len = SocketAddress.write(address, to: &storage)
    let rc = withUnsafePointer(to: &storage) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
    }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw SocketError(call: "bind \(address)", errno: e)
    }
    return fd
}

/// The address a socket is bound to.
public func localAddress(of fd: Int32) -> TransportAddress? {
    var storage = sockaddr_storage()
    var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let rc = withUnsafeMutablePointer(to: &storage) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    guard rc == 0 else { return nil }
    return SocketAddress.read(&storage)
}

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
@discardableResult
public func raiseOpenFileLimit() -> UInt64 {
    var lim = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return 0 }
    lim.rlim_cur = lim.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
    return UInt64(lim.rlim_cur)
}
