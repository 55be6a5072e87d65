import CUDP
import Glibc
import STUN
import SocketAddressing

/// A plain UDP socket with blocking, time-limited calls, for tests, tools and the load generator.
/// Workers never use it.
public final class BlockingUDPSocket {
    public let fd: Int32
    public let localAddress: TransportAddress

    /// Binds to `address` (port 0 picks one). `reusePort` sets SO_REUSEPORT before binding.
    public init(bindTo address: TransportAddress, reusePort: Bool = false, gro: Bool = false) throws(RelayIOError) {
        var bind = cu_addr(address)
        var options: Int32 = address.family == .ipv6 ? Int32(CU_SO_V6ONLY.rawValue) : 0
        if reusePort { options |= Int32(CU_SO_REUSEPORT.rawValue) }
        if gro { options |= Int32(CU_SO_GRO.rawValue) }
        var groEnabled: Int32 = 0
        let fd = cu_udp_socket(&bind, options, 1 << 20, &groEnabled)
        guard fd >= 0 else { throw .socket(address, errno: -fd) }
        var local = cu_addr()
        guard cu_local_address(fd, &local) == 0, let bound = local.transportAddress else {
            _ = cu_close(fd)
            throw .socket(address, errno: EINVAL)
        }
        self.fd = fd
        localAddress = bound
    }

    deinit { _ = cu_close(fd) }

    /// Sends `bytes` to `destination`; with `segmentSize` the kernel splits them (UDP_SEGMENT / GSO).
    /// Returns bytes sent or a negative errno.
    @discardableResult
    public func send(_ bytes: [UInt8], to destination: TransportAddress, segmentSize: UInt16 = 0) -> Int {
        var dest = cu_addr(destination)
        return bytes.withUnsafeBytes { raw in
            Int(cu_udp_send(fd, &dest, raw.baseAddress, raw.count, segmentSize))
        }
    }

    /// Receives one datagram within `timeoutMilliseconds`; nil on timeout or error. Datagrams longer
    /// than `capacity` come back truncated.
    public func receive(timeoutMilliseconds: Int32 = 2000, capacity: Int = 65536) -> (bytes: [UInt8], from: TransportAddress)? {
        var buffer = [UInt8](repeating: 0, count: capacity)
        var from = cu_addr()
        let n = buffer.withUnsafeMutableBytes { raw in
            cu_udp_recv(fd, raw.baseAddress, raw.count, &from, timeoutMilliseconds)
        }
        guard n >= 0, let source = from.transportAddress else { return nil }
        return (Array(buffer[0..<min(Int(n), capacity)]), source)
    }
}
