import STUN

/// What a timer expires. Keys name the entry in its table; the table entry holds the `TimerID`
/// back, so cancelling is exact and a fired timer never finds a stale target.
enum TimerTarget: Hashable {
    /// One relayed transport address of an allocation (RFC 8656 §6: "the time-to-expiry for each
    /// relayed transport address").
    case relay(AllocationID, AddressFamily)
    case permission(PermissionKey)
    case channel(ChannelKey)
    /// The 5-minute cooldown after a channel binding expired (RFC 8656 §12).
    case channelCooldown(ChannelKey)
    case reservation(UInt64)
    /// Ports claimed from other servers' reservations, to give back to the registry.
    case giveBackClaimedPorts
    /// An Allocate waiting for the shell to open its sockets.
    case pendingAllocation(AllocationID)
    /// A TCP allocation's peer data connection (RFC 6062): its outgoing connect, or its wait for a
    /// ConnectionBind, ran out of time.
    case tcpConnection(UInt32)
}

struct TimerID: Hashable {
    var index: Int32
    /// No timer: the entry's timer has fired (or was never scheduled). `cancel` ignores it.
    static let none = TimerID(index: -1)
}

/// A binary min-heap of deadlines with a handle per timer, so that `reschedule` and `cancel` are
/// O(log n) and `next` is O(1). Each live table entry owns exactly one timer: the heap never holds
/// stale entries, so its size is the number of live entries (bounded by the tables' quotas).
struct TimerQueue {
    private struct Slot {
        var deadline: Instant
        var target: TimerTarget
        /// Position in `heap`, or -1 when the slot is free.
        var heapIndex: Int
    }

    private var slots: [Slot] = []
    private var freeSlots: [Int32] = []
    /// Slot indices ordered as a binary min-heap by deadline.
    private var heap: [Int32] = []

    var count: Int { heap.count }

    var nextDeadline: Instant? {
        guard let top = heap.first else { return nil }
        return slots[Int(top)].deadline
    }

    mutating func schedule(_ target: TimerTarget, at deadline: Instant) -> TimerID {
        let index: Int32
        if let free = freeSlots.popLast() {
            index = free
            slots[Int(free)] = Slot(deadline: deadline, target: target, heapIndex: heap.count)
        } else {
            index = Int32(slots.count)
            slots.append(Slot(deadline: deadline, target: target, heapIndex: heap.count))
        }
        heap.append(index)
        siftUp(heap.count - 1)
        return TimerID(index: index)
    }

    mutating func reschedule(_ id: TimerID, at deadline: Instant) {
        let i = Int(id.index)
        precondition(slots[i].heapIndex >= 0, "rescheduling a cancelled timer")
        let old = slots[i].deadline
        slots[i].deadline = deadline
        if deadline < old { siftUp(slots[i].heapIndex) } else { siftDown(slots[i].heapIndex) }
    }

    func deadline(of id: TimerID) -> Instant {
        slots[Int(id.index)].deadline
    }

    mutating func cancel(_ id: TimerID) {
        guard id.index >= 0 else { return }
        let i = Int(id.index)
        let position = slots[i].heapIndex
        precondition(position >= 0, "cancelling a cancelled timer")
        removeAt(position)
        slots[i].heapIndex = -1
        freeSlots.append(id.index)
    }

    /// Removes and returns the earliest timer due at or before `now`.
    mutating func popExpired(now: Instant) -> TimerTarget? {
        guard let top = heap.first, slots[Int(top)].deadline <= now else { return nil }
        let target = slots[Int(top)].target
        removeAt(0)
        slots[Int(top)].heapIndex = -1
        freeSlots.append(top)
        return target
    }

    // MARK: - Heap

    private mutating func removeAt(_ position: Int) {
        let last = heap.count - 1
        if position != last {
            swapAt(position, last)
            heap.removeLast()
            // The moved element may need to go either way.
            siftDown(position)
            siftUp(position)
        } else {
            heap.removeLast()
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        slots[Int(heap[a])].heapIndex = a
        slots[Int(heap[b])].heapIndex = b
    }

    private func less(_ a: Int, _ b: Int) -> Bool {
        slots[Int(heap[a])].deadline < slots[Int(heap[b])].deadline
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(child, parent) else { break }
            swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let n = heap.count
        while true {
            let left = 2 * parent + 1
            guard left < n else { break }
            var smallest = left
            if left + 1 < n && less(left + 1, left) { smallest = left + 1 }
            guard less(smallest, parent) else { break }
            swapAt(smallest, parent)
            parent = smallest
        }
    }
}
