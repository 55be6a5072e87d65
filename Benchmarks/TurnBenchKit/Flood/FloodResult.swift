import Foundation

/// The scenarios of `turn-bench flood`.
public enum FloodScenario: String, CaseIterable, Codable, Sendable {
    /// Unauthenticated Allocates from many distinct source address/port pairs, and from one
    /// address, while legitimate clients allocate and relay.
    case unauth
    /// Many clients behind one NAT address, each doing the full Allocate (401, then authenticated).
    case nat
    /// A small relay port range: allocate until 508, free, allocate again.
    case exhaust
    /// Relaying at a fixed rate, then again while the relay gets SIGHUP reloads.
    case reload
    /// ChannelData to unbound channels, peers without permission, oversize datagrams and a client
    /// that stops reading, while legitimate allocations relay.
    case junk
    /// Allocation churn at the highest rate, sampled every second.
    case churn
    /// Relaying at a fixed rate for a long time while fresh clients allocate and delete, sampled
    /// every second.
    case soak
    /// The soak over TURN-over-TLS clients, while fresh clients connect over TLS and TCP,
    /// allocate and go (most by closing the connection only), sampled every second.
    case streamSoak = "stream-soak"

    /// What a scenario sampled every second shows (the chart's title; its samples go to a CSV
    /// and an SVG), nil for a scenario that is not sampled.
    public var sampledActivity: String? {
        switch self {
        case .churn: "allocation churn"
        case .soak: "relaying (soak)"
        case .streamSoak: "TLS relaying, TLS/TCP client churn and TCP allocations (stream soak)"
        case .unauth, .nat, .exhaust, .reload, .junk: nil
        }
    }
}

public struct FloodConfiguration: Sendable {
    public var relayExecutable: String
    public var outputDirectory: String
    /// TURN port; /metrics on port + 4.
    public var port: UInt16 = 31_478
    public var relayPorts: ClosedRange<UInt16> = 25_000...29_999
    public var workers = 1
    /// Time bound of the flood or load phases (and the length of `churn`), seconds.
    public var seconds: Double = 5
    /// unauth: distinct source address/port pairs, the addresses they come from, and the
    /// requests of the one-address flood.
    public var sources = 100_000
    public var addresses = 100_000
    public var oneAddressRequests = 20_000
    /// unauth: Allocates per second in both floods (0: flat out).
    public var floodPerSecond: Double = 0
    /// nat: clients behind one address, and how long to wait for all of them.
    public var clients = 1_000
    public var natDeadlineSeconds: Double = 300
    /// nat: retransmission waits scaled by a random 1 ± this (0: all clients in lockstep).
    public var natJitter = 0.0
    /// exhaust: relay ports in the small range.
    public var exhaustPorts = 50
    /// reload: SIGHUPs during the second phase.
    public var reloads = 100
    /// Legitimate relaying alongside the floods: allocations, and packets per second in all.
    public var legitAllocations = 8
    public var legitPPS: Double = 4_000
    /// junk: include the oversize datagrams (9,000 and 65,000 bytes).
    public var junkOversize = true
    /// churn: allocations in flight, and the idle time sampled after it.
    public var churnWindow = 32
    public var settleSeconds: Double = 10
    /// stream-soak: the pause between one TCP allocation (RFC 6062) and the next.
    public var tcpAllocationPauseNanoseconds: UInt64 = 100_000_000
    public var showProgress = true

    public init(relayExecutable: String, outputDirectory: String) {
        self.relayExecutable = relayExecutable
        self.outputDirectory = outputDirectory
    }
}

/// One figure of a scenario: a machine key (for tests and JSON readers), a label, a value.
public struct FloodFigure: Codable, Sendable, Equatable {
    public var key: String
    public var label: String
    public var value: Double
    public var digits: Int

    public init(_ key: String, _ label: String, _ value: Double, digits: Int = 0) {
        self.key = key
        self.label = label
        self.value = value
        self.digits = digits
    }

    enum CodingKeys: String, CodingKey { case key, label, value, digits }

    /// JSON has no NaN (a figure that was never reached, e.g. "seconds until all" when some
    /// never got there): it is written as null and read back as NaN.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(key, forKey: .key)
        try c.encode(label, forKey: .label)
        try c.encode(value.isFinite ? value : nil, forKey: .value)
        try c.encode(digits, forKey: .digits)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        key = try c.decode(String.self, forKey: .key)
        label = try c.decode(String.self, forKey: .label)
        value = try c.decodeIfPresent(Double.self, forKey: .value) ?? .nan
        digits = try c.decode(Int.self, forKey: .digits)
    }

    public static func == (a: FloodFigure, b: FloodFigure) -> Bool {
        a.key == b.key && a.label == b.label && a.digits == b.digits && (a.value == b.value || (a.value.isNaN && b.value.isNaN))
    }
}

/// What one scenario measured with one relay setting.
public struct FloodResult: Codable, Sendable, Equatable {
    public var scenario: FloodScenario
    /// The relay arguments this run added to the defaults ("" for none).
    public var setting: String
    public var figures: [FloodFigure]
    /// The relay before the scenario, at its height, and after it.
    public var before: FloodSample
    public var peak: FloodSample?
    public var after: FloodSample
    /// Per-second samples (churn) or none.
    public var samples: [FloodSample]
    public var notes: [String]

    public init(scenario: FloodScenario, setting: String, figures: [FloodFigure], before: FloodSample, peak: FloodSample? = nil,
                after: FloodSample, samples: [FloodSample] = [], notes: [String] = []) {
        self.scenario = scenario
        self.setting = setting
        self.figures = figures
        self.before = before
        self.peak = peak
        self.after = after
        self.samples = samples
        self.notes = notes
    }

    public subscript(key: String) -> Double? { figures.first { $0.key == key }?.value }

    /// Markdown: a heading, the figures, then the relay's memory and descriptors.
    public func render() -> String {
        var l = ["### \(scenario.rawValue)\(setting.isEmpty ? " (defaults)" : " (`\(setting)`)")", "",
                 "| figure | value |", "|---|---:|"]
        for f in figures { l.append("| \(f.label) | \(group(f.value, f.digits)) |") }
        l.append("| relay RSS before → \(peak == nil ? "" : "peak → ")after, KiB | \(group(Double(before.rssKiB), 0)) → \(peak.map { group(Double($0.rssKiB), 0) + " → " } ?? "")\(group(Double(after.rssKiB), 0)) |")
        l.append("| relay open fds before → \(peak == nil ? "" : "peak → ")after | \(before.fds) → \(peak.map { "\($0.fds) → " } ?? "")\(after.fds) |")
        l.append("| relay allocations before → after | \(Int(before.metric("allocations"))) → \(Int(after.metric("allocations"))) |")
        let drops = after.metrics.keys.filter { $0.hasPrefix("drop_") }.sorted().compactMap { k -> String? in
            let d = after.metric(k) - before.metric(k)
            return d > 0 ? "\(k.dropFirst(5)) \(group(d, 0))" : nil
        }
        if !drops.isEmpty { l.append("| relay drops during the run (relay_drops_total) | \(drops.joined(separator: ", ")) |") }
        for n in notes { l.append(""); l.append(n) }
        return l.joined(separator: "\n")
    }
}

/// Everything one `turn-bench flood` invocation measured (flood.json).
public struct FloodReport: Codable, Sendable, Equatable {
    public var machine: Machine
    public var command: String
    public var results: [FloodResult]
    public var errors: [String]

    public init(machine: Machine, command: String, results: [FloodResult], errors: [String]) {
        self.machine = machine
        self.command = command
        self.results = results
        self.errors = errors
    }

    public func render() -> String {
        var out = ["Machine: \(machine.summary)", "", "Command: `\(command)`"]
        for r in results { out.append(""); out.append(r.render()) }
        if !errors.isEmpty { out.append(""); out.append("Errors:"); out += errors.map { "- " + $0 } }
        return out.joined(separator: "\n") + "\n"
    }
}

/// `v` with thousands separators (1,234,567) and `digits` decimals.
func group(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return "-" }
    let text = fixed(abs(v), digits)
    let parts = text.split(separator: ".", maxSplits: 1)
    var whole = String(parts[0])
    var grouped = ""
    while whole.count > 3 {
        grouped = "," + whole.suffix(3) + grouped
        whole = String(whole.dropLast(3))
    }
    return (v < 0 ? "-" : "") + whole + grouped + (parts.count > 1 ? "." + parts[1] : "")
}

extension FloodResult {
    /// The sampled scenarios: one line per sample (seconds, RSS KiB, fds, allocations active and
    /// created, allocation sockets, stream connections open).
    public func csv() -> String {
        var l = ["seconds,rss_kib,open_fds,allocations_active,allocations_created,allocation_sockets,stream_connections_open"]
        for s in samples {
            l.append("\(fixed(s.seconds, 1)),\(s.rssKiB),\(s.fds),\(Int(s.metric("allocations"))),\(Int(s.metric("created"))),\(Int(s.metric("sockets"))),\(Int(s.metric("streams_open")))")
        }
        return l.joined(separator: "\n") + "\n"
    }

    /// churn and soak: RSS, open descriptors, and allocations active and set up per second, over time.
    public func chart(title: String) -> SVGChart {
        func series(_ name: String, _ color: String, _ y: (FloodSample) -> Double) -> SVGChart.Series {
            SVGChart.Series(name: name, color: color, points: samples.map { (x: $0.seconds, y: y($0)) })
        }
        var rate: [(x: Double, y: Double)] = []
        for (a, b) in zip(samples, samples.dropFirst()) where b.seconds > a.seconds {
            rate.append((x: b.seconds, y: (b.metric("created") - a.metric("created")) / (b.seconds - a.seconds)))
        }
        return SVGChart(title: title, panels: [
            SVGChart.Panel(title: "Relay resident memory", xLabel: "seconds", yLabel: "VmRSS MiB",
                           series: [series("RSS", "#d62728") { Double($0.rssKiB) / 1024 }]),
            SVGChart.Panel(title: "Relay open file descriptors", xLabel: "seconds", yLabel: "descriptors",
                           series: [series("/proc/PID/fd", "#1f77b4") { Double($0.fds) }]),
            SVGChart.Panel(title: "Allocations", xLabel: "seconds", yLabel: "allocations",
                           series: [series("active", "#2ca02c") { $0.metric("allocations") },
                                    SVGChart.Series(name: "created per second", color: "#9467bd", points: rate)]
                               + (samples.contains { $0.metrics["streams_open"] ?? 0 > 0 }
                                   ? [series("stream connections open", "#ff7f0e") { $0.metric("streams_open") }] : [])),
        ])
    }
}
