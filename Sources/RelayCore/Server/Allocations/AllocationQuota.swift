// The allocation quotas across the `Server`s of one process.
//
// With one `Server` per worker and SO_REUSEPORT spreading client sockets over the workers, a quota
// counted per server would refuse whichever allocation happened to hash to a full worker. So the
// servers of one process share one count: an Allocate takes a place (after its other checks, RFC 8656
// §7.2 step 10) and the allocation gives it back when it ends (deleted, expired, or failed to open),
// on whichever worker holds it. It is consulted on the Allocate slow path and when an allocation
// ends, never per packet.

/// The outcome of `AllocationQuota.acquire`.
public enum AllocationAdmission: Sendable, Equatable {
    case granted
    /// The username holds `perUserLimit` allocations: 486 (Allocation Quota Reached).
    case userQuota
    /// The process holds `totalLimit` allocations: 508 (Insufficient Capacity).
    case full
}

/// Allocation counts shared by the servers of one process. Implementations make each call atomic
/// with respect to the others.
public protocol AllocationQuota: AnyObject {
    /// Takes one place for `username` when it holds fewer than `perUserLimit` and the process fewer
    /// than `totalLimit` (the username's limit is checked first).
    func acquire(username: String, perUserLimit: Int, totalLimit: Int) -> AllocationAdmission
    /// Gives back a place `acquire` granted to `username`.
    func release(username: String)
}

/// The counts, as a value: the logic both implementations share (the process wraps it in a lock, a
/// single server or a test uses it as is). Bounded by the limits it is asked to keep.
public struct AllocationQuotaTable: Sendable, Equatable {
    public private(set) var total = 0
    private var perUser: [String: Int] = [:]

    public init() {}

    public func count(of username: String) -> Int { perUser[username] ?? 0 }
    /// Usernames holding at least one place.
    public var usernames: Int { perUser.count }

    public mutating func acquire(username: String, perUserLimit: Int, totalLimit: Int) -> AllocationAdmission {
        guard perUser[username, default: 0] < perUserLimit else { return .userQuota }
        guard total < totalLimit else { return .full }
        perUser[username, default: 0] += 1
        total += 1
        return .granted
    }

    public mutating func release(username: String) {
        guard let held = perUser[username] else { return }
        perUser[username] = held > 1 ? held - 1 : nil
        total -= 1
    }
}

/// A quota for servers that share one thread (a single `Server`, the core's tests). Not for servers
/// on different threads: the process uses a lock-protected one (RelayIO's `SharedAllocationQuota`).
public final class UnsharedAllocationQuota: AllocationQuota {
    public private(set) var table = AllocationQuotaTable()

    public init() {}

    public func acquire(username: String, perUserLimit: Int, totalLimit: Int) -> AllocationAdmission {
        table.acquire(username: username, perUserLimit: perUserLimit, totalLimit: totalLimit)
    }

    public func release(username: String) { table.release(username: username) }
}
