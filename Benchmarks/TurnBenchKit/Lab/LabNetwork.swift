import Foundation
import Glibc

@_silgen_name("setns") private func c_setns(_ fd: Int32, _ nstype: Int32) -> Int32

/// The two-namespace lab of `scripts/netns-lab` plus what the benchmark adds: the counting sink
/// (BPF/bench_sink.bpf.c, pinned under /sys/fs/bpf/turnbench-NAME-*) on the generator's veth in
/// place of xdp_pass, GRO and threaded NAPI on both ends (so the veth receive work runs in
/// napi/IFACE-N kernel threads whose CPU time is readable, not in whichever task it interrupts).
public final class LabNetwork {
    public let name: String
    public let repositoryRoot: String
    public var relayNamespace: String { "\(name)-relay" }
    public var outNamespace: String { "\(name)-out" }
    public var relayInterface: String { "\(name)r" }
    public var outInterface: String { "\(name)o" }
    public var sinkProgramPin: String { "/sys/fs/bpf/turnbench-\(name)-sink" }
    public var sinkMapsPin: String { "/sys/fs/bpf/turnbench-\(name)-maps" }
    public static let relayIP: (UInt8, UInt8, UInt8, UInt8) = (198, 18, 0, 1)
    public static let clientIP: (UInt8, UInt8, UInt8, UInt8) = (198, 18, 0, 2)
    public static let peerIP: (UInt8, UInt8, UInt8, UInt8) = (198, 18, 0, 3)

    public private(set) var relayMAC: [UInt8] = []
    public private(set) var outMAC: [UInt8] = []
    private var savedBPFStats: String?
    private var isUp = false
    let ip: String, bpftool: String, nsenter: String

    public init(name: String, repositoryRoot: String) throws {
        guard name.range(of: "^[A-Za-z0-9]{1,8}$", options: .regularExpression) != nil else {
            throw LabShell.Failure(command: "lab", output: "lab name must be 1-8 letters or digits")
        }
        self.name = name
        self.repositoryRoot = repositoryRoot
        guard let ip = LabShell.which("ip"), let bpftool = LabShell.which("bpftool"), let nsenter = LabShell.which("nsenter") else {
            throw LabShell.Failure(command: "lab", output: "needs ip (iproute2), bpftool and nsenter (util-linux); scripts/install-deps test installs them")
        }
        self.ip = ip
        self.bpftool = bpftool
        self.nsenter = nsenter
    }

    /// Creates the lab, replaces xdp_pass on the generator's end with the sink, turns on GRO and
    /// threaded NAPI, and switches `bpf_stats_enabled` on (restored by `down`).
    public func up() throws {
        let sinkObject = repositoryRoot + "/.build-bpf/bench_sink.bpf.o"
        guard FileManager.default.fileExists(atPath: sinkObject) else {
            throw LabShell.Failure(command: "lab", output: "\(sinkObject) missing: run scripts/build-bpf")
        }
        try LabShell.check(repositoryRoot + "/scripts/netns-lab", ["up", name], seconds: 60)
        isUp = true
        removePins()
        try LabShell.check(bpftool, ["prog", "load", sinkObject, sinkProgramPin, "type", "xdp", "pinmaps", sinkMapsPin])
        try attachSink(namespace: outNamespace, interface: outInterface)
        try LabShell.check(ip, ["netns", "exec", relayNamespace, "ethtool", "-K", relayInterface, "gro", "on"])
        try setThreadedNAPI(namespace: relayNamespace, interface: relayInterface)
        relayMAC = try macAddress(namespace: relayNamespace, interface: relayInterface)
        outMAC = try macAddress(namespace: outNamespace, interface: outInterface)
        savedBPFStats = (try? String(contentsOfFile: "/proc/sys/kernel/bpf_stats_enabled", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        try? "1".write(toFile: "/proc/sys/kernel/bpf_stats_enabled", atomically: false, encoding: .utf8)
    }

    /// Deletes the namespaces (and with them the veth pair and its programs), the pins, and
    /// restores bpf_stats_enabled. Safe to call twice.
    public func down() {
        if let v = savedBPFStats {
            try? v.write(toFile: "/proc/sys/kernel/bpf_stats_enabled", atomically: false, encoding: .utf8)
            savedBPFStats = nil
        }
        guard isUp else { return }
        _ = try? LabShell.run(repositoryRoot + "/scripts/netns-lab", ["down", name])
        removePins()
        isUp = false
    }

    func removePins() {
        try? FileManager.default.removeItem(atPath: sinkProgramPin)
        try? FileManager.default.removeItem(atPath: sinkMapsPin)
    }

    /// Client source addresses beyond netns-lab's 198.18.0.2: 198.18.0.10 … 198.18.0.(9 + count)
    /// on the generator's end. A relay limits its 401 challenges per source address (turn-relay
    /// and coturn both at 10/s), so 1,000 allocations need many client addresses, as 1,000 real
    /// clients would have.
    public func addClientAddresses(_ count: Int) throws -> [(UInt8, UInt8, UInt8, UInt8)] {
        let n = min(max(count, 0), 240)
        guard n > 0 else { return [Self.clientIP] }
        let lines = (0..<n).map { "addr add 198.18.0.\(10 + $0)/24 dev \(outInterface)" }.joined(separator: "\n") + "\n"
        let file = NSTemporaryDirectory() + "turnbench-\(name)-addresses.ip"
        try lines.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        try LabShell.check(ip, ["-n", outNamespace, "-batch", file])
        return (0..<n).map { (198, 18, 0, UInt8(10 + $0)) }
    }

    /// Moves the calling thread (and threads and processes it starts later) into NAME-out.
    public func enterOutNamespace() throws {
        let fd = open("/var/run/netns/\(outNamespace)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LabShell.Failure(command: "open /var/run/netns/\(outNamespace)", output: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard c_setns(fd, 0x4000_0000 /* CLONE_NEWNET */) == 0 else {
            throw LabShell.Failure(command: "setns \(outNamespace)", output: String(cString: strerror(errno)))
        }
    }

    /// nsenter switches only the network namespace (`ip netns exec` also remounts /sys, which
    /// hides /sys/fs/bpf and its pins).
    func inNamespace(_ namespace: String, _ arguments: [String]) throws -> String {
        try LabShell.check(nsenter, ["--net=/var/run/netns/\(namespace)"] + arguments)
    }

    func attachSink(namespace: String, interface: String) throws {
        try inNamespace(namespace, [bpftool, "net", "attach", "xdpdrv", "pinned", sinkProgramPin, "dev", interface, "overwrite"])
        try setThreadedNAPI(namespace: namespace, interface: interface)
    }

    func setThreadedNAPI(namespace: String, interface: String) throws {
        try LabShell.check(ip, ["netns", "exec", namespace, "/bin/sh", "-c", "echo 1 > /sys/class/net/\(interface)/threaded"])
    }

    /// Calibration: the sink on the relay's end drops every frame the generator sends.
    public func attachSinkToRelaySide() throws { try attachSink(namespace: relayNamespace, interface: relayInterface) }

    /// Removes whatever XDP program is attached to the relay's end.
    public func detachRelaySide() throws {
        try inNamespace(relayNamespace, [bpftool, "net", "detach", "xdpdrv", "dev", relayInterface])
    }

    /// The XDP program attached to the relay's end (id, name), nil when none.
    public func relaySideProgram() -> (id: Int, name: String)? {
        guard let text = try? LabShell.check(ip, ["-n", relayNamespace, "-d", "-j", "link", "show", "dev", relayInterface]),
              let links = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]],
              let xdp = links.first?["xdp"] as? [String: Any], let prog = xdp["prog"] as? [String: Any],
              let id = (prog["id"] as? NSNumber)?.intValue else { return nil }
        return (id, prog["name"] as? String ?? "")
    }

    func macAddress(namespace: String, interface: String) throws -> [UInt8] {
        let text = try LabShell.check(ip, ["-n", namespace, "-j", "link", "show", "dev", interface])
        guard let links = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]],
              let address = links.first?["address"] as? String else {
            throw LabShell.Failure(command: "ip link show \(interface)", output: text)
        }
        let bytes = address.split(separator: ":").compactMap { UInt8($0, radix: 16) }
        guard bytes.count == 6 else { throw LabShell.Failure(command: "ip link show \(interface)", output: address) }
        return bytes
    }

    /// Drop and error counters of both veth ends (prefixed "relay " / "out ") and the relay
    /// namespace's UDP counters.
    public func dropCounters() -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for (side, ns, interface) in [("relay", relayNamespace, relayInterface), ("out", outNamespace, outInterface)] {
            if let text = try? LabShell.check(ip, ["netns", "exec", ns, "ethtool", "-S", interface]) {
                for (k, v) in DropCounters.ethtool(text) { out["\(side) \(k)"] = v }
            }
            if let text = try? LabShell.check(ip, ["-n", ns, "-s", "-j", "link", "show", "dev", interface]),
               let links = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [[String: Any]],
               let stats = links.first?["stats64"] as? [String: Any] {
                for direction in ["rx", "tx"] {
                    if let d = stats[direction] as? [String: Any], let v = (d["dropped"] as? NSNumber)?.uint64Value {
                        out["\(side) \(direction)_dropped"] = v
                    }
                }
            }
        }
        if let text = try? LabShell.check(ip, ["netns", "exec", relayNamespace, "cat", "/proc/net/snmp"]) {
            for (k, v) in DropCounters.snmpUDP(text) { out["relay " + k] = v }
        }
        return out
    }

    public func sinkCounts() -> SinkCounts? {
        (try? LabShell.check(bpftool, ["map", "dump", "pinned", sinkMapsPin + "/counts", "-j"])).flatMap(SinkCounts.init(bpftoolJSON:))
    }

    public func sinkStats() -> BPFProgramStats? {
        (try? LabShell.check(bpftool, ["prog", "show", "pinned", sinkProgramPin, "-j"])).flatMap(BPFProgramStats.init(bpftoolJSON:))
    }

    public func programStats(id: Int) -> BPFProgramStats? {
        (try? LabShell.check(bpftool, ["prog", "show", "id", String(id), "-j"])).flatMap(BPFProgramStats.init(bpftoolJSON:))
    }

    public var bpfStatsEnabled: Bool {
        (try? String(contentsOfFile: "/proc/sys/kernel/bpf_stats_enabled", encoding: .utf8))?.hasPrefix("1") ?? false
    }

    /// PIDs of the NAPI kernel threads of `interface` ("napi/IFACE-N").
    public static func napiThreads(interface: String) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var pids: [Int32] = []
        for e in entries {
            guard let pid = Int32(e),
                  let comm = try? String(contentsOfFile: "/proc/\(e)/comm", encoding: .utf8) else { continue }
            if comm.hasPrefix("napi/\(interface)-") { pids.append(pid) }
        }
        return pids
    }

    /// The sink's NAPI thread(s) at real-time priority (SCHED_FIFO 50): the counting side must not
    /// lose what the relay delivers. A veth has one 256-entry ring per queue and XDP_TX into it has
    /// no back-pressure, so a sink thread waiting for a core would drop the relay's output (seen as
    /// the relay end's rx_queue_0_xdp_tx_errors). Returns the PIDs set.
    @discardableResult
    public func prioritizeSinkNAPI() -> [Int32] {
        guard let chrt = LabShell.which("chrt") else { return [] }
        return Self.napiThreads(interface: outInterface).filter {
            (try? LabShell.run(chrt, ["-f", "-p", "50", String($0)]))?.status == 0
        }
    }

    /// CPU seconds of the NAPI threads of `interface` (0 when there are none).
    public static func napiCPUSeconds(interface: String) -> Double {
        napiThreads(interface: interface).compactMap(ProcessStats.preciseCPUSeconds(pid:)).reduce(0, +)
    }
}
