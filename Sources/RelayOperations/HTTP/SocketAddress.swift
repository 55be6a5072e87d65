import Glibc
import STUN

/// A `sockaddr_in`/`sockaddr_in6` built from, or read back into, a `TransportAddress`.
struct SocketAddress {
    var storage = sockaddr_storage()

    init(storage: sockaddr_storage) { self.storage = storage }

    init(_ address: TransportAddress) {
        withUnsafeMutableBytes(of: &storage) { raw in
            switch address.ip {
            case .v4(let ip):
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = address.port.bigEndian
                sin.sin_addr = in_addr(s_addr: ip.value.bigEndian)
                raw.storeBytes(of: sin, as: sockaddr_in.self)
            case .v6(let ip):
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = address.port.bigEndian
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { bytes in
                    for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: ip.high >> UInt64(56 - 8 * i)) }
                    for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: ip.low >> UInt64(56 - 8 * i)) }
                }
                raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            }
        }
    }

    var length: socklen_t {
        storage.ss_family == sa_family_t(AF_INET6)
            ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
    }

    mutating func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let length = self.length
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    var transportAddress: TransportAddress? {
        withUnsafeBytes(of: storage) { raw -> TransportAddress? in
            switch Int32(storage.ss_family) {
            case AF_INET:
                let sin = raw.loadUnaligned(as: sockaddr_in.self)
                return TransportAddress(ip: .v4(IPv4Address(UInt32(bigEndian: sin.sin_addr.s_addr))),
                                        port: UInt16(bigEndian: sin.sin_port))
            case AF_INET6:
                let sin6 = raw.loadUnaligned(as: sockaddr_in6.self)
                var high: UInt64 = 0, low: UInt64 = 0
                withUnsafeBytes(of: sin6.sin6_addr) { bytes in
                    for i in 0..<8 { high = high << 8 | UInt64(bytes[i]) }
                    for i in 0..<8 { low = low << 8 | UInt64(bytes[8 + i]) }
                }
                return TransportAddress(ip: .v6(IPv6Address(high: high, low: low)), port: UInt16(bigEndian: sin6.sin6_port))
            default:
                return nil
            }
        }
    }
}
