import CUDP
import Glibc
import SocketAddressing
import STUN

/// Whether a UDP address is already bound by another socket, asked before the relay binds its own
/// listeners. The listeners are bound with SO_REUSEPORT (one per worker), so a second relay of the
/// same user on the same port binds too, and the kernel then shares the port's datagrams between
/// the two without a word: on purpose during an upgrade by drain, by accident when an old relay
/// was left running. A plain bind (no SO_REUSEPORT) fails with EADDRINUSE in both cases.
public enum ListenPortProbe {
    /// The addresses of `addresses` (port 0 excluded) that another socket holds now.
    public static func held(_ addresses: [TransportAddress]) -> [TransportAddress] {
        addresses.filter { address in
            guard address.port != 0 else { return false }
            var raw = cu_addr(address)
            let options = address.ip.family == .ipv6 ? Int32(CU_SO_V6ONLY.rawValue) : 0
            var gro: Int32 = 0
            let fd = cu_udp_socket(&raw, options, 0, &gro)
            if fd >= 0 { _ = cu_close(fd) }
            return fd == -EADDRINUSE
        }
    }
}
