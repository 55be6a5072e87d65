import Testing
import TestSupport
@testable import RelayCore
import STUN

/// `maxAllocationsPerUsername` and `maxAllocations` count every server of a process (one per
/// worker) through one shared `AllocationQuota`: which server a client's socket hashes to does not
/// decide which allocation is refused, and a place comes back when an allocation ends on any server.
@Suite struct ServerQuotaTests {
    /// Two servers ("workers") sharing one quota, on disjoint port slices.
    final class Pair {
        let quota = UnsharedAllocationQuota()
        let a: Harness
        let b: Harness

        init(perUser: Int = 10, total: Int = 10_000) {
            a = Harness(seed: 1, quota: quota) {
                $0.portRange = 50000...50099
                $0.maxAllocationsPerUsername = perUser
                $0.maxAllocations = total
            }
            b = Harness(seed: 2, quota: quota) {
                $0.portRange = 50100...50199
                $0.maxAllocationsPerUsername = perUser
                $0.maxAllocations = total
            }
        }
    }

    static func client(_ n: UInt16) -> TransportAddress { TransportAddress(ip: Addr.client.ip, port: 1000 + n) }

    /// The Allocate's answer on `h` (the sockets opened when it asks for them): the error code, or
    /// nil for a success.
    func allocate(_ h: Harness, _ client: TransportAddress, as credentials: Credentials = .alice, id: UInt8) throws -> Int? {
        let request = message(.allocate, id: transactionID(id), auth: RequestAuth(credentials: credentials, nonce: try h.nonce(for: client))) {
            $0.appendRequestedTransport(17)
        }
        var out = h.receive(request, from: client)
        if !out.opens.isEmpty { out = h.answer(out.opens) }
        let response = try #require(out.only)
        return errorCode(response.bytes)
    }

    @Test func perUserQuotaCountsBothServersAndComesBackWhenAnAllocationEnds() throws {
        let pair = Pair(perUser: 3)
        #expect(try allocate(pair.a, Self.client(1), id: 1) == nil)
        #expect(try allocate(pair.a, Self.client(2), id: 2) == nil)
        #expect(try allocate(pair.b, Self.client(3), id: 3) == nil)
        // Full on both servers, although each holds fewer than 3.
        #expect(try allocate(pair.b, Self.client(4), id: 4) == 486)
        #expect(try allocate(pair.a, Self.client(5), id: 5) == 486)
        #expect(pair.a.server.statistics.responses.quotaReached486 == 1)
        #expect(pair.b.server.statistics.responses.quotaReached486 == 1)
        // Another user is not affected.
        #expect(try allocate(pair.b, Self.client(6), as: .bob, id: 6) == nil)
        #expect(pair.quota.table.count(of: "alice") == 3 && pair.quota.table.count(of: "bob") == 1)

        // Refresh with lifetime 0 on A gives a place back that B can use.
        let refreshed = try pair.a.refresh(lifetime: 0, client: Self.client(1), id: 7)
        #expect(errorCode(try #require(refreshed.only).bytes) == nil)
        #expect(pair.quota.table.count(of: "alice") == 2)
        #expect(try allocate(pair.b, Self.client(4), id: 8) == nil)
        #expect(try allocate(pair.b, Self.client(9), id: 9) == 486)

        // Expiry on A gives its last one back.
        pair.a.advance(seconds: 601)
        #expect(pair.a.server.allocationCount == 0)
        #expect(pair.quota.table.count(of: "alice") == 2)
        #expect(try allocate(pair.b, Self.client(9), id: 10) == nil)
        #expect(pair.quota.table.count(of: "alice") == 3)
    }

    @Test func aFailedOpenGivesItsPlaceBack() throws {
        let pair = Pair(perUser: 1)
        let client = Self.client(1)
        let request = message(.allocate, id: transactionID(1), auth: RequestAuth(credentials: .alice, nonce: try pair.a.nonce(for: client))) {
            $0.appendRequestedTransport(17)
        }
        var opens = pair.a.receive(request, from: client).opens
        #expect(pair.quota.table.count(of: "alice") == 1)
        var answer = Outputs()
        for _ in 0 ..< 8 where !opens.isEmpty {
            answer = pair.a.answer(opens, with: .failed(errno: 98))
            opens = answer.opens
        }
        #expect(errorCode(try #require(answer.only).bytes) == 508)
        #expect(pair.quota.table.count(of: "alice") == 0)
        #expect(try allocate(pair.b, Self.client(2), id: 2) == nil)
    }

    @Test func aRequestRefusedAfterTheQuotaCheckGivesItsPlaceBack() throws {
        // One port per server: the second Allocate on A passes the quota, then finds no port (508).
        let quota = UnsharedAllocationQuota()
        let a = Harness(seed: 1, quota: quota) { $0.portRange = 50000...50000; $0.maxAllocationsPerUsername = 2 }
        #expect(try allocate(a, Self.client(1), id: 1) == nil)
        #expect(try allocate(a, Self.client(2), id: 2) == 508)
        #expect(quota.table.count(of: "alice") == 1)
    }

    @Test func totalCountsBothServers() throws {
        let pair = Pair(total: 2)
        #expect(try allocate(pair.a, Self.client(1), id: 1) == nil)
        #expect(try allocate(pair.b, Self.client(2), as: .bob, id: 2) == nil)
        #expect(try allocate(pair.a, Self.client(3), as: .bob, id: 3) == 508)
        #expect(try allocate(pair.b, Self.client(4), id: 4) == 508)
        #expect(pair.quota.table.total == 2)
    }
}
