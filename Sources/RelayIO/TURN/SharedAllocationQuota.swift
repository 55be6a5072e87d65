import RelayCore
import Synchronization

/// The allocation quotas of one relay process, shared by its workers' `Server`s: `--max-allocations`
/// and `--max-allocations-per-user` count every allocation of the process, whichever worker the
/// kernel's SO_REUSEPORT hash gave its client to. One mutex around the `AllocationQuotaTable`:
/// every call is one short critical section, taken on the Allocate slow path and when an allocation
/// ends, never per packet.
public final class SharedAllocationQuota: AllocationQuota, Sendable {
    private let table = Mutex(AllocationQuotaTable())

    public init() {}

    public func acquire(username: String, perUserLimit: Int, totalLimit: Int) -> AllocationAdmission {
        table.withLock { $0.acquire(username: username, perUserLimit: perUserLimit, totalLimit: totalLimit) }
    }

    public func release(username: String) { table.withLock { $0.release(username: username) } }

    /// A copy of the counts (tests, diagnostics).
    public var snapshot: AllocationQuotaTable { table.withLock { $0 } }
}
