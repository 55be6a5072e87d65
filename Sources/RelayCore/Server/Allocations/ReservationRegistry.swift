import STUN

// EVEN-PORT reservations across the `Server`s of one relay process.
//
// RFC 8656 §7.2: "Note that the reservation is a server-wide reservation and is not specific to a
// particular allocation since the Allocate request containing the RESERVATION-TOKEN uses a
// different 5-tuple than the Allocate request that made the reservation." With one `Server` per
// worker and SO_REUSEPORT spreading client sockets over the workers, the Allocate that carries the
// token often reaches another worker than the one that issued it, so tokens live in a registry the
// workers share. It is consulted only on the Allocate slow path (EVEN-PORT with R=1, a
// RESERVATION-TOKEN, or a worker that ran out of ports); the packet path never touches it.
//
// Who holds port N+1: no socket is opened for a reservation. The reserving server (the *owner*,
// whose port range holds N+1) keeps the port marked used in its own `PortAllocator` and registers
// token → port. A claimant takes the entry out of the registry atomically (one claim per token)
// and binds the port itself. A claimed port stays marked used by its owner (*lent*) until the
// claimant gives it back when its allocation ends, after its socket is closed; the owner collects
// given-back ports on its own slow path. So at any moment exactly one server may bind a reserved
// port, with no lock on any data path and no cross-thread access to a server's tables.

/// A reserved relayed transport address (port N+1 of an EVEN-PORT allocation with R=1).
public struct ReservedPort: Sendable, Hashable {
    public var port: UInt16
    public var family: AddressFamily
    /// The registry member that reserved it; the port belongs to that member's port range.
    public var owner: Int

    public init(port: UInt16, family: AddressFamily, owner: Int) {
        self.port = port
        self.family = family
        self.owner = owner
    }
}

/// Reservation tokens shared by the servers of one process. Implementations must make every call
/// atomic with respect to the others (one claim per token, claim versus withdraw).
public protocol ReservationRegistry: AnyObject {
    /// A new member (one per `Server`); the number names it in the other calls.
    func join() -> Int
    /// Records `token` → `reservation`, made for `username`, until `expiresAt`. `.full` when the
    /// registry already holds its capacity of outstanding (unclaimed) reservations or the token is
    /// taken; `.userQuota` when `username` already holds `perUserLimit` of them.
    func register(_ token: UInt64, _ reservation: ReservedPort, username: String, perUserLimit: Int,
                  expiresAt: Instant) -> ReservationRegistration
    /// The family of the reservation `token` names, if it is registered, unclaimed and not expired
    /// at `now`. Only a hint: `claim` decides.
    func claimableFamily(_ token: UInt64, now: Instant) -> AddressFamily?
    /// The one claim of `token` by `member`: removes and returns the reservation when it is
    /// registered and `now` is before its expiry, else nil. A port claimed by another member than
    /// its owner is lent until `giveBack`.
    func claim(_ token: UInt64, by member: Int, now: Instant) -> ReservedPort?
    /// The owner withdraws its reservation (expiry). True when it was still unclaimed: the port is
    /// the owner's to reuse. False when it was claimed: the port comes back through `giveBack`.
    func withdraw(_ token: UInt64) -> Bool
    /// A claimant is done with a lent port: its socket is closed.
    func giveBack(port: UInt16, family: AddressFamily)
    /// The ports claimants have given back to `owner` since the last call.
    func takeGivenBack(owner: Int) -> [ReservedPort]
}

/// The outcome of `ReservationRegistry.register`.
public enum ReservationRegistration: Sendable, Equatable {
    case registered
    /// The process-wide capacity is reached (or the token is taken): 508.
    case full
    /// The username holds its quota of outstanding reservations: 486.
    case userQuota
}

/// The state of a registry, as a value: the logic both implementations share (the process wraps
/// it in a lock, a single server or a test uses it as is). Every table is bounded: outstanding
/// reservations by `capacity`; lent and given-back ports by the claimants' allocations (a port is
/// lent at most once at a time, since its owner keeps it marked used until it comes back).
public struct ReservationTable: Sendable {
    public let capacity: Int
    private var members = 0
    private var outstanding: [UInt64: (reservation: ReservedPort, expiresAt: Instant, username: String)] = [:]
    /// Outstanding reservations per username (RFC 8656 §7.2: the quota "SHOULD" be based on the
    /// username). Bounded by `outstanding`.
    private var perUser: [String: Int] = [:]
    private var lent: [PortKey: Int] = [:]
    private var givenBack: [Int: [ReservedPort]] = [:]

    private struct PortKey: Hashable {
        var port: UInt16
        var family: AddressFamily
    }

    public init(capacity: Int) { self.capacity = max(0, capacity) }

    /// Registered, unclaimed reservations (expired ones included until their owner withdraws them).
    public var outstandingCount: Int { outstanding.count }
    /// Ports claimed by another member than their owner and not yet given back.
    public var lentCount: Int { lent.count }
    /// Ports given back and not yet collected by their owners.
    public var givenBackCount: Int { givenBack.values.reduce(0) { $0 + $1.count } }

    public mutating func join() -> Int {
        defer { members += 1 }
        return members
    }

    public mutating func register(_ token: UInt64, _ reservation: ReservedPort, username: String, perUserLimit: Int,
                                  expiresAt: Instant) -> ReservationRegistration {
        guard perUser[username, default: 0] < perUserLimit else { return .userQuota }
        guard outstanding.count < capacity, outstanding[token] == nil else { return .full }
        outstanding[token] = (reservation, expiresAt, username)
        perUser[username, default: 0] += 1
        return .registered
    }

    /// Outstanding reservations made for `username`.
    public func outstandingCount(of username: String) -> Int { perUser[username] ?? 0 }

    private mutating func remove(_ token: UInt64) -> (reservation: ReservedPort, expiresAt: Instant, username: String)? {
        guard let entry = outstanding.removeValue(forKey: token) else { return nil }
        let left = (perUser[entry.username] ?? 1) - 1
        perUser[entry.username] = left > 0 ? left : nil
        return entry
    }

    public func claimableFamily(_ token: UInt64, now: Instant) -> AddressFamily? {
        guard let entry = outstanding[token], now < entry.expiresAt else { return nil }
        return entry.reservation.family
    }

    public mutating func claim(_ token: UInt64, by member: Int, now: Instant) -> ReservedPort? {
        // RFC 8656 §7.2 step 5: the token must be valid, "i.e., the token is in range and has not
        // expired, and the corresponding relayed transport address is still available". An
        // expired entry stays until its owner withdraws it and takes the port back.
        guard let entry = outstanding[token], now < entry.expiresAt else { return nil }
        _ = remove(token)
        let reservation = entry.reservation
        if reservation.owner != member {
            lent[PortKey(port: reservation.port, family: reservation.family)] = reservation.owner
        }
        return reservation
    }

    public mutating func withdraw(_ token: UInt64) -> Bool {
        remove(token) != nil
    }

    public mutating func giveBack(port: UInt16, family: AddressFamily) {
        guard let owner = lent.removeValue(forKey: PortKey(port: port, family: family)) else { return }
        givenBack[owner, default: []].append(ReservedPort(port: port, family: family, owner: owner))
    }

    public mutating func takeGivenBack(owner: Int) -> [ReservedPort] {
        givenBack.removeValue(forKey: owner) ?? []
    }
}

/// A registry for servers that share one thread (a single `Server`, the core's tests). Not for
/// servers on different threads: the process uses a lock-protected one (RelayIO's
/// `SharedReservationRegistry`).
public final class UnsharedReservationRegistry: ReservationRegistry {
    public private(set) var table: ReservationTable

    public init(capacity: Int) { table = ReservationTable(capacity: capacity) }

    public func join() -> Int { table.join() }
    public func register(_ token: UInt64, _ reservation: ReservedPort, username: String, perUserLimit: Int,
                         expiresAt: Instant) -> ReservationRegistration {
        table.register(token, reservation, username: username, perUserLimit: perUserLimit, expiresAt: expiresAt)
    }
    public func claimableFamily(_ token: UInt64, now: Instant) -> AddressFamily? { table.claimableFamily(token, now: now) }
    public func claim(_ token: UInt64, by member: Int, now: Instant) -> ReservedPort? { table.claim(token, by: member, now: now) }
    public func withdraw(_ token: UInt64) -> Bool { table.withdraw(token) }
    public func giveBack(port: UInt16, family: AddressFamily) { table.giveBack(port: port, family: family) }
    public func takeGivenBack(owner: Int) -> [ReservedPort] { table.takeGivenBack(owner: owner) }
}
