import Foundation
import Glibc
import SocketAddressing
import STUN

/// The relays `turn-bench lab` compares.
public enum LabRelayKind: String, Codable, Sendable, CaseIterable {
    case xdp = "turn-relay-xdp"
    case ioUring = "turn-relay-io-uring"
    case coturn = "coturn"
}

public struct LabConfiguration: Sendable {
    public var name = "bench"
    public var repositoryRoot: String
    public var relayExecutable: String
    public var coturnExecutable: String
    /// The XDP object turn-relay-xdp loads (turn-relay's --xdp-object).
    public var xdpObject: String
    public var relays: [LabRelayKind] = LabRelayKind.allCases
    public var allocations = 1000
    public var payloadBytes = 100
    public var workloads: [LabWorkload] = [.interleaved, .bursty(burst: 64)]
    public var rounds = 3
    public var seconds = 2.0
    /// The fixed offered rate at which CPU per packet is compared.
    public var cpuRate = 50_000.0
    public var searchTrials = 6
    public var batch = 64
    public var setupWindow = 64
    /// Client source addresses (198.18.0.10 …); allocations take them in turn.
    public var clientAddresses = 200
    public var outputDirectory: String
    public var showProgress = true
    public var command = ""

    public init(repositoryRoot: String, relayExecutable: String, coturnExecutable: String, outputDirectory: String) {
        self.repositoryRoot = repositoryRoot
        self.relayExecutable = relayExecutable
        self.coturnExecutable = coturnExecutable
        self.outputDirectory = outputDirectory
        xdpObject = repositoryRoot + "/.build-bpf/turn_router.bpf.o"
    }
}

/// One measured sending period.
public struct LabTrial: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case calibration, cpu, search }
    public var relay: String
    public var workload: String
    public var round: Int
    public var kind: Kind
    /// nil: flat out.
    public var targetPPS: Double?
    public var sendSeconds: Double
    public var sent: UInt64
    public var sentClientToPeer: UInt64
    public var delivered: UInt64
    public var deliveredClientToPeer: UInt64
    public var failedSendCalls: UInt64
    public var relayCPUSeconds: Double?
    public var relayNAPICPUSeconds: Double
    public var sinkNAPICPUSeconds: Double
    public var machineBusySeconds: Double
    public var machineSoftirqSeconds: Double
    /// /proc/stat busy time over the same window, estimated from an idle sample taken just
    /// before the trial (nothing sent): the other work on the machine.
    public var backgroundBusySeconds: Double
    /// Processors × the measured window (send + drain), seconds: the most /proc/stat can count.
    public var machineCapacitySeconds: Double
    public var generatorCPUSeconds: Double
    public var generatorThreadCPUSeconds: Double
    public var relayProgram: BPFProgramStats?
    public var sinkProgram: BPFProgramStats?
    public var loadAverage: String
    /// Drop and error counters that grew during the trial (veth queues, XDP, relay's UDP).
    public var drops: [String: UInt64] = [:]

    public var offeredPPS: Double { sendSeconds > 0 ? Double(sent) / sendSeconds : 0 }
    public var deliveredPPS: Double { sendSeconds > 0 ? Double(delivered) / sendSeconds : 0 }
    public var loss: Double { sent > 0 ? max(0, 1 - Double(delivered) / Double(sent)) : 1 }

    func perPacket(_ seconds: Double?) -> Double? {
        guard let seconds, delivered > 0 else { return nil }
        return seconds * 1e6 / Double(delivered)
    }
    /// The relay process's CPU (user + system, /proc/PID/stat) per relayed packet, µs.
    public var relayMicrosPerPacket: Double? { perPacket(relayCPUSeconds) }
    /// The relay process plus its veth's NAPI thread (receive path, XDP program), µs.
    public var relayAndNAPIMicrosPerPacket: Double? { perPacket(relayCPUSeconds.map { $0 + relayNAPICPUSeconds }) }
    /// The whole machine (/proc/stat busy, softirq included) minus the generator process, the
    /// sink side's NAPI thread and the background measured just before, per relayed packet, µs.
    /// Nil when that cannot be told apart from other work: the background took more than 20 % of
    /// the machine, or the machine was saturated (then the other work only yielded to the trial
    /// and subtracting it is meaningless).
    public var machineMicrosPerPacket: Double? {
        guard machineIsQuiet else { return nil }
        return perPacket(max(0, machineBusySeconds - generatorCPUSeconds - sinkNAPICPUSeconds - backgroundBusySeconds))
    }

    public var machineIsQuiet: Bool {
        machineCapacitySeconds > 0 && backgroundBusySeconds < 0.2 * machineCapacitySeconds
            && machineBusySeconds < 0.95 * machineCapacitySeconds
    }
    /// The relay's XDP program's run time per run (bpf_stats), ns.
    public var relayProgramNanosPerPacket: Double? {
        guard let p = relayProgram, p.runCount > 0 else { return nil }
        return Double(p.runTimeNanoseconds) / Double(p.runCount)
    }
    /// The generator's sending thread's CPU per datagram sent, ns.
    public var generatorNanosPerDatagram: Double? { sent > 0 ? generatorThreadCPUSeconds * 1e9 / Double(sent) : nil }
}

/// What one relay start found: whether it ran, and with which data path.
public struct LabRelayStart: Codable, Sendable, Equatable {
    public var relay: String
    public var round: Int
    public var available: Bool
    /// Why the relay (or its XDP path) was not measured, or what it said about XDP.
    public var note: String
    public var setupSeconds: Double?
    public var xdpProgram: String?
}

public struct LabReport: Codable, Sendable {
    public var machine: Machine
    public var command: String
    public var configuration: [String: String]
    public var irqTimeAccounting: Bool?
    public var bpfStatsEnabled: Bool
    public var starts: [LabRelayStart]
    public var trials: [LabTrial]
    public var searches: [LabSearchResult]
    public var errors: [String]
}

public struct LabSearchResult: Codable, Sendable, Equatable {
    public var relay: String
    public var workload: String
    public var round: Int
    /// Best delivered rate among trials with < 1 % loss; nil when none passed.
    public var deliveredPPS: Double?
    public var generatorBound: Bool
    /// Flat out, the generator was held back (frames refused: the relay end's receive ring was
    /// full): the relay, not the generator, set that trial's rate.
    public var backPressured: Bool
    public var trials: Int
}

/// Runs `turn-bench lab`: lab up, relays one at a time in every round (each started, loaded and
/// stopped in turn), lab down.
public final class LabRunner {
    let c: LabConfiguration
    let net: LabNetwork
    let progress: ProgressLine
    var report: LabReport
    let secret = "lab-\(UInt32.random(in: 0...UInt32.max))"
    var clientIPs: [(UInt8, UInt8, UInt8, UInt8)] = [LabNetwork.clientIP]
    static let listenPort: UInt16 = 3478
    static let healthPort = 18_080
    static let channel: UInt16 = 0x4000

    public init(_ configuration: LabConfiguration) throws {
        c = configuration
        net = try LabNetwork(name: configuration.name, repositoryRoot: configuration.repositoryRoot)
        progress = ProgressLine(enabled: configuration.showProgress)
        report = LabReport(machine: Machine.current(), command: configuration.command, configuration: [
            "allocations": String(configuration.allocations), "payload_bytes": String(configuration.payloadBytes),
            "rounds": String(configuration.rounds), "seconds": String(configuration.seconds),
            "cpu_rate": String(Int(configuration.cpuRate)), "search_trials": String(configuration.searchTrials),
            "batch": String(configuration.batch), "workloads": configuration.workloads.map(\.description).joined(separator: ","),
            "relays": configuration.relays.map(\.rawValue).joined(separator: ","),
        ], irqTimeAccounting: KernelAccounting.current(), bpfStatsEnabled: false, starts: [], trials: [], searches: [], errors: [])
    }

    // MARK: - Interrupts

    nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []

    /// SIGINT/SIGTERM: stop the servers this process started (by PID), take the lab down, exit.
    func installInterruptHandler() {
        ChildProcesses.handlersInstalled = true // ours replaces the plain kill-and-exit handler
        let net = self.net
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler {
                for i in 0..<ChildProcesses.capacity where ChildProcesses.pids[i] > 0 { kill(ChildProcesses.pids[i], SIGTERM) }
                sleepNanoseconds(500_000_000)
                for i in 0..<ChildProcesses.capacity where ChildProcesses.pids[i] > 0 { kill(ChildProcesses.pids[i], SIGKILL) }
                net.down()
                writeStandardError("\nturn-bench lab: interrupted; servers stopped, lab \(net.name) taken down\n")
                exit(128 + sig)
            }
            s.resume()
            Self.signalSources.append(s)
        }
    }

    // MARK: - Run

    public func run() throws -> LabReport {
        installInterruptHandler()
        try net.up()
        defer { net.down() }
        clientIPs = try net.addClientAddresses(c.clientAddresses)
        try net.enterOutNamespace()
        raiseOpenFileLimit()
        report.bpfStatsEnabled = net.bpfStatsEnabled
        progress.log("lab \(net.name) up: \(net.relayNamespace) (\(net.relayInterface)) ↔ \(net.outNamespace) (\(net.outInterface), sink attached); bpf_stats \(report.bpfStatsEnabled ? "on" : "off"); IRQ time accounting \(report.irqTimeAccounting.map { $0 ? "on" : "off" } ?? "unknown")")
        for round in 0..<c.rounds {
            for workload in c.workloads { calibrate(workload: workload, round: round) }
            for kind in c.relays { runRelay(kind, round: round) }
        }
        return report
    }

    /// The generator alone: the sink on the relay's end drops every frame, flat out. Its
    /// delivered rate is the generator's ceiling.
    func calibrate(workload: LabWorkload, round: Int) {
        do {
            try net.attachSinkToRelaySide()
            defer { try? net.detachRelaySide() }
            var endpoints: [(client: IPv4Endpoint, peer: IPv4Endpoint, relayed: IPv4Endpoint)] = []
            for i in 0..<c.allocations {
                endpoints.append((IPv4Endpoint(198, 18, 0, 2, port: UInt16(30_000 + i)), IPv4Endpoint(198, 18, 0, 3, port: UInt16(40_000 + i)),
                                  IPv4Endpoint(198, 18, 0, 1, port: UInt16(50_000 + i))))
            }
            let cycle = TrafficOrder.cycle(allocations: c.allocations, workload: workload)
            let sender = try FrameSender(interface: net.outInterface, frames: frames(endpoints), cycle: cycle, batch: c.batch)
            let t = trial(sender, cycle: cycle, rate: nil, relay: "generator-only", workload: workload, round: round,
                          kind: .calibration, relayPID: nil, relayProgram: nil)
            progress.log("round \(round + 1) \(workload) generator alone: \(Int(t.offeredPPS)) pps sent, \(Int(t.deliveredPPS)) counted at the relay's end, \(t.generatorNanosPerDatagram.map { fixed($0, 0) } ?? "-") ns CPU per datagram")
        } catch {
            report.errors.append("round \(round) \(workload) calibration: \(error)")
        }
    }

    func runRelay(_ kind: LabRelayKind, round: Int) {
        var start = LabRelayStart(relay: kind.rawValue, round: round, available: false, note: "")
        defer { report.starts.append(start) }
        if let leftover = net.relaySideProgram() {
            report.errors.append("round \(round) before \(kind.rawValue): XDP program \(leftover.name) (id \(leftover.id)) still on \(net.relayInterface); detached")
            try? net.detachRelaySide()
        }
        let spec = serverSpec(kind, round: round)
        let server: ServerProcess
        do {
            server = try ServerProcess(spec: spec, logDirectory: c.outputDirectory)
        } catch {
            start.note = "could not start: \(error)"
            return
        }
        defer {
            server.stop()
            if let left = net.relaySideProgram() {
                report.errors.append("round \(round) \(kind.rawValue): XDP program \(left.name) still attached after the relay stopped; detached")
                try? net.detachRelaySide()
            }
        }
        guard server.waitReady(seconds: 10, from: .v4(IPv4Address(198, 18, 0, 2))) else {
            let log = logTail(spec.name)
            start.note = (kind == .xdp ? "xdp unavailable: " : "not ready: ") + (log.isEmpty ? "no answer to Binding on \(spec.listen)" : log)
            progress.log("round \(round + 1) \(kind.rawValue): \(start.note)")
            return
        }
        var relayProgram: Int?
        if kind == .xdp {
            guard let p = net.relaySideProgram() else {
                let said = xdpLines(spec.name) + readyz()
                start.note = "xdp unavailable: " + (said.isEmpty ? "turn-relay started but attached no XDP program to \(net.relayInterface)" : said)
                progress.log("round \(round + 1) \(kind.rawValue): \(start.note)")
                return
            }
            relayProgram = p.id
            start.xdpProgram = "\(p.name) (id \(p.id))"
            start.note = xdpLines(spec.name)
        }
        start.available = true
        do {
            let t0 = monotonicNanoseconds()
            let endpoints = try setUpAllocations(server: spec.listen)
            start.setupSeconds = Double(monotonicNanoseconds() - t0) / 1e9
            progress.log("round \(round + 1) \(kind.rawValue): PID \(server.pid), \(endpoints.endpoints.count) allocations with channels in \(fixed(start.setupSeconds ?? 0, 2)) s")
            defer { for fd in endpoints.fds { close(fd) } }
            // Binding thousands of channels may have grown the relay's route maps, which loads the
            // program again under a new id: measure the one attached now.
            if kind == .xdp, let now = net.relaySideProgram(), now.id != relayProgram {
                progress.log("round \(round + 1) \(kind.rawValue): XDP program id \(relayProgram.map(String.init) ?? "-") → \(now.id) (the route maps were resized)")
                start.xdpProgram = "\(now.name) (id \(now.id), after a resize of the route maps)"
                relayProgram = now.id
            }
            for workload in c.workloads {
                let cycle = TrafficOrder.cycle(allocations: endpoints.endpoints.count, workload: workload)
                let sender = try FrameSender(interface: net.outInterface, frames: frames(endpoints.endpoints), cycle: cycle, batch: c.batch)
                let cpu = trial(sender, cycle: cycle, rate: c.cpuRate, relay: kind.rawValue, workload: workload, round: round,
                                kind: .cpu, relayPID: server.pid, relayProgram: relayProgram)
                progress.log("round \(round + 1) \(workload) \(kind.rawValue) at \(Int(c.cpuRate)) pps: delivered \(Int(cpu.deliveredPPS)), loss \(fixed(cpu.loss * 100, 2))%, relay \(cpu.relayMicrosPerPacket.map { fixed($0, 2) } ?? "-") µs/pkt, +NAPI \(cpu.relayAndNAPIMicrosPerPacket.map { fixed($0, 2) } ?? "-"), machine \(cpu.machineMicrosPerPacket.map { fixed($0, 2) } ?? "-") µs/pkt, XDP \(cpu.relayProgramNanosPerPacket.map { fixed($0, 0) } ?? "-") ns")
                var search = LossSearch(maxTrials: c.searchTrials)
                var backPressured = false
                while let next = search.next() {
                    guard server.process.isRunning else { report.errors.append("round \(round) \(kind.rawValue) stopped running"); break }
                    let t = trial(sender, cycle: cycle, rate: next, relay: kind.rawValue, workload: workload, round: round,
                                  kind: .search, relayPID: server.pid, relayProgram: relayProgram)
                    search.record(.init(targetPPS: next, offeredPPS: t.offeredPPS, deliveredPPS: t.deliveredPPS, loss: t.loss))
                    if next == nil { backPressured = (t.drops["out tx_dropped"] ?? 0) > 0 || t.failedSendCalls > 0 }
                    progress.log("  \(next.map { "\(Int($0)) pps" } ?? "flat out"): offered \(Int(t.offeredPPS)), delivered \(Int(t.deliveredPPS)), loss \(fixed(t.loss * 100, 2))%, machine \(t.machineMicrosPerPacket.map { fixed($0, 2) } ?? "-") µs/pkt\(t.drops.isEmpty ? "" : "; drops: " + DropCounters.text(t.drops))")
                }
                report.searches.append(LabSearchResult(relay: kind.rawValue, workload: workload.description, round: round,
                                                       deliveredPPS: search.best?.deliveredPPS,
                                                       generatorBound: search.generatorBound && !backPressured, backPressured: backPressured,
                                                       trials: search.trials.count))
            }
        } catch {
            report.errors.append("round \(round) \(kind.rawValue): \(error)")
            progress.log("round \(round + 1) \(kind.rawValue): \(error)")
        }
    }

    // MARK: - Servers

    func serverSpec(_ kind: LabRelayKind, round: Int) -> ServerSpec {
        let listen = TransportAddress(ip: .v4(IPv4Address(198, 18, 0, 1)), port: Self.listenPort)
        let wrap = ["netns", "exec", net.relayNamespace]
        let name = "\(kind.rawValue)-round\(round + 1)"
        switch kind {
        case .coturn:
            return ServerSpec(name: name, executable: net.ip, arguments: wrap + [c.coturnExecutable,
                "-n", "--listening-ip", "198.18.0.1", "--listening-port", String(Self.listenPort), "--relay-ip", "198.18.0.1",
                "--min-port", "20000", "--max-port", "29999", "--use-auth-secret", "--static-auth-secret", secret,
                "--realm", "bench", "--no-cli", "--no-tls", "--no-dtls", "--no-rfc5780", "--relay-threads", "1",
                "--no-software-attribute", "--log-file", "\(c.outputDirectory)/\(name).log", "--simple-log",
            ], listen: listen)
        case .ioUring, .xdp:
            var args = ["serve", "--listen-port", String(Self.listenPort), "--bind-ip4", "198.18.0.1", "--bind-ip6", "none",
                        "--min-port", "20000", "--max-port", "29999", "--workers", "1", "--realm", "bench",
                        "--auth-secret", secret, "--allow-peer", "198.18.0.0/15", "--max-allocations", "20000",
                        "--max-allocations-per-user", "20000", "--drain-seconds", "0", "--log-level", "notice",
                        "--health-check-addr", "127.0.0.1:\(Self.healthPort)", "--metrics-addr", "none", "--io-backend", "io-uring"]
            if kind == .xdp {
                // The lab's clients and peers are one host on the relay's link: the MAC swap is right
                // (auto would leave on-link channels on the io_uring path).
                args += ["--xdp-interface", net.relayInterface, "--xdp-mode", "native", "--xdp-next-hop", "swap", "--xdp-object", c.xdpObject]
            }
            return ServerSpec(name: name, executable: net.ip, arguments: wrap + [c.relayExecutable] + args, listen: listen)
        }
    }

    func logText(_ name: String) -> String {
        (try? String(contentsOfFile: "\(c.outputDirectory)/\(name).out", encoding: .utf8)) ?? ""
    }

    func logTail(_ name: String) -> String {
        logText(name).split(separator: "\n").suffix(3).joined(separator: " / ")
    }

    /// The relay's log lines about XDP.
    func xdpLines(_ name: String) -> String {
        logText(name).split(separator: "\n").filter { $0.lowercased().contains("xdp") }.prefix(4).joined(separator: " / ")
    }

    func readyz() -> String {
        guard let curl = LabShell.which("curl"),
              let o = try? LabShell.run(net.ip, ["netns", "exec", net.relayNamespace, curl, "-s", "-m", "2", "http://127.0.0.1:\(Self.healthPort)/readyz"], seconds: 5),
              o.status == 0 else { return "" }
        return " (/readyz: \(o.output.trimmingCharacters(in: .whitespacesAndNewlines).prefix(300)))"
    }

    // MARK: - Allocations and frames

    typealias Endpoints = [(client: IPv4Endpoint, peer: IPv4Endpoint, relayed: IPv4Endpoint)]

    /// One client socket (198.18.0.2) and one peer socket (198.18.0.3) per allocation; Allocate
    /// (answering the 401 challenge) and ChannelBind with real requests. The frames are then sent
    /// with these sockets' 5-tuples; the sockets stay open (bound) while they are.
    func setUpAllocations(server: TransportAddress) throws -> (endpoints: Endpoints, fds: [Int32]) {
        var clients: [ControlClient] = [], peers: [TransportAddress] = [], fds: [Int32] = []
        let now = unixSeconds()
        do {
            for i in 0..<c.allocations {
                let a = clientIPs[i % clientIPs.count]
                let fd = try openUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(a.0, a.1, a.2, a.3)), port: 0), bufferBytes: 64 << 10)
                fds.append(fd)
                let creds = CredentialSource.restSecret(secret).credentials(index: i, nowUnixSeconds: now)
                clients.append(ControlClient(index: i, fd: fd, username: creds.username, password: creds.password))
                let peer = try openUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(198, 18, 0, 3)), port: 0), bufferBytes: 64 << 10)
                fds.append(peer)
                guard let a = TransportAddress.local(of: peer) else { throw LoadError.setupFailed("getsockname") }
                peers.append(a)
            }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        let pipeline = ControlPipeline(server: server)
        var next = 0
        pipeline.run(window: c.setupWindow, deadline: monotonicNanoseconds() + 60_000_000_000) {
            guard next < clients.count else { return nil }
            defer { next += 1 }
            return ControlJob(client: clients[next], steps: [.allocate(family: nil), .channelBind(channel: Self.channel, peer: peers[next])])
        }
        var endpoints: Endpoints = []
        for (i, client) in clients.enumerated() {
            guard pipeline.failedJobs == 0, let relayed = client.relayedAddress.flatMap(Self.endpoint),
                  let local = TransportAddress.local(of: client.fd).flatMap(Self.endpoint), let peer = Self.endpoint(peers[i]) else {
                for fd in fds { close(fd) }
                throw LoadError.setupFailed("\(pipeline.failedJobs) of \(clients.count) failed: \(pipeline.failures)")
            }
            endpoints.append((local, peer, relayed))
        }
        return (endpoints, fds)
    }

    static func endpoint(_ a: TransportAddress) -> IPv4Endpoint? {
        guard case .v4(let v) = a.ip else { return nil }
        return IPv4Endpoint(UInt8(v.value >> 24), UInt8((v.value >> 16) & 0xFF), UInt8((v.value >> 8) & 0xFF), UInt8(v.value & 0xFF), port: a.port)
    }

    /// Flow 2i: ChannelData from client i to the listen port; flow 2i + 1: data from peer i to
    /// allocation i's relayed address.
    func frames(_ endpoints: Endpoints) -> [[UInt8]] {
        let relay = IPv4Endpoint(198, 18, 0, 1, port: Self.listenPort)
        var out: [[UInt8]] = []
        for (i, e) in endpoints.enumerated() {
            out.append(LabFrames.udp4(sourceMAC: net.outMAC, destinationMAC: net.relayMAC, source: e.client, destination: relay,
                                      payload: LabFrames.benchPayload(flow: UInt32(2 * i), bytes: c.payloadBytes, channel: Self.channel)))
            out.append(LabFrames.udp4(sourceMAC: net.outMAC, destinationMAC: net.relayMAC, source: e.peer, destination: e.relayed,
                                      payload: LabFrames.benchPayload(flow: UInt32(2 * i + 1), bytes: c.payloadBytes, channel: nil)))
        }
        return out
    }

    // MARK: - One trial

    func trial(_ sender: FrameSender, cycle: [Int], rate: Double?, relay: String, workload: LabWorkload, round: Int,
               kind: LabTrial.Kind, relayPID: Int32?, relayProgram: Int?) -> LabTrial {
        // bpftool runs outside the measured window: its own CPU would count as machine time.
        let sink0 = net.sinkCounts(), sinkProg0 = net.sinkStats(), prog0 = relayProgram.flatMap(net.programStats(id:))
        let drops0 = net.dropCounters()
        if net.prioritizeSinkNAPI().isEmpty { report.errors.append("round \(round) \(relay): could not give the sink's NAPI thread real-time priority") }
        let napiR0 = LabNetwork.napiCPUSeconds(interface: net.relayInterface), napiO0 = LabNetwork.napiCPUSeconds(interface: net.outInterface)
        // Background: the machine's busy time while nothing is sent (other processes, timers).
        let idle0 = MachineCPUSample.current(), idleStart = monotonicNanoseconds()
        sleepNanoseconds(500_000_000)
        let idle1 = MachineCPUSample.current(), idleSeconds = Double(monotonicNanoseconds() - idleStart) / 1e9
        let relay0 = relayPID.flatMap(ProcessStats.preciseCPUSeconds(pid:)), own0 = ownCPUSeconds()
        let m0 = MachineCPUSample.current()
        let start = monotonicNanoseconds()
        let r = sender.run(end: start + UInt64(c.seconds * 1e9), rate: rate)
        let sendEnd = monotonicNanoseconds()
        sleepNanoseconds(300_000_000) // drain: what is in flight still arrives
        let m1 = MachineCPUSample.current()
        let windowSeconds = Double(monotonicNanoseconds() - start) / 1e9
        let relay1 = relayPID.flatMap(ProcessStats.preciseCPUSeconds(pid:)), own1 = ownCPUSeconds()
        let napiR1 = LabNetwork.napiCPUSeconds(interface: net.relayInterface), napiO1 = LabNetwork.napiCPUSeconds(interface: net.outInterface)
        let sink1 = net.sinkCounts(), sinkProg1 = net.sinkStats(), prog1 = relayProgram.flatMap(net.programStats(id:))
        let drops1 = net.dropCounters()
        let sink = (sink1 ?? SinkCounts()) - (sink0 ?? SinkCounts())
        let ticks = ProcessStats.ticksPerSecond
        let dm = (m1 ?? MachineCPUSample()) - (m0 ?? MachineCPUSample())
        func delta(_ a: BPFProgramStats?, _ b: BPFProgramStats?) -> BPFProgramStats? {
            guard let a, let b else { return nil }
            return BPFProgramStats(id: b.id, name: b.name, runTimeNanoseconds: b.runTimeNanoseconds &- a.runTimeNanoseconds, runCount: b.runCount &- a.runCount)
        }
        let idleBusy = Double(((idle1 ?? MachineCPUSample()) - (idle0 ?? MachineCPUSample())).busy) / ticks
        var relayCPU: Double?
        if let a = relay0, let b = relay1 { relayCPU = b - a }
        var t = LabTrial(relay: relay, workload: workload.description, round: round, kind: kind, targetPPS: rate,
                         sendSeconds: Double(sendEnd - start) / 1e9, sent: r.sent,
                         sentClientToPeer: TrafficOrder.clientToPeerCount(cycle: cycle, sent: r.sent),
                         delivered: sink.packets, deliveredClientToPeer: kind == .calibration ? sink.toClientPackets : sink.toPeerPackets,
                         failedSendCalls: r.failedCalls, relayCPUSeconds: relayCPU,
                         relayNAPICPUSeconds: max(0, napiR1 - napiR0), sinkNAPICPUSeconds: max(0, napiO1 - napiO0),
                         machineBusySeconds: Double(dm.busy) / ticks, machineSoftirqSeconds: Double(dm.softirq + dm.irq) / ticks,
                         backgroundBusySeconds: idleSeconds > 0 ? idleBusy / idleSeconds * windowSeconds : 0,
                         machineCapacitySeconds: Double(report.machine.processors) * windowSeconds,
                         generatorCPUSeconds: own1 - own0, generatorThreadCPUSeconds: Double(r.threadCPUNanoseconds) / 1e9,
                         relayProgram: delta(prog0, prog1), sinkProgram: delta(sinkProg0, sinkProg1),
                         loadAverage: Machine.current().loadAverage)
        t.drops = DropCounters.growth(drops0, drops1)
        report.trials.append(t)
        sleepNanoseconds(200_000_000)
        return t
    }
}
