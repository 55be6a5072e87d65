import Foundation

/// The listen ports the test process has handed out. Every test target runs in one process, and
/// the tests pick "a free port" by trying to bind it and closing the socket again: two suites
/// running side by side can both find the same port free before either relay has bound it, and
/// turn-relay's listeners use SO_REUSEPORT, so both relays then bind it and the kernel splits the
/// port's datagrams between them (a client's Refresh lands on a worker of the other group: 437).
/// A port is handed out once per process.
public enum ListenPortClaims {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var claimed: Set<UInt16> = []

    /// Whether `port` was not handed out before in this process (and is now).
    public static func claim(_ port: UInt16) -> Bool {
        claim(port...port)
    }

    /// Whether none of `ports` was handed out before in this process (and all are now).
    public static func claim(_ ports: ClosedRange<UInt16>) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard claimed.isDisjoint(with: ports) else { return false }
        claimed.formUnion(ports)
        return true
    }
}
