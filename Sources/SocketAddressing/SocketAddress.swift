import CUDP
import Glibc
import STUN

// The one conversion between the relay's `TransportAddress` (STUN) and the kernel's socket
// addresses. `cu_addr` (CUDP) is a union of `sockaddr`, `sockaddr_in` and `sockaddr_in6` in the
// kernel's layout (family in host order, port and address in network order), so the same value is
// what the backends send to and receive from, what `bind`/`getsockname`/`sendto` take, and what the
// load generator hands to sendmmsg. The C code copies it and never converts it.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are kept as IPv6, as the kernel reports them: the
// listeners are IPV6_V6ONLY, and the peer policy canonicalizes mapped addresses itself.
extension cu_addr {
    /// `address` as a `sockaddr_in` (IPv4) or `sockaddr_in6` (IPv6; flow info and scope 0).
    @inlinable
    public init(_ address: TransportAddress) {
        self.init()
        switch address.ip {
        case .v4(let ip):
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = address.port.bigEndian
            sin.sin_addr.s_addr = ip.value.bigEndian
            in4 = sin
        case .v6(let ip):
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = address.port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { raw in
                raw.storeBytes(of: ip.high.bigEndian, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: ip.low.bigEndian, toByteOffset: 8, as: UInt64.self)
            }
            in6 = sin6
        }
    }

    @inlinable
    public init(ip: IPAddress, port: UInt16) {
        self.init(TransportAddress(ip: ip, port: port))
    }

    /// Copies the socket address at `address` (of the kernel's or getifaddrs' making) as far as its
    /// family says; a family other than AF_INET/AF_INET6 gives a zeroed value (family 0).
    @inlinable
    public init(copying address: UnsafePointer<sockaddr>) {
        self.init()
        switch Int32(address.pointee.sa_family) {
        case AF_INET: in4 = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self)
        case AF_INET6: in6 = UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self)
        default: break
        }
    }

    /// nil unless the family is AF_INET or AF_INET6.
    @inlinable
    public var transportAddress: TransportAddress? {
        switch Int32(sa.sa_family) {
        case AF_INET:
            let sin = in4
            return TransportAddress(ip: .v4(IPv4Address(UInt32(bigEndian: sin.sin_addr.s_addr))),
                                    port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = in6
            let (high, low) = withUnsafeBytes(of: sin6.sin6_addr) { raw in
                (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                 UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
            return TransportAddress(ip: .v6(IPv6Address(high: high, low: low)), port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }

    /// The length to pass to the kernel: `sizeof(sockaddr_in)` or `sizeof(sockaddr_in6)`; 0 for any
    /// other family.
    @inlinable
    public var length: socklen_t {
        switch Int32(sa.sa_family) {
        case AF_INET: socklen_t(MemoryLayout<sockaddr_in>.size)
        case AF_INET6: socklen_t(MemoryLayout<sockaddr_in6>.size)
        default: 0
        }
    }

    /// Calls `body` with this address as a `sockaddr` pointer and its length (bind, connect, sendto).
    @inlinable
    public func withSockaddr<R, E: Error>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(E) -> R) throws(E) -> R {
        var copy = self
        let length = self.length
        return try withUnsafePointer(to: &copy) { (p) throws(E) -> R in
            try body(UnsafeRawPointer(p).assumingMemoryBound(to: sockaddr.self), length)
        }
    }
}

extension TransportAddress {
    /// The address the socket `fd` is bound to (getsockname); nil for an error or a non-IP socket.
    public static func local(of fd: Int32) -> TransportAddress? {
        var address = cu_addr()
        guard cu_local_address(fd, &address) == 0 else { return nil }
        return address.transportAddress
    }
}
