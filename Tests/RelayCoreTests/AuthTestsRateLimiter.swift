import Testing
import TestSupport
import STUN
@testable import RelayCore

private let second: UInt64 = 1_000_000_000
private let millisecond: UInt64 = 1_000_000
private let t0: UInt64 = 5 * second

private func v4(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> IPAddress { .v4(IPv4Address(a, b, c, d)) }

/// How many of `count` requests at `now` the limiter allows.
private func burst(_ limiter: inout ChallengeRateLimiter, _ source: IPAddress, count: Int, at now: UInt64) -> Int {
    var allowed = 0
    for _ in 0 ..< count where limiter.allow(source: source, nowNanoseconds: now) { allowed += 1 }
    return allowed
}

private func expectBurst(_ limiter: inout ChallengeRateLimiter, _ source: IPAddress, count: Int, at now: UInt64, allowed: Int,
                         _ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
    let n = burst(&limiter, source, count: count, at: now)
    #expect(n == allowed, comment, sourceLocation: sourceLocation)
}

@Test func tenPerSecondPerSource() {
    var limiter = ChallengeRateLimiter()
    let a = v4(198, 51, 100, 1)
    expectBurst(&limiter, a, count: 10, at: t0, allowed: 10)
    expectBurst(&limiter, a, count: 1, at: t0, allowed: 0)
    expectBurst(&limiter, a, count: 1, at: t0 + 99 * millisecond, allowed: 0)
}

@Test func budgetRefills() {
    var limiter = ChallengeRateLimiter(perSecond: 10)
    let a = v4(198, 51, 100, 1)
    expectBurst(&limiter, a, count: 20, at: t0, allowed: 10)
    // One response per 100 ms at the sustained rate.
    expectBurst(&limiter, a, count: 5, at: t0 + 100 * millisecond, allowed: 1)
    expectBurst(&limiter, a, count: 5, at: t0 + 250 * millisecond, allowed: 1)
    // After a quiet second the full burst is back.
    expectBurst(&limiter, a, count: 20, at: t0 + 2 * second, allowed: 10)
    var slow = ChallengeRateLimiter(perSecond: 1)
    expectBurst(&slow, a, count: 3, at: t0, allowed: 1)
    expectBurst(&slow, a, count: 3, at: t0 + second - 1, allowed: 0)
    expectBurst(&slow, a, count: 3, at: t0 + second, allowed: 1)
}

@Test func differentSourcesAreIndependent() {
    var limiter = ChallengeRateLimiter()
    let a = v4(198, 51, 100, 1), b = v4(198, 51, 100, 2)
    let c: IPAddress = .v6(IPv6Address(high: 0x2001_0DB8_0000_0001, low: 1))
    expectBurst(&limiter, a, count: 15, at: t0, allowed: 10)
    expectBurst(&limiter, b, count: 15, at: t0, allowed: 10)
    expectBurst(&limiter, c, count: 15, at: t0, allowed: 10)
}

@Test func ipv6IsLimitedPerSlash64AndMappedIPv4SharesTheIPv4Budget() {
    var limiter = ChallengeRateLimiter()
    let host1: IPAddress = .v6(IPv6Address(high: 0x2001_0DB8_0000_0001, low: 1))
    let host2: IPAddress = .v6(IPv6Address(high: 0x2001_0DB8_0000_0001, low: 0xFFFF))
    let otherNet: IPAddress = .v6(IPv6Address(high: 0x2001_0DB8_0000_0002, low: 1))
    expectBurst(&limiter, host1, count: 6, at: t0, allowed: 6)
    expectBurst(&limiter, host2, count: 6, at: t0, allowed: 4, "same /64, same budget")
    expectBurst(&limiter, otherNet, count: 12, at: t0, allowed: 10)

    let v4Source = v4(203, 0, 113, 9)
    let mapped: IPAddress = .v6(IPv6Address(high: 0, low: 0xFFFF_CB00_7109))
    expectBurst(&limiter, v4Source, count: 7, at: t0, allowed: 7)
    expectBurst(&limiter, mapped, count: 7, at: t0, allowed: 3)
}

@Test func collidingSourceIsChargedToABusyOccupantAndTakesOverAQuietOne() {
    var limiter = ChallengeRateLimiter(perSecond: 10, tableSize: 1)
    let a = v4(198, 51, 100, 1), b = v4(198, 51, 100, 2)
    expectBurst(&limiter, a, count: 10, at: t0, allowed: 10)
    expectBurst(&limiter, b, count: 1, at: t0, allowed: 0, "b shares a's spent budget")
    // Once a's budget is full again, b takes the slot with a full budget of its own.
    expectBurst(&limiter, b, count: 15, at: t0 + second, allowed: 10)
}

/// A million rounds: on a thread of its own, not the cooperative pool the async suites share.
@Test(.dedicatedThread) func millionSpoofedSourcesKeepMemoryConstant() {
    var limiter = ChallengeRateLimiter(perSecond: 10, tableSize: 4096, seed: 0x5EED)
    #expect(limiter.memoryFootprintEntries == 4096)
    let victim = v4(192, 0, 2, 77)
    var victimAllowed = 0
    // One million distinct sources, 1 µs apart (one second of traffic); every 100th packet
    // carries the victim's address (a reflection attempt towards it).
    for i in 0 ..< 1_000_000 {
        let now = t0 + UInt64(i) * 1_000
        let spoofed: IPAddress = i % 2 == 0
            ? .v4(IPv4Address(0x0B00_0000 &+ UInt32(i)))
            : .v6(IPv6Address(high: 0x2400_0000_0000_0000 | UInt64(i) << 16, low: UInt64(i)))
        _ = limiter.allow(source: spoofed, nowNanoseconds: now)
        if i % 100 == 0 && limiter.allow(source: victim, nowNanoseconds: now) { victimAllowed += 1 }
    }
    #expect(limiter.memoryFootprintEntries == 4096)
    // Burst of 10 plus at most 10 refills in one second, whatever the spoofed traffic does.
    #expect(victimAllowed >= 10 && victimAllowed <= 20, "victim got \(victimAllowed)")
}

@Test func configurationIsClamped() {
    #expect(ChallengeRateLimiter(perSecond: 10, tableSize: 0).memoryFootprintEntries == 1)
    #expect(ChallengeRateLimiter(perSecond: 10, tableSize: -5).memoryFootprintEntries == 1)
    var zero = ChallengeRateLimiter(perSecond: 0)
    expectBurst(&zero, v4(8, 8, 8, 8), count: 3, at: t0, allowed: 1, "perSecond below 1 counts as 1")
}

@Test func extremeClockValuesDoNotTrap() {
    var limiter = ChallengeRateLimiter(perSecond: Int.max, tableSize: 8)
    let a = v4(8, 8, 8, 8)
    expectBurst(&limiter, a, count: 100, at: UInt64.max, allowed: 100)
    var normal = ChallengeRateLimiter()
    _ = burst(&normal, a, count: 20, at: UInt64.max)
    _ = burst(&normal, a, count: 20, at: 0)                // clock went back
    _ = burst(&normal, a, count: 20, at: UInt64.max - 1)
    #expect(normal.memoryFootprintEntries == 4096)
}

/// An office behind one NAT address: 1,000 clients join at once, each first Allocate answered 401.
/// With a burst of 1,000 all get their challenge at once; afterwards the address is held to the
/// sustained rate again, and the budget takes burst / rate seconds to refill.
@Test func aLargerBurstServesANATOfficeAtOnceAndKeepsTheSustainedRate() {
    let office = v4(203, 0, 113, 50)
    var old = ChallengeRateLimiter(perSecond: 10)
    expectBurst(&old, office, count: 1_000, at: t0, allowed: 10, "burst = rate: 990 clients wait")
    var limiter = ChallengeRateLimiter(perSecond: 10, burst: 1_000)
    expectBurst(&limiter, office, count: 1_000, at: t0, allowed: 1_000)
    expectBurst(&limiter, office, count: 100, at: t0, allowed: 0, "the burst is spent")
    // Then 10 a second, as before.
    expectBurst(&limiter, office, count: 100, at: t0 + second, allowed: 10)
    expectBurst(&limiter, office, count: 100, at: t0 + 2 * second, allowed: 10)
    // A flood from the address: over 10 more seconds at most 10 × 10 = 100 more.
    var flood = 0
    for ms in stride(from: 0, to: 10_000, by: 1) { flood += burst(&limiter, office, count: 1, at: t0 + 2 * second + UInt64(ms + 1) * millisecond) }
    #expect(flood == 100)
    // Quiet for 100 s (1,000 / 10 per second): the whole burst is back.
    expectBurst(&limiter, office, count: 2_000, at: t0 + 112 * second + 1, allowed: 1_000)
}

@Test func burstDefaultsToTheRateAndIsClamped() {
    let a = v4(198, 51, 100, 1)
    var defaulted = ChallengeRateLimiter(perSecond: 7, burst: nil)
    expectBurst(&defaulted, a, count: 20, at: t0, allowed: 7)
    var one = ChallengeRateLimiter(perSecond: 10, burst: 0)
    expectBurst(&one, a, count: 5, at: t0, allowed: 1, "burst below 1 counts as 1")
    expectBurst(&one, a, count: 5, at: t0 + 100 * millisecond, allowed: 1)
    var huge = ChallengeRateLimiter(perSecond: Int.max, burst: Int.max, tableSize: 4)
    expectBurst(&huge, a, count: 100, at: t0, allowed: 100, "overflow saturates")
}

/// The victim of a reflection attempt behind spoofed traffic gets at most burst + rate × time,
/// and the table stays fixed, with the larger burst too.
@Test(.dedicatedThread) func largerBurstStillBoundsAReflectionVictim() {
    var limiter = ChallengeRateLimiter(perSecond: 10, burst: 1_000, tableSize: 4096, seed: 0x5EED)
    let victim = v4(192, 0, 2, 77)
    var victimAllowed = 0
    // 200,000 spoofed sources over 2 s; every 10th packet carries the victim's address.
    for i in 0 ..< 200_000 {
        let now = t0 + UInt64(i) * 10_000
        _ = limiter.allow(source: .v4(IPv4Address(0x0B00_0000 &+ UInt32(i))), nowNanoseconds: now)
        if i % 10 == 0 && limiter.allow(source: victim, nowNanoseconds: now) { victimAllowed += 1 }
    }
    #expect(limiter.memoryFootprintEntries == 4096)
    // Burst plus at most 20 refills in two seconds; spoofed sources sharing its slot spend some of it.
    #expect(victimAllowed >= 900 && victimAllowed <= 1_000 + 20, "victim got \(victimAllowed)")
}
