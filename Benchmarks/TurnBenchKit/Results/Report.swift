import Foundation

/// Human-readable text for results.
public enum Report {
    public static func load(_ r: LoadResult) -> String {
        var lines: [String] = []
        let target = r.targetPPS.map { "target \(Int($0)) pps" } ?? "flat out"
        lines.append("\(r.server): \(r.allocations) allocations, \(r.payloadBytes)-byte payloads, \(target), \(fixed(r.seconds, 2)) s")
        lines.append("| direction | offered pps | delivered pps | loss | dup | reordered | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for d in r.directions {
            lines.append("| \(d.direction.rawValue) | \(Int(d.offeredPPS)) | \(Int(d.deliveredPPS)) | \(fixed(d.lossRatio * 100, 3))% | \(d.duplicates) | \(d.reordered) | \(fixed(d.latency.p50, 1)) | \(fixed(d.latency.p90, 1)) | \(fixed(d.latency.p99, 1)) | \(fixed(d.latency.p999, 1)) | \(fixed(d.latency.max, 1)) |")
        }
        lines.append("| total | \(Int(r.offeredPPS)) | \(Int(r.deliveredPPS)) | \(fixed(r.lossRatio * 100, 3))% | | | | | \(fixed(r.p99Micros, 1)) | | |")
        var cpu = "bench CPU \(fixed(r.benchCPUSeconds, 2)) s"
        if let relay = r.relayCPUSeconds {
            cpu += ", relay CPU \(fixed(relay, 2)) s"
            if let per = r.relayCPUMicrosPerPacket { cpu += " = \(fixed(per, 3)) µs per relayed packet" }
        } else {
            cpu += " (relay CPU: give --relay-pid)"
        }
        if let h = r.benchHeapAllocations { cpu += "; load generator heap allocations during the run: \(h)" }
        lines.append(cpu)
        let sendErrors = r.directions.reduce(0) { $0 + $1.sendErrors }
        if sendErrors > 0 { lines.append("send errors (EAGAIN/ENOBUFS, not counted as sent): \(sendErrors)") }
        return lines.joined(separator: "\n")
    }
}

public enum JSONResults {
    public static func encode<T: Encodable>(_ value: T) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try e.encode(value)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        try JSONDecoder().decode(type, from: data)
    }
}
