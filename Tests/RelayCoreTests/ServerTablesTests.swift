import Testing
import TestSupport
@testable import RelayCore
import STUN

/// The server's building blocks: the timer heap, the port allocator, the retransmission cache.
@Suite(.dedicatedThread) struct ServerTablesTests {
    @Test func timerQueueMatchesASortedReferenceUnderRandomOperations() {
        var random = SplitMix64(seed: 5)
        var queue = TimerQueue()
        var live: [TimerID: (deadline: UInt64, target: TimerTarget)] = [:]
        var now: UInt64 = 0
        for step in 0..<20_000 {
            switch random.next() % 5 {
            case 0, 1:
                let deadline = now + random.next() % 1000
                let target = TimerTarget.reservation(UInt64(step))
                let id = queue.schedule(target, at: Instant(nanoseconds: deadline))
                #expect(live[id] == nil)
                live[id] = (deadline, target)
            case 2:
                if let id = live.keys.randomElement(using: &random) {
                    let deadline = now + random.next() % 1000
                    queue.reschedule(id, at: Instant(nanoseconds: deadline))
                    live[id]?.deadline = deadline
                }
            case 3:
                if let id = live.keys.randomElement(using: &random) {
                    queue.cancel(id)
                    live[id] = nil
                }
            default:
                now += random.next() % 300
                var fired: [TimerTarget] = []
                while let target = queue.popExpired(now: Instant(nanoseconds: now)) { fired.append(target) }
                let due = live.filter { $0.value.deadline <= now }
                #expect(Set(fired) == Set(due.map(\.value.target)))
                #expect(fired.count == due.count)
                for id in due.keys { live[id] = nil }
            }
            #expect(queue.count == live.count)
            #expect(queue.nextDeadline?.nanoseconds == live.values.map(\.deadline).min())
        }
    }

    @Test func timersFireInDeadlineOrder() {
        var queue = TimerQueue()
        for (i, d) in [50, 10, 40, 20, 30].enumerated() {
            _ = queue.schedule(.reservation(UInt64(i)), at: Instant(nanoseconds: UInt64(d)))
        }
        var order: [TimerTarget] = []
        while let t = queue.popExpired(now: Instant(nanoseconds: 100)) { order.append(t) }
        #expect(order == [1, 3, 4, 2, 0].map { TimerTarget.reservation(UInt64($0)) })
        #expect(queue.nextDeadline == nil)
        // Cancelling .none is a no-op (a fired timer's reference).
        queue.cancel(.none)
    }

    @Test func portAllocatorStaysInRangeAndFindsTheLastFreePort() {
        var random = SplitMix64(seed: 3)
        var ports = PortAllocator(range: 60000...60009)
        var taken: Set<UInt16> = []
        for _ in 0..<10 {
            let port = ports.choose(.init(families: [.ipv4]), using: &random)
            #expect(port.map { (60000...60009).contains($0) && !taken.contains($0) } == true)
            if let port { ports.markUsed(port, .ipv4); taken.insert(port) }
        }
        #expect(ports.choose(.init(families: [.ipv4]), using: &random) == nil)
        // The other family is independent.
        #expect(ports.choose(.init(families: [.ipv6]), using: &random) != nil)
        ports.release(60007, .ipv4)
        #expect(ports.choose(.init(families: [.ipv4]), using: &random) == 60007)
        ports.markUsed(60007, .ipv4)
        #expect(ports.choose(.init(families: [.ipv4], even: true), using: &random) == nil)
        ports.release(60004, .ipv4)
        ports.release(60005, .ipv4)
        #expect(ports.choose(.init(families: [.ipv4], even: true, reserveNext: true), using: &random) == 60004)
        #expect(ports.choose(.init(families: [.ipv4, .ipv6]), using: &random).map { [60004, 60005].contains($0) } == true)
        ports.markUsed(60005, .ipv6)
        #expect(ports.choose(.init(families: [.ipv4, .ipv6]), using: &random) == 60004)
    }

    @Test func transactionCacheIsBoundedAndExpires() {
        var cache = TransactionCache(capacity: 4, lifetimeSeconds: 40)
        let start = Instant(seconds: 1000)
        func key(_ n: UInt8) -> TransactionKey { TransactionKey(client: ClientSocket(Addr.client), transactionID: transactionID(n)) }
        for n in 0..<10 as Range<UInt8> {
            [n, n].withUnsafeBytes { cache.insert(key(n), response: $0, now: start) }
        }
        #expect(cache.count == 4)
        #expect(cache.lookup(key(5), now: start) == nil)
        #expect(cache.lookup(key(9), now: start) == [9, 9])
        #expect(cache.lookup(key(9), now: start.adding(seconds: 39)) == [9, 9])
        #expect(cache.lookup(key(9), now: start.adding(seconds: 40)) == nil)
        // Too large to remember: not cached.
        [UInt8](repeating: 0, count: TransactionCache.maxResponseBytes + 1).withUnsafeBytes { cache.insert(key(20), response: $0, now: start) }
        #expect(cache.lookup(key(20), now: start) == nil)
    }
}
