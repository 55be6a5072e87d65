import Foundation
import Glibc
import RelayCore
import RelayIO
import STUN
import TURNTestClient
import Testing
import TestSupport
@testable import InteropTestSupport

/// `--max-allocations-per-user` counts the whole process, not each worker: with two workers the
/// kernel's SO_REUSEPORT hash spreads a user's client sockets over both, and still exactly the
/// quota's number of allocations succeed, whichever sockets they come from.
@Suite(.serialized, .dedicatedThread)
struct AllocationQuotaTests {
    /// A client of `server` with `credential`, from its own address (127.0.2.`n`, an ephemeral
    /// port), so that neither the per-source challenge limit nor one 5-tuple hash decides anything.
    static func client(_ server: TurnServerUnderTest, _ credential: (username: String, password: String), _ n: Int) throws -> TestTURNClient {
        try TestTURNClient(server: TransportAddress(ip: .v4(.loopback), port: server.port),
                           username: credential.username, password: credential.password,
                           bind: TransportAddress(ip: .v4(IPv4Address(127, 0, 2, UInt8(n))), port: 0))
    }

    @Test func perUserQuotaIsExactAcrossTwoWorkers() throws {
        let server = try TurnServerUnderTest(.turnRelay, extraArguments: ["--workers", "2", "--max-allocations-per-user", "12"])
        defer { server.stop() }
        let credential = RESTCredential.make(secret: server.secret, ttlSeconds: 3600, id: "quota", nowUnixSeconds: UInt64(time(nil)))
        var clients: [TestTURNClient] = []
        var codes: [Int?] = []
        for n in 1 ... 16 {
            let client = try Self.client(server, credential, n)
            let response = try #require(client.allocate(), "client \(n): no answer")
            codes.append(response.errorCode)
            clients.append(client)
        }
        print("quota: answers \(codes.map { $0.map(String.init) ?? "ok" })")
        #expect(codes.prefix(12).allSatisfy { $0 == nil }, "the first 12 succeed")
        #expect(codes.dropFirst(12).allSatisfy { $0 == 486 }, "the 13th and later get 486")

        // One allocation ends (Refresh with lifetime 0): its place goes to the next Allocate,
        // whichever worker either lands on, and the one after that is refused again.
        // RFC 8656 §8.3: "If the client receives a 437 (Allocation Mismatch) error response to a
        // request to delete the allocation, then the allocation no longer exists and it should
        // consider its request as having effectively succeeded" (a retransmission answered after the first).
        let deleted = clients[0].refresh(lifetime: 0)
        #expect(deleted != nil && (deleted?.errorCode == nil || deleted?.errorCode == 437))
        let next = try Self.client(server, credential, 17)
        let nextCode = try #require(next.allocate()).errorCode
        print("quota: Refresh 0 answered \(deleted.map { $0.errorCode.map(String.init) ?? "ok" } ?? "nothing"), "
            + "the next Allocate \(nextCode.map(String.init) ?? "ok")")
        #expect(nextCode == nil)
        let another = try Self.client(server, credential, 18)
        #expect(try #require(another.allocate()).errorCode == 486)

        // Another username is not affected.
        let other = RESTCredential.make(secret: server.secret, ttlSeconds: 3600, id: "other", nowUnixSeconds: UInt64(time(nil)))
        #expect(try #require(Self.client(server, other, 19).allocate()).errorCode == nil)
    }
}
