import CUDP
import CXDP
import Glibc
import RelayCore
import STUN

/// The interfaces the fast path attaches to, by name: index, MTU and addresses.
public enum XDPInterfaces {
    public struct Interface: Sendable, Equatable {
        public var name: String
        public var index: Int32
        /// The link MTU (the largest IP packet the program may send out of it).
        public var mtu: Int
        public var addresses: [IPAddress]
        /// The prefixes on the link itself (each address with its netmask).
        public var prefixes: [CIDR] = []
    }

    public enum LookupError: Error, Equatable, CustomStringConvertible {
        case unknown(String)

        public var description: String {
            switch self {
            case .unknown(let name): "no network interface named \(name) (see `ip link`)"
            }
        }
    }

    public static func lookup(_ name: String) -> Result<Interface, LookupError> {
        let index = if_nametoindex(name)
        guard index != 0 else { return .failure(.unknown(name)) }
        return .success(Interface(name: name, index: Int32(index), mtu: mtu(of: name) ?? 1500,
                                  addresses: HostAddresses.current(interface: name),
                                  prefixes: HostAddresses.connectedPrefixes(interface: name)))
    }

    /// The name of the interface `index` in this thread's network namespace, nil when it has none.
    public static func name(of index: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard index > 0, if_indextoname(UInt32(index), &buffer) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The id of the XDP program attached to `name` in this thread's network namespace (any
    /// mode), 0 when none, nil when the interface is unknown or the query fails.
    public static func attachedProgramID(_ name: String) -> UInt32? {
        let index = if_nametoindex(name)
        guard index != 0 else { return nil }
        let id = cx_query_attached(Int32(index))
        return id < 0 ? nil : UInt32(id)
    }

    /// SIOCGIFMTU on a throwaway datagram socket.
    static func mtu(of name: String) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var request = ifreq()
        let bytes = Array(name.utf8.prefix(Int(IFNAMSIZ) - 1))
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        guard ioctl(fd, UInt(SIOCGIFMTU), &request) == 0 else { return nil }
        return Int(request.ifr_ifru.ifru_mtu)
    }
}
