import CUDP
import Glibc
import SocketAddressing
import STUN
import Testing

/// The one conversion between `TransportAddress` and the kernel's socket addresses, pinned against
/// hand-written sockaddr bytes (Linux layout: family in host order, then port and address in
/// network order; sockaddr_in is 16 bytes, sockaddr_in6 28).
@Suite struct SocketAddressTests {
    /// AF_INET / AF_INET6 as the two family bytes the kernel stores (host order).
    static let inet: [UInt8] = hostOrder(UInt16(AF_INET))
    static let inet6: [UInt8] = hostOrder(UInt16(AF_INET6))

    static func hostOrder(_ v: UInt16) -> [UInt8] {
        #if _endian(little)
        [UInt8(v & 0xFF), UInt8(v >> 8)]
        #else
        [UInt8(v >> 8), UInt8(v & 0xFF)]
        #endif
    }

    static func bytes(_ a: cu_addr, count: Int) -> [UInt8] {
        withUnsafeBytes(of: a) { Array($0.prefix(count)) }
    }

    static func address(fromBytes bytes: [UInt8]) -> cu_addr {
        var a = cu_addr()
        withUnsafeMutableBytes(of: &a) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return a
    }

    @Test func layoutIsTheKernels() {
        #expect(MemoryLayout<cu_addr>.size == 28)
        #expect(MemoryLayout<sockaddr_in>.size == 16)
        #expect(MemoryLayout<sockaddr_in6>.size == 28)
    }

    @Test func ipv4ToSockaddrIn() {
        // 192.0.2.1:3478 (3478 = 0x0D96)
        let a = cu_addr(TransportAddress(ip: .v4(IPv4Address(192, 0, 2, 1)), port: 3478))
        let expected: [UInt8] = Self.inet + [0x0D, 0x96, 0xC0, 0x00, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        #expect(Self.bytes(a, count: 16) == expected)
        #expect(a.length == 16)
        // The rest of the union stays zero.
        #expect(Self.bytes(a, count: 28).suffix(12) == Array(repeating: 0, count: 12))
    }

    @Test func ipv6ToSockaddrIn6() {
        // [2001:db8::1]:5349 (5349 = 0x14E5); flow info and scope id zero.
        let ip = IPv6Address(groups: [0x2001, 0x0db8, 0, 0, 0, 0, 0, 1])
        let a = cu_addr(TransportAddress(ip: .v6(ip), port: 5349))
        let expected: [UInt8] = Self.inet6 + [0x14, 0xE5] + [0, 0, 0, 0]
            + [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]
            + [0, 0, 0, 0]
        #expect(Self.bytes(a, count: 28) == expected)
        #expect(a.length == 28)
    }

    @Test func sockaddrInToIPv4() {
        let a = Self.address(fromBytes: Self.inet + [0x12, 0x34, 0x0A, 0x01, 0x02, 0x03] + Array(repeating: 0, count: 8))
        #expect(a.transportAddress == TransportAddress(ip: .v4(IPv4Address(10, 1, 2, 3)), port: 0x1234))
    }

    @Test func sockaddrIn6ToIPv6() {
        let a = Self.address(fromBytes: Self.inet6 + [0xFF, 0xFE] + [0, 0, 0, 0]
            + [0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xFF, 0xFE, 0x33, 0x44, 0x55] + [0, 0, 0, 0])
        let ip = IPv6Address(groups: [0xfe80, 0, 0, 0, 0x0211, 0x22ff, 0xfe33, 0x4455])
        #expect(a.transportAddress == TransportAddress(ip: .v6(ip), port: 0xFFFE))
    }

    /// ::ffff:192.0.2.1 is kept as the IPv6 address the kernel reports (not turned into IPv4).
    @Test func ipv4MappedStaysIPv6() {
        let bytes: [UInt8] = Self.inet6 + [0x0D, 0x96] + [0, 0, 0, 0]
            + [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x01] + [0, 0, 0, 0]
        let mapped = TransportAddress(ip: .v6(IPv6Address(high: 0, low: 0x0000_FFFF_C000_0201)), port: 3478)
        #expect(Self.address(fromBytes: bytes).transportAddress == mapped)
        #expect(Self.bytes(cu_addr(mapped), count: 28) == bytes)
    }

    /// The port is written and read in network order whatever its value.
    @Test func portByteOrder() {
        for port: UInt16 in [0, 1, 0x00FF, 0x0100, 0x1234, 0x8000, 0xFFFF] {
            let a = cu_addr(TransportAddress(ip: .v4(.loopback), port: port))
            #expect(Self.bytes(a, count: 4).suffix(2) == [UInt8(port >> 8), UInt8(port & 0xFF)])
            #expect(a.transportAddress?.port == port)
            let b = cu_addr(TransportAddress(ip: .v6(.loopback), port: port))
            #expect(Self.bytes(b, count: 4).suffix(2) == [UInt8(port >> 8), UInt8(port & 0xFF)])
            #expect(b.transportAddress?.port == port)
        }
    }

    @Test func otherFamiliesAreNotAddresses() {
        #expect(cu_addr().transportAddress == nil)
        #expect(cu_addr().length == 0)
        let unix = Self.address(fromBytes: Self.hostOrder(UInt16(AF_UNIX)) + [0x2F, 0x74, 0x6D, 0x70])
        #expect(unix.transportAddress == nil)
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        let copied = withUnsafePointer(to: &storage) {
            cu_addr(copying: UnsafeRawPointer($0).assumingMemoryBound(to: sockaddr.self))
        }
        #expect(copied.transportAddress == nil)
    }

    /// `copying:` reads a sockaddr_in from storage of another type (getifaddrs, sockaddr_storage)
    /// by its family, and `withSockaddr` hands the kernel the matching length.
    @Test func copyingAndWithSockaddr() {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            for (i, b) in (Self.inet + [0x01, 0xBB, 0x7F, 0x00, 0x00, 0x01]).enumerated() { raw[i] = b }
        }
        let a = withUnsafePointer(to: &storage) {
            cu_addr(copying: UnsafeRawPointer($0).assumingMemoryBound(to: sockaddr.self))
        }
        #expect(a.transportAddress == TransportAddress(ip: .v4(.loopback), port: 443))
        let seen = a.withSockaddr { p, length in (Int32(p.pointee.sa_family), length) }
        #expect(seen.0 == AF_INET && seen.1 == 16)
    }

    /// The round trip through a real socket: bind 127.0.0.1:0 with the conversion, read the bound
    /// address back with getsockname.
    @Test func boundAddressReadsBack() throws {
        var gro: Int32 = 0
        var bind = cu_addr(TransportAddress(ip: .v4(.loopback), port: 0))
        let fd = cu_udp_socket(&bind, 0, 0, &gro)
        try #require(fd >= 0)
        defer { _ = cu_close(fd) }
        let local = try #require(TransportAddress.local(of: fd))
        #expect(local.ip == .v4(.loopback))
        #expect(local.port != 0)
    }
}
