import RelayCore
import RelayIO
import STUN
import Testing

/// The process-wide registry under concurrent use, as the workers' threads use it.
struct SharedReservationRegistryTests {
    /// Every token is claimed by exactly one of several concurrent claimants, and a withdraw racing
    /// the claims succeeds only for tokens nobody claimed: claim and withdraw are atomic.
    @Test func concurrentClaimsAndWithdrawsTakeEachTokenExactlyOnce() async {
        let tokens = 2000
        let claimants = 4
        let registry = SharedReservationRegistry(capacity: tokens)
        let owner = registry.join()
        let expiry = Instant(seconds: 1_000)
        for token in 1...tokens {
            let port = UInt16(40000 + token % 20000)
            #expect(registry.register(UInt64(token), ReservedPort(port: port, family: .ipv4, owner: owner), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered)
        }
        let members = (0..<claimants).map { _ in registry.join() }
        // Each claimant walks the tokens from a different start; the owner withdraws every third.
        let results = await withTaskGroup(of: [Int].self) { group in
            for (i, member) in members.enumerated() {
                group.addTask {
                    var won: [Int] = []
                    for k in 0..<tokens {
                        let token = (k + i * tokens / claimants) % tokens + 1
                        if registry.claim(UInt64(token), by: member, now: Instant(seconds: 1)) != nil { won.append(token) }
                    }
                    return won
                }
            }
            group.addTask {
                var withdrawn: [Int] = []
                for token in stride(from: 3, through: tokens, by: 3) where registry.withdraw(UInt64(token)) {
                    withdrawn.append(-token)
                }
                return withdrawn
            }
            var all: [Int] = []
            for await part in group { all += part }
            return all
        }
        #expect(results.count == tokens, "each token taken once, by a claim or the withdraw")
        #expect(Set(results.map(abs)).count == tokens)
        let claimed = results.filter { $0 > 0 }.count
        let snapshot = registry.snapshot
        #expect(snapshot.outstandingCount == 0)
        #expect(snapshot.lentCount == claimed)
    }

    @Test func theCapacityBoundsOutstandingReservations() {
        let registry = SharedReservationRegistry(capacity: 2)
        let owner = registry.join()
        let expiry = Instant(seconds: 100)
        #expect(registry.register(1, ReservedPort(port: 50001, family: .ipv4, owner: owner), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered)
        #expect(registry.register(2, ReservedPort(port: 50003, family: .ipv4, owner: owner), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered)
        #expect(registry.register(3, ReservedPort(port: 50005, family: .ipv4, owner: owner), username: "u", perUserLimit: .max, expiresAt: expiry) != .registered)
        // A claim frees a place.
        #expect(registry.claim(1, by: owner, now: Instant(seconds: 1)) != nil)
        #expect(registry.register(3, ReservedPort(port: 50005, family: .ipv4, owner: owner), username: "u", perUserLimit: .max, expiresAt: expiry) == .registered)
        #expect(registry.snapshot.lentCount == 0, "claimed by its owner: nothing lent")
    }
}
