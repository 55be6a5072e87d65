import Foundation

/// The whole machine's CPU time from /proc/stat's first ("cpu") line, in clock ticks.
public struct MachineCPUSample: Sendable, Equatable, Codable {
    public var user: UInt64 = 0, nice: UInt64 = 0, system: UInt64 = 0, idle: UInt64 = 0, iowait: UInt64 = 0
    public var irq: UInt64 = 0, softirq: UInt64 = 0, steal: UInt64 = 0

    public init() {}

    /// Parses the aggregate "cpu " line (user nice system idle iowait irq softirq steal …; guest
    /// time is already part of user and nice). Nil when it is missing or short.
    public init?(procStat text: String) {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let v = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().compactMap { UInt64($0) }
        guard v.count >= 7 else { return nil }
        user = v[0]; nice = v[1]; system = v[2]; idle = v[3]; iowait = v[4]; irq = v[5]; softirq = v[6]
        steal = v.count > 7 ? v[7] : 0
    }

    /// Ticks the processors were doing anything (user, system, IRQ, softirq; steal left out:
    /// time the hypervisor gave to someone else).
    public var busy: UInt64 { user + nice + system + irq + softirq }

    public static func - (a: Self, b: Self) -> Self {
        var d = Self()
        d.user = a.user &- b.user; d.nice = a.nice &- b.nice; d.system = a.system &- b.system
        d.idle = a.idle &- b.idle; d.iowait = a.iowait &- b.iowait; d.irq = a.irq &- b.irq
        d.softirq = a.softirq &- b.softirq; d.steal = a.steal &- b.steal
        return d
    }

    public static func current() -> Self? {
        (try? String(contentsOfFile: "/proc/stat", encoding: .utf8)).flatMap(Self.init(procStat:))
    }
}

/// Whether this kernel accounts IRQ and softirq time precisely (CONFIG_IRQ_TIME_ACCOUNTING=y):
/// without it /proc/stat's irq/softirq columns are tick samples and the time is also billed to
/// whichever task was interrupted.
public enum KernelAccounting {
    /// nil when the kernel configuration is not readable.
    public static func irqTimeAccounting(config text: String) -> Bool? {
        for line in text.split(separator: "\n") {
            if line == "CONFIG_IRQ_TIME_ACCOUNTING=y" { return true }
            if line == "# CONFIG_IRQ_TIME_ACCOUNTING is not set" { return false }
        }
        return nil
    }

    public static func current() -> Bool? {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let text = try? String(contentsOfFile: "/boot/config-\(release)", encoding: .utf8) {
            return irqTimeAccounting(config: text)
        }
        // /proc/config.gz needs gunzip: ask the shell tool rather than linking zlib.
        if FileManager.default.fileExists(atPath: "/proc/config.gz"),
           let out = try? LabShell.run("/bin/sh", ["-c", "zcat /proc/config.gz"]), out.status == 0 {
            return irqTimeAccounting(config: out.output)
        }
        return nil
    }
}

/// A BPF program's run-time statistics as `bpftool prog show -j` prints them (run_time_ns and
/// run_cnt appear only while kernel.bpf_stats_enabled is 1 and the program has run).
public struct BPFProgramStats: Sendable, Equatable, Codable {
    public var id: Int
    public var name: String
    public var runTimeNanoseconds: UInt64
    public var runCount: UInt64

    public init(id: Int, name: String, runTimeNanoseconds: UInt64, runCount: UInt64) {
        self.id = id
        self.name = name
        self.runTimeNanoseconds = runTimeNanoseconds
        self.runCount = runCount
    }

    /// One program object (`bpftool prog show id N -j`).
    public init?(bpftoolJSON text: String) {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
              let id = (o["id"] as? NSNumber)?.intValue else { return nil }
        self.id = id
        name = o["name"] as? String ?? ""
        runTimeNanoseconds = (o["run_time_ns"] as? NSNumber)?.uint64Value ?? 0
        runCount = (o["run_cnt"] as? NSNumber)?.uint64Value ?? 0
    }
}

/// The sink's counters (BPF/bench_sink.bpf.c), summed over CPUs, from `bpftool map dump -j`.
public struct SinkCounts: Sendable, Equatable, Codable {
    /// Index 0: datagrams that reached a peer (client → peer); 1: ChannelData that reached a
    /// client (peer → client).
    public var toPeerPackets: UInt64 = 0, toPeerBytes: UInt64 = 0
    public var toClientPackets: UInt64 = 0, toClientBytes: UInt64 = 0

    public init() {}

    /// Reads the BTF-formatted form ("formatted": {"key": K, "values": [{"cpu": C, "value":
    /// {"packets": P, "bytes": B}}]}) bpftool prints for the per-CPU array.
    public init?(bpftoolJSON text: String) {
        guard let entries = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]] else { return nil }
        var seen = 0
        for e in entries {
            guard let f = e["formatted"] as? [String: Any], let key = (f["key"] as? NSNumber)?.intValue,
                  let values = f["values"] as? [[String: Any]] else { return nil }
            var packets: UInt64 = 0, bytes: UInt64 = 0
            for v in values {
                guard let value = v["value"] as? [String: Any] else { return nil }
                packets &+= (value["packets"] as? NSNumber)?.uint64Value ?? 0
                bytes &+= (value["bytes"] as? NSNumber)?.uint64Value ?? 0
            }
            switch key {
            case 0: toPeerPackets = packets; toPeerBytes = bytes
            case 1: toClientPackets = packets; toClientBytes = bytes
            default: continue
            }
            seen += 1
        }
        guard seen == 2 else { return nil }
    }

    public var packets: UInt64 { toPeerPackets &+ toClientPackets }

    public static func - (a: Self, b: Self) -> Self {
        var d = Self()
        d.toPeerPackets = a.toPeerPackets &- b.toPeerPackets; d.toPeerBytes = a.toPeerBytes &- b.toPeerBytes
        d.toClientPackets = a.toClientPackets &- b.toClientPackets; d.toClientBytes = a.toClientBytes &- b.toClientBytes
        return d
    }
}

/// Where datagrams are dropped on the lab's path: veth queue and XDP counters (`ethtool -S`), and
/// the relay namespace's UDP counters (/proc/net/snmp).
public enum DropCounters {
    /// The "name: value" lines of `ethtool -S` whose name says drop or error.
    public static func ethtool(_ text: String) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let v = UInt64(parts[1].trimmingCharacters(in: .whitespaces)) else { continue }
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            if name.contains("drop") || name.contains("error") { out[name] = v }
        }
        return out
    }

    /// The Udp error counters of /proc/net/snmp (a header line of names, then a line of values).
    public static func snmpUDP(_ text: String) -> [String: UInt64] {
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("Udp: ") }
        guard lines.count >= 2 else { return [:] }
        let names = lines[0].split(separator: " ").dropFirst(), values = lines[1].split(separator: " ").dropFirst()
        var out: [String: UInt64] = [:]
        for (n, v) in zip(names, values) where n.hasSuffix("Errors") || n == "NoPorts" {
            if let value = UInt64(v) { out["udp " + n] = value }
        }
        return out
    }

    /// `after − before` for every counter that grew.
    public static func growth(_ before: [String: UInt64], _ after: [String: UInt64]) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for (k, v) in after where v > (before[k] ?? 0) { out[k] = v - (before[k] ?? 0) }
        return out
    }

    /// "name=value; …", sorted by name.
    public static func text(_ counters: [String: UInt64]) -> String {
        counters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
    }
}
