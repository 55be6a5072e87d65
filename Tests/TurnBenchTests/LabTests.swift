import Foundation
import Testing
@testable import TurnBenchKit

// MARK: - Traffic order

@Test(arguments: [3, 4, 1000, 1001])
func interleavedCycleNeverRepeatsAFlowOrAnAllocation(allocations n: Int) {
    let cycle = TrafficOrder.cycle(allocations: n, workload: .interleaved)
    #expect(cycle.count == 2 * n)
    #expect(Set(cycle) == Set(0..<(2 * n)), "every flow of both directions exactly once")
    for k in 0..<cycle.count {
        let a = cycle[k], b = cycle[(k + 1) % cycle.count] // wrap-around included
        #expect(a != b)
        #expect(a / 2 != b / 2, "consecutive datagrams of one allocation at \(k)")
        #expect(a % 2 == k % 2, "directions alternate")
    }
}

@Test func interleavedCycleOfTwoAllocationsStillAlternatesFlows() {
    let cycle = TrafficOrder.cycle(allocations: 2, workload: .interleaved)
    #expect(Set(cycle) == [0, 1, 2, 3])
    for k in 0..<cycle.count { #expect(cycle[k] != cycle[(k + 1) % cycle.count]) }
}

@Test func burstyCycleSendsRunsOfNPerFlow() {
    let cycle = TrafficOrder.cycle(allocations: 5, workload: .bursty(burst: 8))
    #expect(cycle.count == 5 * 2 * 8)
    for start in stride(from: 0, to: cycle.count, by: 8) {
        #expect(Set(cycle[start..<(start + 8)]).count == 1, "a run of 8 of one flow at \(start)")
        #expect(cycle[start] != cycle[(start + 8) % cycle.count], "the next run is another flow")
    }
    let interleaved = TrafficOrder.cycle(allocations: 5, workload: .interleaved)
    #expect(stride(from: 0, to: cycle.count, by: 8).map { cycle[$0] } == interleaved)
}

@Test func clientToPeerCountMatchesCounting() {
    let cycle = TrafficOrder.cycle(allocations: 7, workload: .bursty(burst: 3))
    for sent in [0, 1, 5, 41, 42, 43, 100, 1000] {
        let counted = (0..<sent).filter { cycle[$0 % cycle.count] % 2 == 0 }.count
        #expect(TrafficOrder.clientToPeerCount(cycle: cycle, sent: UInt64(sent)) == UInt64(counted))
    }
}

@Test func workloadNamesRoundTrip() {
    #expect(LabWorkload("interleaved") == .interleaved)
    #expect(LabWorkload("bursty-64") == .bursty(burst: 64))
    #expect(LabWorkload("bursty-64")?.description == "bursty-64")
    #expect(LabWorkload("bursty-1") == nil)
    #expect(LabWorkload("bursty") == nil)
    #expect(LabWorkload("random") == nil)
}

// MARK: - Loss search

/// A relay that carries up to `capacity` packets/s and drops the excess; the generator tops out
/// at `ceiling`.
func simulate(capacity: Double, ceiling: Double, lossFloor: Double = 0, trials: Int) -> LossSearch {
    var s = LossSearch(maxTrials: trials)
    var steps = 0
    while let next = s.next(), steps < 50 {
        steps += 1
        let offered = min(next ?? ceiling, ceiling)
        let delivered = min(offered, capacity) * (1 - lossFloor)
        s.record(.init(targetPPS: next, offeredPPS: offered, deliveredPPS: delivered, loss: 1 - delivered / offered))
    }
    return s
}

@Test func lossSearchFindsTheCapacityFromBelowWithinItsTrials() throws {
    let s = simulate(capacity: 200_000, ceiling: 500_000, trials: 6)
    #expect(s.trials.count <= 6)
    #expect(s.trials.first?.targetPPS == nil, "flat out first")
    let best = try #require(s.best)
    #expect(best.loss < 0.01)
    #expect(best.deliveredPPS <= 200_000)
    #expect(best.deliveredPPS >= 180_000)
    #expect(!s.generatorBound)
}

@Test func lossSearchStopsWhenFlatOutPasses() {
    let s = simulate(capacity: 900_000, ceiling: 400_000, trials: 5)
    #expect(s.trials.count == 1)
    #expect(s.generatorBound)
    #expect(s.best?.deliveredPPS == 400_000)
}

@Test func lossSearchWithConstantLossEndsWithoutAResult() {
    let s = simulate(capacity: .infinity, ceiling: 300_000, lossFloor: 0.05, trials: 4)
    #expect(s.trials.count == 4)
    #expect(s.best == nil)
}

@Test func lossSearchStopsAtItsResolution() {
    var s = LossSearch(maxTrials: 12, resolution: 1.05)
    s.record(.init(targetPPS: nil, offeredPPS: 104_000, deliveredPPS: 90_000, loss: 0.13))
    s.record(.init(targetPPS: 100_000, offeredPPS: 100_000, deliveredPPS: 99_950, loss: 0.0005))
    #expect(s.next() == nil, "104k / 100k is within 5 %")
}

// MARK: - Stat parsing

@Test func machineCPUSampleParsesTheAggregateLine() throws {
    let text = """
    cpu  26766 5 3251 19790 359 7 125 27 0 0
    cpu0 13013 0 1628 10217 234 0 65 12 0 0
    intr 1 2 3
    """
    let s = try #require(MachineCPUSample(procStat: text))
    #expect(s.user == 26766 && s.nice == 5 && s.system == 3251 && s.idle == 19790 && s.iowait == 359)
    #expect(s.irq == 7 && s.softirq == 125 && s.steal == 27)
    #expect(s.busy == 26766 + 5 + 3251 + 7 + 125)
    var later = s
    later.softirq += 40
    later.idle += 100
    #expect((later - s).busy == 40)
    #expect((later - s).idle == 100)
    #expect(MachineCPUSample(procStat: "cpu0 1 2 3 4 5 6 7") == nil)
    #expect(MachineCPUSample(procStat: "cpu  1 2 3") == nil)
}

@Test func irqTimeAccountingFromTheKernelConfig() {
    #expect(KernelAccounting.irqTimeAccounting(config: "CONFIG_X=y\n# CONFIG_IRQ_TIME_ACCOUNTING is not set\n") == false)
    #expect(KernelAccounting.irqTimeAccounting(config: "CONFIG_IRQ_TIME_ACCOUNTING=y\n") == true)
    #expect(KernelAccounting.irqTimeAccounting(config: "CONFIG_HAVE_IRQ_TIME_ACCOUNTING=y\n") == nil)
}

@Test func sinkCountsSumOverCPUs() throws {
    // As bpftool 7 prints the per-CPU array with BTF (raw byte arrays shortened).
    let json = """
    [{"key":["0x00","0x00","0x00","0x00"],"values":[{"cpu":0,"value":["0x00"]},{"cpu":1,"value":["0x00"]}],
      "formatted":{"key":0,"values":[{"cpu":0,"value":{"packets":10,"bytes":1460}},{"cpu":1,"value":{"packets":5,"bytes":730}}]}},
     {"key":["0x01","0x00","0x00","0x00"],"values":[],
      "formatted":{"key":1,"values":[{"cpu":0,"value":{"packets":7,"bytes":1050}},{"cpu":1,"value":{"packets":0,"bytes":0}}]}}]
    """
    let c = try #require(SinkCounts(bpftoolJSON: json))
    #expect(c.toPeerPackets == 15 && c.toPeerBytes == 2190)
    #expect(c.toClientPackets == 7 && c.toClientBytes == 1050)
    #expect(c.packets == 22)
    var earlier = SinkCounts()
    earlier.toPeerPackets = 5
    #expect((c - earlier).packets == 17)
    #expect(SinkCounts(bpftoolJSON: "[]") == nil, "both entries are required")
    #expect(SinkCounts(bpftoolJSON: "not json") == nil)
}

@Test func schedstatRunTime() {
    #expect(ProcessStats.runNanoseconds(schedstatText: "72938035 27666993 407\n") == 72_938_035)
    #expect(ProcessStats.runNanoseconds(schedstatText: "") == nil)
    #expect(ProcessStats.runNanoseconds(schedstatText: "x 1 2") == nil)
    #expect(ProcessStats.timesScheduled(schedstatText: "72938035 27666993 407\n") == 407)
    #expect(ProcessStats.timesScheduled(schedstatText: "72938035 27666993") == nil)
    #expect(ProcessStats.timesScheduled(pid: getpid()).map { $0 > 0 } == true)
}

@Test func machineFigureOnlyOnAQuietMachine() {
    var t = labTrial("coturn", "interleaved", round: 0, delivered: 100_000, machine: 1.0, relayCPU: 0.5)
    t.machineCapacitySeconds = 4
    #expect(t.machineMicrosPerPacket == 10)
    t.backgroundBusySeconds = 1 // a quarter of the machine busy before the trial: other work
    #expect(t.machineMicrosPerPacket == nil)
    t.backgroundBusySeconds = 0
    t.machineBusySeconds = 3.9 // saturated
    #expect(t.machineMicrosPerPacket == nil)
}

@Test func bpfProgramStatsReadsRunTime() throws {
    let with = #"{"id":107,"type":"xdp","name":"turn_router","run_time_ns":123456,"run_cnt":1000,"jited":true}"#
    let s = try #require(BPFProgramStats(bpftoolJSON: with))
    #expect(s.id == 107 && s.name == "turn_router" && s.runTimeNanoseconds == 123_456 && s.runCount == 1000)
    // Without bpf_stats (or before the first run) bpftool leaves the fields out.
    let without = try #require(BPFProgramStats(bpftoolJSON: #"{"id":9,"name":"bench_sink"}"#))
    #expect(without.runCount == 0 && without.runTimeNanoseconds == 0)
}

// MARK: - Frames

@Test func framesCarryValidChecksumsAndTheSinksMagic() {
    let client = IPv4Endpoint(198, 18, 0, 2, port: 40_001), relay = IPv4Endpoint(198, 18, 0, 1, port: 3478)
    let payload = LabFrames.benchPayload(flow: 6, bytes: 100, channel: 0x4000)
    // RFC 8656 §12.4: channel number, then the length of the application data.
    #expect(Array(payload[0..<4]) == [0x40, 0x00, 0x00, 100])
    // bench_sink.bpf.c looks for "TRNB" as BenchPayload stores it, at offset 4 of ChannelData.
    #expect(Array(payload[4..<8]) == [0x42, 0x4E, 0x52, 0x54])
    let frame = LabFrames.udp4(sourceMAC: [2, 0, 0, 0, 0, 1], destinationMAC: [2, 0, 0, 0, 0, 2], source: client,
                               destination: relay, payload: payload)
    #expect(frame.count == 14 + 20 + 8 + 104)
    #expect(Array(frame[12..<14]) == [0x08, 0x00])
    let ip = Array(frame[14..<34])
    // RFC 791: the header checksum makes the one's-complement sum of the header all ones.
    #expect(LabFrames.onesComplementSum(ip) == 0xFFFF)
    #expect(ip[9] == 17 && ip[8] == 64)
    let udp = Array(frame[34...])
    let pseudo: [UInt8] = client.bytes + relay.bytes + [0, 17, UInt8(udp.count >> 8), UInt8(udp.count & 0xFF)]
    // RFC 768: summing pseudo-header, header (with the checksum) and data gives all ones.
    #expect(LabFrames.onesComplementSum(pseudo + udp) == 0xFFFF)
    #expect(Array(udp[0..<4]) == [0x9C, 0x41, 0x0D, 0x96])
    let peerData = LabFrames.benchPayload(flow: 7, bytes: 100, channel: nil)
    #expect(peerData.count == 100 && Array(peerData[0..<4]) == [0x42, 0x4E, 0x52, 0x54])
}

// MARK: - Table

func labTrial(_ relay: String, _ workload: String, round: Int, delivered: UInt64, machine: Double, relayCPU: Double) -> LabTrial {
    LabTrial(relay: relay, workload: workload, round: round, kind: .cpu, targetPPS: 100_000, sendSeconds: 2, sent: delivered,
             sentClientToPeer: delivered / 2, delivered: delivered, deliveredClientToPeer: delivered / 2, failedSendCalls: 0,
             relayCPUSeconds: relayCPU, relayNAPICPUSeconds: 0.1, sinkNAPICPUSeconds: 0, machineBusySeconds: machine,
             machineSoftirqSeconds: 0, backgroundBusySeconds: 0, machineCapacitySeconds: 10, generatorCPUSeconds: 0, generatorThreadCPUSeconds: 0.2, relayProgram: nil,
             sinkProgram: nil, loadAverage: "1 1 1")
}

@Test func labTableTakesMediansAndRatiosAgainstCoturn() throws {
    var report = LabReport(machine: Machine.current(), command: "t", configuration: ["workloads": "interleaved", "relays": "turn-relay-io-uring,coturn", "cpu_rate": "100000"],
                           irqTimeAccounting: false, bpfStatsEnabled: true, starts: [], trials: [], searches: [], errors: [])
    for (round, m) in [2.0, 1.0, 1.5].enumerated() {
        report.trials.append(labTrial("turn-relay-io-uring", "interleaved", round: round, delivered: 200_000, machine: m, relayCPU: 0.5))
        report.trials.append(labTrial("coturn", "interleaved", round: round, delivered: 200_000, machine: 4, relayCPU: 1.5))
        report.searches.append(LabSearchResult(relay: "turn-relay-io-uring", workload: "interleaved", round: round, deliveredPPS: 300_000 + Double(round), generatorBound: false, backPressured: false, trials: 5))
        report.searches.append(LabSearchResult(relay: "coturn", workload: "interleaved", round: round, deliveredPPS: 100_000, generatorBound: false, backPressured: false, trials: 5))
    }
    let table = LabTable(report: report)
    let relay = try #require(table.rows.first { $0.relay == "turn-relay-io-uring" })
    #expect(relay.machineMicros == 7.5, "median 1.5 s over 200,000 packets")
    #expect(table.machineRatio(relay) == 7.5 / 20)
    #expect(table.ppsRatio(relay) == 300_001.0 / 100_000)
    #expect(relay.relayAndNAPIMicros == 3.0)
    #expect(table.render().contains("| interleaved | turn-relay-io-uring | 3 | 300001 |"))
    #expect(LabTable.csv(report).split(separator: "\n").count == 1 + 6)
}

// MARK: - Drop counters

@Test func dropCountersFromEthtoolAndSNMP() {
    let ethtool = """
    NIC statistics:
         peer_ifindex: 2
         rx_queue_0_xdp_packets: 1
         rx_queue_0_drops: 17
         rx_queue_0_xdp_tx_errors: 3
         tx_queue_0_xdp_xmit: 0
    """
    #expect(DropCounters.ethtool(ethtool) == ["rx_queue_0_drops": 17, "rx_queue_0_xdp_tx_errors": 3])
    let snmp = """
    Ip: Forwarding DefaultTTL
    Ip: 1 64
    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
    Udp: 100 2 5 90 5 0 0 0 0
    UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
    UdpLite: 0 0 0 0 0 0 0 0 0
    """
    let udp = DropCounters.snmpUDP(snmp)
    #expect(udp["udp RcvbufErrors"] == 5 && udp["udp NoPorts"] == 2 && udp["udp InErrors"] == 5 && udp["udp InDatagrams"] == nil)
    #expect(DropCounters.growth(["a": 1, "b": 5], ["a": 4, "b": 5, "c": 2]) == ["a": 3, "c": 2])
    #expect(DropCounters.text(["b": 2, "a": 1]) == "a=1; b=2")
}
