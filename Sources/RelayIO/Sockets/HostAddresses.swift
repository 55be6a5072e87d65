import CUDP
import Glibc
import RelayCore
import SocketAddressing
import STUN

/// This host's interface addresses (getifaddrs), for `ServerConfiguration.localAddresses`, or
/// those of one interface (`XDPInterfaces`).
public enum HostAddresses {
    public static func current(interface: String? = nil) -> [IPAddress] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: [IPAddress] = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr else { continue }
            if let interface, String(cString: entry.pointee.ifa_name) != interface { continue }
            if let address = cu_addr(copying: sa).transportAddress { found.append(address.ip) }
        }
        return found
    }
}
