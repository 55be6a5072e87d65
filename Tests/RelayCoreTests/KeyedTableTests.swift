import STUN
import Testing
import TestSupport
@testable import RelayCore

/// A key whose hash ignores the seed, so every key can be made to collide.
private struct StubbornKey: TableKey, Hashable {
    var id: Int
    var bucket: UInt64
    func tableHash(seed: UInt64) -> UInt64 { bucket }
}

@Suite(.dedicatedThread) struct KeyedTableTests {
    /// Random inserts, overwrites and removals agree with a Dictionary at every step, and every
    /// entry stays reachable within the probe bound.
    @Test func agreesWithDictionary() {
        var random = SplitMix64(seed: 42)
        var table = KeyedTable<ChannelKey, Int>(seed: random.next())
        var model: [ChannelKey: Int] = [:]
        func key(_ r: UInt64) -> ChannelKey {
            let ip: IPAddress = r & 1 == 0 ? .v4(IPv4Address(UInt32(truncatingIfNeeded: r >> 8) & 0xFF))
                                           : .v6(IPv6Address(high: 0x2001_0db8 << 32, low: r >> 40 & 0xFF))
            return ChannelKey(client: ClientSocket(TransportAddress(ip: ip, port: UInt16(truncatingIfNeeded: r >> 20) & 7)),
                              number: ChannelNumber(0x4000 | UInt16(truncatingIfNeeded: r >> 30) & 3))
        }
        for step in 0 ..< 20_000 {
            let r = random.next()
            let k = key(r)
            switch r >> 60 {
            case 0 ... 8:
                table[k] = step
                model[k] = step
            case 9 ... 13:
                #expect(table.removeValue(forKey: k) == model.removeValue(forKey: k))
            default:
                table[k] = nil
                model[k] = nil
            }
            #expect(table.count == model.count)
            if step % 1000 == 999 {
                for (k, v) in model { #expect(table[k] == v) }
            }
        }
        for (k, v) in model { #expect(table[k] == v) }
        // A key never inserted is absent.
        #expect(table[ChannelKey(client: ClientSocket(TransportAddress(ip: .v4(IPv4Address(0xDEAD_BEEF)), port: 1)),
                                 number: ChannelNumber(0x4000))] == nil)
    }

    /// Keys that all share one home slot whatever the seed: the table re-seeds, grows and finally
    /// lengthens its probes, and still finds and removes every key.
    @Test func collidingKeysStayCorrect() {
        var table = KeyedTable<StubbornKey, Int>(seed: 7)
        for i in 0 ..< 100 { table[StubbornKey(id: i, bucket: 3)] = i }
        #expect(table.count == 100)
        #expect(table.reseeds > 0)
        #expect(table.maxProbe >= 100)
        for i in 0 ..< 100 { #expect(table[StubbornKey(id: i, bucket: 3)] == i) }
        for i in stride(from: 0, to: 100, by: 2) { #expect(table.removeValue(forKey: StubbornKey(id: i, bucket: 3)) == i) }
        for i in 0 ..< 100 { #expect(table[StubbornKey(id: i, bucket: 3)] == (i % 2 == 0 ? nil : i)) }
        #expect(table.count == 50)
    }

    /// Well-spread keys: the default probe bound is never lengthened.
    @Test func spreadKeysKeepTheProbeBound() {
        var table = KeyedTable<ChannelKey, Int>(seed: 0x1234_5678_9ABC_DEF0)
        for i in 0 ..< 10_000 {
            let address = TransportAddress(ip: .v4(IPv4Address(0x0A00_0000 | UInt32(i))), port: 40_000)
            table[ChannelKey(client: ClientSocket(address), number: ChannelNumber(0x4000))] = i
        }
        #expect(table.count == 10_000)
        #expect(table.maxProbe == 32)
        for i in 0 ..< 10_000 {
            let address = TransportAddress(ip: .v4(IPv4Address(0x0A00_0000 | UInt32(i))), port: 40_000)
            #expect(table[ChannelKey(client: ClientSocket(address), number: ChannelNumber(0x4000))] == i)
        }
    }
}
