import Glibc
import STUN

public enum RelayIOError: Error, CustomStringConvertible, Equatable {
    case socket(TransportAddress, errno: Int32)
    /// Ring setup failed: stage 1 = io_uring_setup, 2 = buffer ring registration, 3 = memory.
    case ring(stage: Int32, errno: Int32)
    case eventfd(errno: Int32)
    case thread(errno: Int32)
    case configuration(String)

    public var description: String {
        switch self {
        case .socket(let address, let e):
            var hint = ""
            if e == EADDRINUSE { hint = " (another process holds this port; choose another with --listen-port)" }
            if e == EACCES { hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)" }
            if e == EADDRNOTAVAIL { hint = " (this address is not configured on any interface)" }
            return "cannot bind UDP \(address): \(Self.text(e))\(hint)"
        case .ring(let stage, let e):
            let what = stage == 1 ? "io_uring_setup" : stage == 2 ? "registering the provided buffer ring" : "allocating ring memory"
            return "\(what) failed: \(Self.text(e))"
        case .eventfd(let e): return "eventfd failed: \(Self.text(e))"
        case .thread(let e): return "cannot start worker thread: \(Self.text(e))"
        case .configuration(let text): return "invalid worker configuration: \(text)"
        }
    }

    static func text(_ e: Int32) -> String {
        guard let s = strerror(e) else { return "errno \(e)" }
        return "\(String(cString: s)) (errno \(e))"
    }
}
