import CUDP
import Glibc
import SocketAddressing
import STUN

extension IPAddress {
    /// True for 127.0.0.0/8 and ::1: the only destinations this benchmark sends to.
    public var isLoopback: Bool {
        switch self {
        case .v4(let a): a.value >> 24 == 127
        case .v6(let a): a == .loopback
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
    let rc = cu_addr(address).withSockaddr { bind(fd, $0, $1) }
    guard rc == 0 else {
        let e = errno
        close(fd)
        throw SocketError(call: "bind \(address)", errno: e)
    }
    return fd
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
