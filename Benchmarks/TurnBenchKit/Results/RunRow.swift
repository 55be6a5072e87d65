import Foundation

/// One load run flattened to the figures `compare` aggregates: one CSV line.
public struct RunRow: Codable, Sendable, Equatable {
    public var server: String
    /// Round number (0 is the warm-up round `compare` discards).
    public var round: Int
    /// Target total packet rate; 0 means flat out.
    public var targetPPS: Double
    public var offeredPPS: Double
    public var deliveredPPS: Double
    public var lossRatio: Double
    public var relayCPUMicrosPerPacket: Double?
    public var p50Micros: Double
    public var p99Micros: Double
    public var benchCPUSeconds: Double
    public var seconds: Double

    public init(server: String, round: Int, targetPPS: Double, offeredPPS: Double, deliveredPPS: Double, lossRatio: Double,
                relayCPUMicrosPerPacket: Double?, p50Micros: Double, p99Micros: Double, benchCPUSeconds: Double, seconds: Double) {
        self.server = server
        self.round = round
        self.targetPPS = targetPPS
        self.offeredPPS = offeredPPS
        self.deliveredPPS = deliveredPPS
        self.lossRatio = lossRatio
        self.relayCPUMicrosPerPacket = relayCPUMicrosPerPacket
        self.p50Micros = p50Micros
        self.p99Micros = p99Micros
        self.benchCPUSeconds = benchCPUSeconds
        self.seconds = seconds
    }

    public static let csvHeader =
        "server,round,target_pps,offered_pps,delivered_pps,loss_ratio,relay_cpu_us_per_packet,p50_us,p99_us,bench_cpu_s,seconds"

    public var csvLine: String {
        [RunRow.escape(server), String(round), fmt(targetPPS), fmt(offeredPPS), fmt(deliveredPPS), fmt(lossRatio),
         relayCPUMicrosPerPacket.map(fmt) ?? "", fmt(p50Micros), fmt(p99Micros), fmt(benchCPUSeconds), fmt(seconds)]
            .joined(separator: ",")
    }

    public enum CSVError: Error, Equatable {
        case badHeader
        case badLine(Int)
    }

    public static func csv(_ rows: [RunRow]) -> String {
        ([csvHeader] + rows.map(\.csvLine)).joined(separator: "\n") + "\n"
    }

    /// Parses what `csv(_:)` writes. Server names may be quoted ("..." with "" for a quote).
    public static func parseCSV(_ text: String) throws(CSVError) -> [RunRow] {
        var lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map(String.init)
        guard let header = lines.first, header == csvHeader else { throw .badHeader }
        lines.removeFirst()
        var rows: [RunRow] = []
        for (i, line) in lines.enumerated() where !line.isEmpty {
            guard let f = splitFields(line), f.count == 11,
                  let round = Int(f[1]), let target = Double(f[2]), let offered = Double(f[3]),
                  let delivered = Double(f[4]), let loss = Double(f[5]),
                  let p50 = Double(f[7]), let p99 = Double(f[8]), let bench = Double(f[9]), let secs = Double(f[10])
            else { throw .badLine(i + 2) }
            let cpu: Double?
            if f[6].isEmpty { cpu = nil } else if let c = Double(f[6]) { cpu = c } else { throw .badLine(i + 2) }
            rows.append(RunRow(server: f[0], round: round, targetPPS: target, offeredPPS: offered, deliveredPPS: delivered,
                               lossRatio: loss, relayCPUMicrosPerPacket: cpu, p50Micros: p50, p99Micros: p99,
                               benchCPUSeconds: bench, seconds: secs))
        }
        return rows
    }

    static func escape(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static func splitFields(_ line: String) -> [String]? {
        var fields: [String] = []
        var cur = ""
        var quoted = false
        var chars = Array(line)[...]
        while let c = chars.popFirst() {
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { cur.append("\""); chars.removeFirst() } else { quoted = false }
                } else { cur.append(c) }
            } else if c == "\"" && cur.isEmpty {
                quoted = true
            } else if c == "," {
                fields.append(cur); cur = ""
            } else { cur.append(c) }
        }
        if quoted { return nil }
        fields.append(cur)
        return fields
    }
}

/// CSV number text: the shortest text that reads back as the same Double (lossless, locale independent).
func fmt(_ v: Double) -> String { v.description }
