import Foundation
import Testing
@testable import TurnBenchKit

func row(_ server: String, round: Int, target: Double, delivered: Double, loss: Double, cpu: Double?, p99: Double) -> RunRow {
    RunRow(server: server, round: round, targetPPS: target, offeredPPS: target == 0 ? delivered * 1.5 : target,
           deliveredPPS: delivered, lossRatio: loss, relayCPUMicrosPerPacket: cpu, p50Micros: p99 / 2, p99Micros: p99,
           benchCPUSeconds: 1, seconds: 5)
}

@Test func csvRoundTrip() throws {
    let rows = [
        row("turn-relay", round: 0, target: 1000, delivered: 999.5, loss: 0.0005, cpu: 1.25, p99: 80),
        row("coturn, \"4.6\"", round: 1, target: 0, delivered: 120_000, loss: 0.2, cpu: nil, p99: 9000.125),
    ]
    let text = RunRow.csv(rows)
    #expect(text.hasPrefix(RunRow.csvHeader + "\n"))
    let parsed = try RunRow.parseCSV(text)
    #expect(parsed == rows)
}

@Test func csvRejectsBadHeaderAndBadLines() {
    #expect(throws: RunRow.CSVError.badHeader) { try RunRow.parseCSV("a,b\n1,2\n") }
    #expect(throws: RunRow.CSVError.badLine(2)) { try RunRow.parseCSV(RunRow.csvHeader + "\nx,notanumber\n") }
}

@Test func loadResultJSONRoundTripAndDerivedFigures() throws {
    let lat = LatencySummary(count: 900, p50: 50, p90: 80, p99: 120, p999: 300, max: 900)
    let r = LoadResult(server: "coturn", allocations: 64, payloadBytes: 100, targetPPS: nil, seconds: 2,
                       directions: [
                           DirectionResult(direction: .clientToPeer, sent: 1000, sendErrors: 0, received: 900, duplicates: 2,
                                           reordered: 3, lost: 100, offeredPPS: 500, deliveredPPS: 450, latency: lat),
                           DirectionResult(direction: .peerToClient, sent: 1000, sendErrors: 1, received: 1000, duplicates: 0,
                                           reordered: 0, lost: 0, offeredPPS: 500, deliveredPPS: 500,
                                           latency: LatencySummary(count: 1000, p50: 40, p90: 60, p99: 200, p999: 250, max: 260)),
                       ],
                       benchCPUSeconds: 1.5, relayCPUSeconds: 0.019)
    let data = try JSONResults.encode(r)
    let back = try JSONResults.decode(LoadResult.self, from: data)
    #expect(back == r)
    #expect(r.sent == 2000)
    #expect(r.received == 1900)
    #expect(r.lossRatio == 0.05)
    #expect(r.deliveredPPS == 950)
    #expect(r.p99Micros == 200)
    #expect(abs((r.relayCPUMicrosPerPacket ?? 0) - 10) < 1e-9)
    let flat = r.row(round: 2)
    #expect(flat.targetPPS == 0)
    #expect(flat.round == 2)
    #expect(flat.p99Micros == 200)
}

@Test func comparisonTableTakesMediansAndDropsTheWarmUpRound() {
    var runs: [RunRow] = []
    // Round 0 is wildly off and must be discarded.
    runs.append(row("A", round: 0, target: 1000, delivered: 1, loss: 0.9, cpu: 100, p99: 1))
    runs.append(row("B", round: 0, target: 1000, delivered: 1, loss: 0.9, cpu: 100, p99: 1))
    for (i, d) in [1000.0, 990, 980].enumerated() {
        runs.append(row("A", round: i + 1, target: 1000, delivered: d, loss: 0, cpu: 2 + Double(i), p99: 100))
        runs.append(row("B", round: i + 1, target: 1000, delivered: d / 2, loss: 0.5, cpu: 8, p99: 400))
    }
    for i in 1...3 {
        runs.append(row("A", round: i, target: 0, delivered: 5000, loss: 0.005, cpu: 1, p99: 50))
        runs.append(row("B", round: i, target: 0, delivered: 2000, loss: 0.3, cpu: 4, p99: 500))
    }
    let t = ComparisonTable(runs: runs, serverA: "A", serverB: "B")
    #expect(t.rows.map(\.targetPPS) == [1000, 0])
    let r0 = t.rows[0]
    #expect(r0.a?.deliveredPPS == 990)
    #expect(r0.a?.rounds == 3)
    #expect(r0.b?.deliveredPPS == 495)
    #expect(r0.deliveredRatio == 2)
    #expect(r0.a?.relayCPUMicrosPerPacket == 3)
    #expect(r0.cpuRatio == 3.0 / 8.0)
    #expect(r0.p99Ratio == 0.25)
    // Best delivered under 1 % loss: A reaches 5000 (flat out, 0.5 % loss); B never stays under 1 %.
    #expect(t.bestDeliveredA == 5000)
    #expect(t.bestDeliveredB == nil)
    let text = t.render()
    #expect(text.contains("| 1000 |"))
    #expect(text.contains("| flat out |"))
    #expect(text.contains("2.00×"))
    #expect(text.contains("A 5000, B -"))
}

@Test func comparisonCellHasNoCPUWhenARoundLacksIt() {
    let runs = [row("A", round: 1, target: 10, delivered: 10, loss: 0, cpu: 1, p99: 1),
                row("A", round: 2, target: 10, delivered: 10, loss: 0, cpu: nil, p99: 1)]
    let t = ComparisonTable(runs: runs, serverA: "A", serverB: "B")
    #expect(t.rows.count == 1)
    #expect(t.rows[0].a?.relayCPUMicrosPerPacket == nil)
    #expect(t.rows[0].b == nil)
    #expect(t.rows[0].deliveredRatio == nil)
}

@Test func procStatParsing() {
    // Field 2 (comm) contains spaces and a parenthesis; utime = 1234, stime = 56.
    let stat = "4242 (turn (relay) x) S 1 4242 4242 0 -1 4194560 123 0 0 0 1234 56 0 0 20 0 3 0 100 1000 200"
    #expect(ProcessStats.cpuTicks(statText: stat) == 1290)
    #expect(ProcessStats.cpuTicks(statText: "garbage") == nil)
    #expect(ProcessStats.cpuTicks(statText: "1 (x) S 1 2") == nil)
    let status = "Name:\tturnserver\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n"
    #expect(ProcessStats.residentKiB(statusText: status) == 12345)
    #expect(ProcessStats.residentKiB(statusText: "Name: x\n") == nil)
}

@Test func payloadHeaderRoundTripAndRejectsForeignBytes() {
    var buf = [UInt8](repeating: 0xAA, count: 100)
    buf.withUnsafeMutableBytes { p in
        BenchPayload.write(to: p.baseAddress! + 1, flow: 7, sequence: 0x0102_0304_0506_0708, sentNanoseconds: 99)
    }
    buf.withUnsafeBytes { p in
        let h = BenchPayload.read(UnsafeRawBufferPointer(rebasing: p[1...]))
        #expect(h?.flow == 7)
        #expect(h?.sequence == 0x0102_0304_0506_0708)
        #expect(h?.sentNanoseconds == 99)
        #expect(BenchPayload.read(UnsafeRawBufferPointer(rebasing: p[0..<20])) == nil)
        #expect(BenchPayload.read(p) == nil) // starts with 0xAA, not the magic
    }
    #expect(BenchPayload.flow(allocation: 3, direction: .clientToPeer) == 6)
    #expect(BenchPayload.flow(allocation: 3, direction: .peerToClient) == 7)
}

@Test func restCredentialsFollowTheTURNRESTScheme() {
    let c = CredentialSource.restSecret("s3cret").credentials(index: 2, nowUnixSeconds: 1000, ttlSeconds: 60)
    #expect(c.username == "1060:bench2")
    // base64(HMAC-SHA1("s3cret", "1060:bench2")), computed independently with Python's hmac module.
    #expect(c.password == "hQLEMPnDxFRUnVehoPZuQk0GIrc=")
    #expect(CredentialSource.parseUser("alice:pw:with:colons") == .user(name: "alice", password: "pw:with:colons"))
    #expect(CredentialSource.parseUser(":x") == nil)
}
