import Foundation
import STUN
import Testing
@testable import TurnBenchKit

@Test func coreReportShowsMissingAllocationCountsAsUnavailable() throws {
    let r = CoreResult(
        fastPath: [CoreResult.FastPath(allocations: 1000, direction: .clientToPeer, batch: 64, packets: 6400, forwarded: 6400,
                                       nanosecondsPerPacket: 200, cpuNanosecondsPerPacket: 100, packetsPerSecond: 1e7,
                                       heapAllocationsPerPacket: nil)],
        slowPath: [CoreResult.SlowPath(request: "Refresh", requests: 10, succeeded: 10, requestsPerSecond: 1000,
                                       microsecondsPerRequest: 1000, wallMicrosecondsPerRequest: 1500, heapAllocationsPerRequest: 2)],
        errors: ["no malloc counter"])
    let text = Report.core(r)
    #expect(text.contains("| 1000 | client-to-peer | 64 | 6400 | 100.0 | 200.0 | 10000000 | n/a |"))
    #expect(text.contains("| Refresh | 10 | 10 | 1000 | 1000.00 | 1500.00 | 2.0 |"))
    #expect(text.contains("error: no malloc counter"))
    let back = try JSONResults.decode(CoreResult.self, from: try JSONResults.encode(r))
    #expect(back == r)
}

@Test func allocationRateResultRoundTripsAndReportsMemoryPerAllocation() throws {
    let r = AllocationRateResult(server: "x", churnWindow: 32, churnSeconds: 5, churnCompleted: 100, churnFailed: 1,
                                 churnChallenges: 100, churnPerSecond: 20, concurrent: 16384, concurrentSetupSeconds: 2,
                                 concurrentSetUp: 16384, concurrentFailed: 0, setupPerSecond: 8192, teardownPerSecond: 9000,
                                 setupLatency: .empty, relayRSSBeforeBytes: 1 << 20, relayRSSHeldBytes: 2 << 20,
                                 relayRSSPerAllocationBytes: 64, relayCPUMicrosPerSetup: 12.5, benchCPUMicrosPerSetup: 30, failures: ["setup: timeout": 1])
    let back = try JSONResults.decode(AllocationRateResult.self, from: try JSONResults.encode(r))
    #expect(back == r)
    let text = Report.allocationRate(r)
    #expect(text.contains("| relay RSS per allocation | 64 bytes |"))
    #expect(text.contains("| concurrent: set up per second | 8192 |"))
    #expect(text.contains("setup: timeout ×1"))
}

@Test func sourceAddressesStayOnLoopbackAndDiffer() {
    let a = sourceAddress(subnet: 10, index: 0, family: .ipv4)
    let b = sourceAddress(subnet: 10, index: 1, family: .ipv4)
    let c = sourceAddress(subnet: 11, index: 0, family: .ipv4)
    for x in [a, b, c] { #expect(x.ip.isLoopback) }
    #expect(Set([a, b, c]).count == 3)
    #expect(a.description == "127.10.0.0:0")
    #expect(sourceAddress(subnet: 200, index: 0x1_0203, family: .ipv4).description == "127.200.2.3:0")
    #expect(IPAddress.v4(IPv4Address(8, 8, 8, 8)).isLoopback == false)
}

@Test func allocationRateComparisonTakesMediansPerServer() {
    func r(_ server: String, _ setup: Double, _ rss: Double?) -> AllocationRateResult {
        AllocationRateResult(server: server, churnWindow: 32, churnSeconds: 1, churnCompleted: 1, churnFailed: 0, churnChallenges: 1,
                             churnPerSecond: setup / 2, concurrent: 10, concurrentSetupSeconds: 1, concurrentSetUp: 10,
                             concurrentFailed: 0, setupPerSecond: setup, teardownPerSecond: 1, setupLatency: .empty,
                             relayRSSBeforeBytes: nil, relayRSSHeldBytes: nil, relayRSSPerAllocationBytes: rss,
                             relayCPUMicrosPerSetup: nil, benchCPUMicrosPerSetup: nil, failures: [:])
    }
    let text = Report.allocationRateComparison([r("A", 100, 800), r("B", 10, 1600), r("A", 300, 1000), r("B", 30, 2000), r("A", 200, 900)],
                                               serverA: "A", serverB: "B")
    #expect(text.contains("Medians over 3 / 2 rounds"))
    #expect(text.contains("| concurrent: set up per second | 200 | 20 | 10.00× |"))
    #expect(text.contains("| relay RSS per allocation, bytes | 900 | 1800 | 0.50× |"))
    #expect(text.contains("| relay CPU per allocation set up, µs | - | - | - |"))
}
