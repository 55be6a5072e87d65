import RelayCore
import STUN
import Synchronization

/// The EVEN-PORT reservation registry of one relay process, shared by its workers' `Server`s
/// (RFC 8656 §7.2: "the reservation is a server-wide reservation"). One mutex around the
/// `ReservationTable`: every call is one short critical section, and calls happen only on the
/// Allocate slow path (EVEN-PORT with R=1, RESERVATION-TOKEN, a worker out of ports) and on
/// reservation expiry, never per packet.
public final class SharedReservationRegistry: ReservationRegistry, Sendable {
    private let table: Mutex<ReservationTable>

    /// `capacity`: outstanding (unclaimed) reservations of the whole process; an EVEN-PORT
    /// Allocate with R=1 beyond it gets 508.
    public init(capacity: Int) { table = Mutex(ReservationTable(capacity: capacity)) }

    public func join() -> Int { table.withLock { $0.join() } }

    public func register(_ token: UInt64, _ reservation: ReservedPort, username: String, perUserLimit: Int,
                         expiresAt: Instant) -> ReservationRegistration {
        table.withLock { $0.register(token, reservation, username: username, perUserLimit: perUserLimit, expiresAt: expiresAt) }
    }

    public func claimableFamily(_ token: UInt64, now: Instant) -> AddressFamily? {
        table.withLock { $0.claimableFamily(token, now: now) }
    }

    public func claim(_ token: UInt64, by member: Int, now: Instant) -> ReservedPort? {
        table.withLock { $0.claim(token, by: member, now: now) }
    }

    public func withdraw(_ token: UInt64) -> Bool { table.withLock { $0.withdraw(token) } }

    public func giveBack(port: UInt16, family: AddressFamily) {
        table.withLock { $0.giveBack(port: port, family: family) }
    }

    public func takeGivenBack(owner: Int) -> [ReservedPort] { table.withLock { $0.takeGivenBack(owner: owner) } }

    /// A copy of the table (tests, diagnostics).
    public var snapshot: ReservationTable { table.withLock { $0 } }
}
