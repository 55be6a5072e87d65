import Foundation

/// Medians over rounds for each relay and workload, the ratios against coturn, and the files
/// `turn-bench lab` writes.
public struct LabTable: Sendable {
    public struct Row: Sendable, Equatable {
        public var workload: String
        public var relay: String
        public var rounds: Int
        public var deliveredPPS: Double?
        public var deliveredPPSRange: (Double, Double)?
        public var generatorBound: Bool
        /// Flat out passed while the relay's ring refused frames: the relay's own ceiling.
        public var passedUnderBackPressure: Bool
        public var cpuLoss: Double?
        public var relayMicros: Double?
        public var relayAndNAPIMicros: Double?
        public var machineMicros: Double?
        public var machineMicrosRange: (Double, Double)?
        public var programNanos: Double?
        public var generatorNanos: Double?
        public static func == (a: Row, b: Row) -> Bool { a.workload == b.workload && a.relay == b.relay }
    }

    public var rows: [Row]
    public var cpuRate: Double
    public var baseline: String

    public init(report: LabReport, baseline: String = LabRelayKind.coturn.rawValue) {
        cpuRate = Double(report.configuration["cpu_rate"] ?? "") ?? 0
        self.baseline = baseline
        var rows: [Row] = []
        let workloads = (report.configuration["workloads"] ?? "").split(separator: ",").map(String.init)
        let relays = (report.configuration["relays"] ?? "").split(separator: ",").map(String.init)
        for w in workloads {
            for r in relays {
                let cpu = report.trials.filter { $0.workload == w && $0.relay == r && $0.kind == .cpu }
                let searches = report.searches.filter { $0.workload == w && $0.relay == r }
                guard !cpu.isEmpty || !searches.isEmpty else { continue }
                let pps = searches.compactMap(\.deliveredPPS)
                let machine = cpu.compactMap(\.machineMicrosPerPacket)
                rows.append(Row(workload: w, relay: r, rounds: max(cpu.count, searches.count),
                                deliveredPPS: Summary.median(pps), deliveredPPSRange: pps.isEmpty ? nil : (pps.min()!, pps.max()!),
                                generatorBound: searches.contains { $0.generatorBound },
                                passedUnderBackPressure: searches.contains { $0.backPressured && !$0.generatorBound && $0.trials == 1 },
                                cpuLoss: Summary.median(cpu.map(\.loss)), relayMicros: Summary.median(cpu.compactMap(\.relayMicrosPerPacket)),
                                relayAndNAPIMicros: Summary.median(cpu.compactMap(\.relayAndNAPIMicrosPerPacket)),
                                machineMicros: Summary.median(machine), machineMicrosRange: machine.isEmpty ? nil : (machine.min()!, machine.max()!),
                                programNanos: Summary.median(cpu.compactMap(\.relayProgramNanosPerPacket)),
                                generatorNanos: Summary.median(cpu.compactMap(\.generatorNanosPerDatagram))))
            }
        }
        self.rows = rows
    }

    func base(_ row: Row) -> Row? { rows.first { $0.workload == row.workload && $0.relay == baseline } }

    /// Machine CPU per packet relative to the baseline relay in the same workload (below 1: cheaper).
    public func machineRatio(_ row: Row) -> Double? {
        guard let a = row.machineMicros, let b = base(row)?.machineMicros, b > 0 else { return nil }
        return a / b
    }

    /// Delivered rate at < 1 % loss relative to the baseline (above 1: more).
    public func ppsRatio(_ row: Row) -> Double? {
        guard let a = row.deliveredPPS, let b = base(row)?.deliveredPPS, b > 0 else { return nil }
        return a / b
    }

    /// Relay process + NAPI thread CPU per packet relative to the baseline (below 1: cheaper).
    public func napiRatio(_ row: Row) -> Double? {
        guard let a = row.relayAndNAPIMicros, let b = base(row)?.relayAndNAPIMicros, b > 0 else { return nil }
        return a / b
    }

    public func render() -> String {
        func f(_ v: Double?, _ d: Int) -> String { v.map { fixed($0, d) } ?? "-" }
        func range(_ r: (Double, Double)?, _ d: Int) -> String { r.map { "\(fixed($0.0, d))–\(fixed($0.1, d))" } ?? "-" }
        var s = "| workload | relay | rounds | delivered pps at < 1 % loss (median) | range | vs \(baseline) | machine − generator µs/pkt at \(Int(cpuRate)) pps | range | vs \(baseline) | relay process µs/pkt | relay + NAPI thread µs/pkt | vs \(baseline) | XDP program ns/pkt | loss at \(Int(cpuRate)) pps | generator ns/datagram |\n"
        s += "|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n"
        for r in rows {
            let pps = r.deliveredPPS.map { String(Int($0)) + (r.generatorBound ? " (generator-bound)" : "") + (r.passedUnderBackPressure ? " (flat out, relay ring full)" : "") } ?? "none"
            s += "| \(r.workload) | \(r.relay) | \(r.rounds) | \(pps) | \(range(r.deliveredPPSRange, 0)) | \(ppsRatio(r).map { fixed($0, 2) + "×" } ?? "-") | \(f(r.machineMicros, 2)) | \(range(r.machineMicrosRange, 2)) | \(machineRatio(r).map { fixed($0, 2) + "×" } ?? "-") | \(f(r.relayMicros, 2)) | \(f(r.relayAndNAPIMicros, 2)) | \(napiRatio(r).map { fixed($0, 2) + "×" } ?? "-") | \(f(r.programNanos, 0)) | \(r.cpuLoss.map { fixed($0 * 100, 2) + "%" } ?? "-") | \(f(r.generatorNanos, 0)) |\n"
        }
        return s
    }

    /// One line per trial.
    public static func csv(_ report: LabReport) -> String {
        var s = "relay,workload,round,kind,target_pps,send_seconds,sent,sent_c2p,delivered,delivered_c2p,offered_pps,delivered_pps,loss,relay_cpu_s,relay_napi_cpu_s,sink_napi_cpu_s,machine_busy_s,machine_irq_softirq_s,background_busy_s,machine_capacity_s,generator_cpu_s,generator_thread_cpu_s,relay_us_per_pkt,relay_napi_us_per_pkt,machine_us_per_pkt,xdp_ns_per_pkt,xdp_runs,generator_ns_per_datagram,failed_send_calls,load_average,drops\n"
        func o(_ v: Double?, _ d: Int) -> String { v.map { fixed($0, d) } ?? "" }
        for t in report.trials {
            s += [t.relay, t.workload, String(t.round), t.kind.rawValue, t.targetPPS.map { String(Int($0)) } ?? "0", fixed(t.sendSeconds, 3),
                  String(t.sent), String(t.sentClientToPeer), String(t.delivered), String(t.deliveredClientToPeer),
                  fixed(t.offeredPPS, 0), fixed(t.deliveredPPS, 0), fixed(t.loss, 5), o(t.relayCPUSeconds, 3),
                  fixed(t.relayNAPICPUSeconds, 3), fixed(t.sinkNAPICPUSeconds, 3), fixed(t.machineBusySeconds, 2),
                  fixed(t.machineSoftirqSeconds, 2), fixed(t.backgroundBusySeconds, 2), fixed(t.machineCapacitySeconds, 2), fixed(t.generatorCPUSeconds, 3), fixed(t.generatorThreadCPUSeconds, 3),
                  o(t.relayMicrosPerPacket, 3), o(t.relayAndNAPIMicrosPerPacket, 3), o(t.machineMicrosPerPacket, 3),
                  o(t.relayProgramNanosPerPacket, 1), t.relayProgram.map { String($0.runCount) } ?? "",
                  o(t.generatorNanosPerDatagram, 1), String(t.failedSendCalls), "\"\(t.loadAverage)\"", "\"\(DropCounters.text(t.drops))\""].joined(separator: ",") + "\n"
        }
        return s
    }

    /// Per workload: delivered vs offered over every trial; and machine CPU per packet vs offered.
    public static func chart(_ report: LabReport) -> SVGChart {
        let colors = ["turn-relay-xdp": "#2ca02c", "turn-relay-io-uring": "#d62728", "coturn": "#1f77b4"]
        let relays = (report.configuration["relays"] ?? "").split(separator: ",").map(String.init)
        let workloads = (report.configuration["workloads"] ?? "").split(separator: ",").map(String.init)
        var panels: [SVGChart.Panel] = []
        for w in workloads {
            panels.append(.init(title: "\(w): delivered vs offered", xLabel: "offered packets/s", yLabel: "delivered packets/s",
                                series: relays.map { r in
                                    .init(name: r, color: colors[r] ?? "#999", points: report.trials.filter { $0.relay == r && $0.workload == w && $0.kind != .calibration }
                                        .map { (x: $0.offeredPPS, y: $0.deliveredPPS) })
                                }, diagonal: true))
        }
        if let w = workloads.first {
            panels.append(.init(title: "\(w): relay + NAPI thread CPU per packet", xLabel: "offered packets/s", yLabel: "CPU µs / relayed packet",
                                series: relays.map { r in
                                    .init(name: r, color: colors[r] ?? "#999", points: report.trials.filter { $0.relay == r && $0.workload == w && $0.kind != .calibration && $0.loss < 0.5 }
                                        .compactMap { t in t.relayAndNAPIMicrosPerPacket.map { (x: t.offeredPPS, y: $0) } })
                                }))
        }
        return SVGChart(title: "turn-bench lab: \(report.configuration["allocations"] ?? "?") allocations, both directions, over veth", panels: panels)
    }

    public static func write(_ report: LabReport, to directory: String) throws -> LabTable {
        let table = LabTable(report: report)
        let dir = URL(fileURLWithPath: directory)
        try JSONResults.encode(report).write(to: dir.appendingPathComponent("results.json"), options: .atomic)
        try Data(csv(report).utf8).write(to: dir.appendingPathComponent("results.csv"), options: .atomic)
        var md = "Machine: \(report.machine.summary)\n\nCommand: `\(report.command)`\n\n" + table.render()
        md += "\n" + notes(report).map { "- " + $0 }.joined(separator: "\n") + "\n"
        if !report.errors.isEmpty { md += "\nErrors:\n" + report.errors.map { "- " + $0 }.joined(separator: "\n") + "\n" }
        try Data(md.utf8).write(to: dir.appendingPathComponent("table.md"), options: .atomic)
        try Data(chart(report).render().utf8).write(to: dir.appendingPathComponent("chart.svg"), options: .atomic)
        return table
    }

    /// What the reader needs to know to trust the figures.
    public static func notes(_ report: LabReport) -> [String] {
        var n: [String] = []
        switch report.irqTimeAccounting {
        case .some(true): n.append("IRQ time accounting is on: /proc/stat's irq/softirq time is exact and not billed to the interrupted task.")
        case .some(false): n.append("This kernel has no IRQ time accounting (CONFIG_IRQ_TIME_ACCOUNTING off): /proc/stat's irq/softirq columns are tick samples and softirq time is also billed to whichever task it interrupted. The lab therefore runs the veth receive paths in threaded NAPI (napi/IFACE-N kernel threads, whose CPU is read from /proc/PID/stat) so that they are billed neither to the generator nor to the relay; \"machine − generator\" = /proc/stat busy − generator process − the sink side's NAPI thread, and it includes whatever else ran on the machine.")
        case .none: n.append("Whether this kernel accounts IRQ time is unknown (no kernel config readable): the machine column may bill softirq time to the generator.")
        }
        n.append("The sink's NAPI thread (generator side) runs at real-time priority (SCHED_FIFO 50) so that the counting side does not drop what a relay delivers; the relay side's NAPI thread runs at normal priority, like the relays.")
        let cpuTrials = report.trials.filter { $0.kind == .cpu }
        n.append("Machine − generator figure valid (quiet machine) in \(cpuTrials.filter(\.machineIsQuiet).count) of \(cpuTrials.count) CPU trials. CPU times of the relay and the NAPI threads are sums of schedstat run time (ns) over their threads.")
        if !report.bpfStatsEnabled { n.append("kernel.bpf_stats_enabled could not be switched on: no BPF run times.") }
        let calib = report.trials.filter { $0.kind == .calibration }
        for w in Set(calib.map(\.workload)).sorted() {
            let c = calib.filter { $0.workload == w }
            if let m = Summary.median(c.map(\.offeredPPS)), let g = Summary.median(c.compactMap(\.generatorNanosPerDatagram)) {
                n.append("Generator alone (\(w), the sink dropping at the relay's end): \(Int(m)) pps flat out (median of \(c.count)), \(fixed(g, 0)) ns of CPU per datagram.")
            }
        }
        for s in report.starts where !s.available || !s.note.isEmpty {
            n.append("\(s.relay) round \(s.round + 1): \(s.available ? "" : "not measured: ")\(s.note)")
        }
        return n
    }
}

