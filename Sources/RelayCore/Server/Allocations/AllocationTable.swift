import STUN

/// The allocations of one server with the indices that must agree with them: slots reused through a
/// free list, the by-client index (one allocation per 5-tuple), the per-username counts, and the
/// allocation-socket entries the peer→client path reads by `SocketHandle.allocationIndex`.
///
/// Every change goes through a mutating method that keeps these in step, and allocations are
/// changed in place (`subscript(_:)` yields the stored value; nothing is copied out and stored
/// back). Timers, ports and socket requests stay with the caller: the table only names sockets.
struct AllocationTable {
    private var slots: [Allocation?] = []
    private var freeSlots: [UInt32] = []
    private var byClient: [ClientSocket: AllocationID] = [:]
    private var perUsername: [String: Int] = [:]
    private var sockets: [SocketEntry] = []
    private var freeSockets = SocketFreeList()

    /// Live allocations (including ones waiting for their sockets).
    var count: Int { byClient.count }
    /// Usernames holding at least one allocation.
    var usernameCount: Int { perUsername.count }
    /// Socket entries in use (opening, open, or orphaned until the shell answers).
    var socketCount: Int { sockets.count - freeSockets.count }
    /// Occupied slots (equal to `count` while the table is consistent).
    var slotCount: Int { slots.count - freeSlots.count }

    // MARK: Lookups

    func id(of client: ClientSocket) -> AllocationID? { byClient[client] }

    /// The allocation in slot `id`, if live.
    func allocation(_ id: AllocationID) -> Allocation? {
        let index = Int(id.index)
        return index < slots.count ? slots[index] : nil
    }

    /// The allocation on `client`'s 5-tuple.
    func allocation(of client: ClientSocket) -> (id: AllocationID, allocation: Allocation)? {
        guard let id = byClient[client], let allocation = slots[Int(id.index)] else { return nil }
        return (id, allocation)
    }

    /// The live allocation `id`, read or modified in place. Traps when the slot is free.
    subscript(id: AllocationID) -> Allocation {
        _read { yield slots[Int(id.index)]! }
        _modify { yield &slots[Int(id.index)]! }
    }

    func allocations(of username: String) -> Int { perUsername[username] ?? 0 }

    /// Calls `body` with every live allocation (metrics, a few times a second; never per packet).
    func forEach(_ body: (AllocationID, Allocation) -> Void) {
        for (index, slot) in slots.enumerated() {
            if let allocation = slot { body(AllocationID(index: UInt32(index)), allocation) }
        }
    }

    /// Every live allocation with its slot (tests, diagnostics).
    var live: [(id: AllocationID, allocation: Allocation)] {
        slots.enumerated().compactMap { index, slot in slot.map { (AllocationID(index: UInt32(index)), $0) } }
    }

    /// The entry of an open allocation socket (the peer→client path), nil for any other index.
    @inline(__always)
    func openSocket(at index: Int) -> SocketEntry? {
        guard index < sockets.count else { return nil }
        let entry = sockets[index]
        return entry.state == .open ? entry : nil
    }

    // MARK: Allocations

    /// Stores the allocation `make` builds for the slot it is given (its timers name the slot).
    mutating func insert(_ make: (AllocationID) -> Allocation) -> AllocationID {
        let id: AllocationID
        if let slot = freeSlots.popLast() {
            id = AllocationID(index: slot)
        } else {
            id = AllocationID(index: UInt32(slots.count))
            slots.append(nil)
        }
        let allocation = make(id)
        precondition(byClient[allocation.client] == nil, "one allocation per 5-tuple")
        slots[Int(id.index)] = allocation
        byClient[allocation.client] = id
        perUsername[allocation.username, default: 0] += 1
        return id
    }

    /// Takes the allocation out of every index and lets go of its sockets (an open one is free at
    /// once, one whose open is in flight once the shell answers). The caller cancels its timers,
    /// closes its sockets and releases its ports.
    mutating func remove(_ id: AllocationID) -> Allocation? {
        let index = Int(id.index)
        guard index < slots.count, let allocation = slots[index] else { return nil }
        for relay in allocation.relays { releaseSocket(relay) }
        slots[index] = nil
        freeSlots.append(id.index)
        byClient[allocation.client] = nil
        let remaining = (perUsername[allocation.username] ?? 1) - 1
        perUsername[allocation.username] = remaining > 0 ? remaining : nil
        return allocation
    }

    // MARK: Relayed addresses and their sockets

    /// Gives allocation `id` a relayed address of `family` on `port` with a new socket entry (to be
    /// opened by the shell). Returns the socket's handle.
    mutating func addRelay(_ family: AddressFamily, port: UInt16, to id: AllocationID, expiresAt: Instant,
                           timer: TimerID, portOwner: RelaySocket.PortOwner) -> SocketHandle {
        let index: Int
        if let free = freeSockets.pop() {
            index = free
        } else {
            index = sockets.count
            sockets.append(.free)
        }
        let handle = SocketHandle.allocation(index: index)
        sockets[index] = SocketEntry(allocation: id.index, family: family, state: .opening, client: self[id].client)
        self[id].setRelay(RelaySocket(handle: handle, family: family, port: port, state: .opening(attempt: 1),
                                      expiresAt: expiresAt, timer: timer, portOwner: portOwner), family)
        return handle
    }

    /// Takes one relayed address out of allocation `id` and lets go of its socket. Returns it.
    mutating func removeRelay(_ family: AddressFamily, of id: AllocationID) -> RelaySocket? {
        guard let relay = allocation(id)?.relay(for: family) else { return nil }
        releaseSocket(relay)
        self[id].setRelay(nil, family)
        return relay
    }

    /// Where the shell's answer for the socket at `index` goes: the allocation and family whose open
    /// is in flight on it, or nil (an orphaned entry is freed here: the shell is done with it).
    mutating func openAnswered(socket index: Int) -> (id: AllocationID, family: AddressFamily)? {
        guard index < sockets.count else { return nil }
        switch sockets[index].state {
        case .opening: return (AllocationID(index: sockets[index].allocation), sockets[index].family)
        case .orphaned:
            sockets[index] = .free
            freeSockets.push(index)
            return nil
        case .free, .open: return nil
        }
    }

    /// The shell opened the socket of `family` of allocation `id`.
    mutating func markOpen(_ family: AddressFamily, of id: AllocationID) {
        guard let index = self[id].withRelay(family, { relay -> Int? in
            relay.state = .open
            return relay.handle.allocationIndex
        }), let index else { return }
        sockets[index].state = .open
    }

    /// A failed bind of `family` is retried on `port` with the same socket entry.
    mutating func rebind(_ family: AddressFamily, of id: AllocationID, port: UInt16) {
        _ = self[id].withRelay(family) { relay in
            relay.port = port
            relay.portOwner = .thisServer
            relay.state = .opening(attempt: relay.attempts + 1)
        }
    }

    /// A failed bind of `family` that is not retried: no socket exists, so its entry is free at
    /// once. Returns the relayed address taken out of the allocation.
    mutating func dropFailedRelay(_ family: AddressFamily, of id: AllocationID) -> RelaySocket? {
        guard let relay = allocation(id)?.relay(for: family), let index = relay.handle.allocationIndex,
              index < sockets.count else { return nil }
        sockets[index] = .free
        freeSockets.push(index)
        self[id].setRelay(nil, family)
        return relay
    }

    private mutating func releaseSocket(_ relay: RelaySocket) {
        guard let index = relay.handle.allocationIndex, index < sockets.count else { return }
        if relay.isOpen {
            // Before the close request is carried out: from now on no datagram is relayed to it.
            sockets[index] = .free
            freeSockets.push(index)
        } else {
            // The open is still in flight; the handle is reusable once the shell has answered it.
            sockets[index] = .free
            sockets[index].state = .orphaned
        }
    }

    // MARK: Invariants

    /// Every disagreement between the slots and their indices, described (empty when consistent).
    func invariantViolations() -> [String] {
        var problems: [String] = []
        var usernames: [String: Int] = [:]
        var socketOwners: [Int: (AllocationID, AddressFamily)] = [:]
        for (index, slot) in slots.enumerated() {
            guard let allocation = slot else { continue }
            let id = AllocationID(index: UInt32(index))
            if byClient[allocation.client] != id { problems.append("allocation \(index) not indexed by its client") }
            usernames[allocation.username, default: 0] += 1
            if allocation.relayCount == 0 { problems.append("allocation \(index) has no relayed address") }
            for relay in allocation.relays {
                guard let socket = relay.handle.allocationIndex, socket < sockets.count else {
                    problems.append("allocation \(index) relay \(relay.family) has no socket entry")
                    continue
                }
                let entry = sockets[socket]
                let expected: SocketEntry.State = relay.isOpen ? .open : .opening
                if entry.allocation != id.index || entry.family != relay.family || entry.state != expected
                    || entry.client != allocation.client {
                    problems.append("allocation \(index) relay \(relay.family) socket entry mismatch")
                }
                if socketOwners.updateValue((id, relay.family), forKey: socket) != nil {
                    problems.append("socket \(socket) claimed twice")
                }
                if case .active = allocation.lifecycle, !relay.isOpen {
                    problems.append("active allocation \(index) has an unopened relay")
                }
            }
        }
        if usernames != perUsername { problems.append("per-username counts \(perUsername) != \(usernames)") }
        if byClient.count != slots.count - freeSlots.count { problems.append("client index size") }
        if Set(freeSlots).count != freeSlots.count { problems.append("a free slot listed twice") }
        for slot in freeSlots where Int(slot) >= slots.count || slots[Int(slot)] != nil {
            problems.append("free slot \(slot) is in use")
        }
        var free = 0
        for (index, entry) in sockets.enumerated() {
            switch entry.state {
            case .free: free += 1
            case .orphaned: break
            case .opening, .open:
                if socketOwners[index] == nil { problems.append("socket \(index) \(entry.state) without its allocation") }
            }
        }
        if free != freeSockets.count { problems.append("free sockets \(free) != free list \(freeSockets.count)") }
        return problems
    }
}
