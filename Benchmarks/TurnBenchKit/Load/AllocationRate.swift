import Glibc
import STUN

/// What `alloc-rate` measured.
public struct AllocationRateResult: Codable, Sendable, Equatable {
    public var server: String
    /// Churn: Allocate then Refresh(LIFETIME 0) on a pool of sockets, `window` in flight.
    public var churnWindow: Int
    public var churnSeconds: Double
    public var churnCompleted: Int
    public var churnFailed: Int
    /// 401/438 answers met during churn (each costs a round trip).
    public var churnChallenges: UInt64
    public var churnPerSecond: Double
    /// Concurrent: this many allocations set up and held at once (one client socket each).
    public var concurrent: Int
    public var concurrentSetupSeconds: Double
    public var concurrentSetUp: Int
    public var concurrentFailed: Int
    public var setupPerSecond: Double
    public var teardownPerSecond: Double
    /// Allocate request → success, including the 401 round trip when the socket had no nonce yet.
    public var setupLatency: LatencySummary
    /// Relay resident memory before and with the allocations held, and the difference per allocation.
    public var relayRSSBeforeBytes: UInt64?
    public var relayRSSHeldBytes: UInt64?
    public var relayRSSPerAllocationBytes: Double?
    public var relayCPUMicrosPerSetup: Double?
    /// The load generator's own CPU per allocation set up (it computes an HMAC per request too).
    public var benchCPUMicrosPerSetup: Double?
    public var failures: [String: Int]
}

public struct AllocationRateConfiguration: Sendable {
    public var label: String
    public var server: TransportAddress
    public var credentials: CredentialSource
    public var churnSeconds: Double = 5
    public var churnWindow: Int = 32
    public var concurrent: Int = 16_384
    public var window: Int = 64
    public var relayPID: Int32?
    public var showProgress = true

    public init(label: String, server: TransportAddress, credentials: CredentialSource) {
        self.label = label
        self.server = server
        self.credentials = credentials
    }
}

/// Allocation set-up and tear-down rates, and the relay's memory per allocation.
public enum AllocationRate {
    public static func run(_ c: AllocationRateConfiguration) throws(LoadError) -> AllocationRateResult {
        guard c.server.ip.isLoopback else { throw .notLoopback(c.server) }
        let progress = ProgressLine(enabled: c.showProgress)
        var failures: [String: Int] = [:]

        let now = unixSeconds()
        // 1. Concurrent (first, so the relay's memory growth is theirs alone): N sockets, one
        // allocation each, all held; then deleted.
        var clients: [ControlClient] = []
        defer { for cl in clients { close(cl.fd) } }
        for i in 0..<c.concurrent {
            do {
                let fd = try openUDPSocket(bindTo: sourceAddress(subnet: 200, index: i, family: c.server.family), bufferBytes: 64 << 10)
                let cr = c.credentials.credentials(index: i, nowUnixSeconds: now)
                clients.append(ControlClient(index: i, fd: fd, username: cr.username, password: cr.password))
            } catch { throw .socket(error) }
        }
        let rss0 = c.relayPID.flatMap(ProcessStats.residentBytes(pid:))
        let cpu0 = c.relayPID.flatMap(ProcessStats.cpuSeconds(pid:))
        let ownCPU0 = ownCPUSeconds()
        let setup = ControlPipeline(server: c.server)
        var next = 0
        let setupStart = monotonicNanoseconds()
        var lastProgress = setupStart
        setup.run(window: c.window, deadline: setupStart + 100_000_000_000) {
            let t = monotonicNanoseconds()
            if t - lastProgress > 500_000_000 {
                progress.update("[\(c.label)] setting up: \(setup.completedJobs)/\(c.concurrent)")
                lastProgress = t
            }
            guard next < clients.count else { return nil }
            defer { next += 1 }
            return ControlJob(client: clients[next], steps: [.allocate(family: requestedFamily(c.server))])
        }
        let setupSeconds = Double(monotonicNanoseconds() - setupStart) / 1e9
        let cpu1 = c.relayPID.flatMap(ProcessStats.cpuSeconds(pid:))
        let ownCPU1 = ownCPUSeconds()
        // Let the relay settle (lazy page faults, deferred frees) before reading its memory.
        sleepNanoseconds(300_000_000)
        let rss1 = c.relayPID.flatMap(ProcessStats.residentBytes(pid:))
        for (k, v) in setup.failures { failures["setup: " + k, default: 0] += v }

        let teardown = ControlPipeline(server: c.server)
        teardown.maxAttempts = 3
        let held = clients.filter { $0.relayedAddress != nil }
        var t = 0
        let teardownStart = monotonicNanoseconds()
        teardown.run(window: c.window, deadline: teardownStart + 100_000_000_000) {
            guard t < held.count else { return nil }
            defer { t += 1 }
            return ControlJob(client: held[t], steps: [.refresh(lifetime: 0)])
        }
        let teardownSeconds = Double(monotonicNanoseconds() - teardownStart) / 1e9
        for (k, v) in teardown.failures { failures["teardown: " + k, default: 0] += v }
        // 2. Churn (`churn` below).
        let churnStart = monotonicNanoseconds()
        lastProgress = churnStart
        let churn = try Self.churn(server: c.server, credentials: c.credentials, window: c.churnWindow,
                                   until: churnStart + UInt64(c.churnSeconds * 1e9)) { done in
            let t = monotonicNanoseconds()
            if t - lastProgress > 500_000_000 {
                progress.update("[\(c.label)] churn \(fixed(Double(t - churnStart) / 1e9, 1)) s: \(done) allocations set up and deleted")
                lastProgress = t
            }
        }
        let churnSeconds = Double(monotonicNanoseconds() - churnStart) / 1e9
        for (k, v) in churn.failures { failures["churn: " + k, default: 0] += v }

        progress.finish()

        var perAllocation: Double?
        if let a = rss0, let b = rss1, setup.completedJobs > 0 { perAllocation = (Double(b) - Double(a)) / Double(setup.completedJobs) }
        var cpuPerSetup: Double?
        if let a = cpu0, let b = cpu1, setup.completedJobs > 0 { cpuPerSetup = (b - a) * 1e6 / Double(setup.completedJobs) }
        return AllocationRateResult(
            server: c.label, churnWindow: c.churnWindow, churnSeconds: churnSeconds, churnCompleted: churn.completedJobs,
            churnFailed: churn.failedJobs, churnChallenges: churn.challenges, churnPerSecond: Double(churn.completedJobs) / churnSeconds,
            concurrent: c.concurrent, concurrentSetupSeconds: setupSeconds, concurrentSetUp: setup.completedJobs,
            concurrentFailed: setup.failedJobs, setupPerSecond: Double(setup.completedJobs) / setupSeconds,
            teardownPerSecond: Double(teardown.completedJobs) / teardownSeconds,
            setupLatency: LatencySummary(nanoseconds: setup.latency),
            relayRSSBeforeBytes: rss0, relayRSSHeldBytes: rss1, relayRSSPerAllocationBytes: perAllocation,
            relayCPUMicrosPerSetup: cpuPerSetup,
            benchCPUMicrosPerSetup: setup.completedJobs > 0 ? (ownCPU1 - ownCPU0) * 1e6 / Double(setup.completedJobs) : nil,
            failures: failures)
    }
}

extension AllocationRate {
    /// Allocation churn until `end` (monotonic ns): each job opens a fresh socket (a new 5-tuple:
    /// servers may keep a deleted allocation's 5-tuple for a while), allocates and deletes
    /// (Refresh, LIFETIME 0), then closes it; `window` jobs in flight. It offers the last
    /// realm/nonce seen, as a client would; a server whose nonces are bound to the client address
    /// answers 401 first. `tick` is called before each new job with the jobs completed so far.
    public static func churn(server: TransportAddress, credentials: CredentialSource, window: Int, until end: UInt64,
                             tick: (Int) -> Void = { _ in }) throws(LoadError) -> ControlPipeline {
        let churn = ControlPipeline(server: server)
        churn.maxAttempts = 3
        let churnCredentials = credentials.credentials(index: 0, nowUnixSeconds: unixSeconds())
        var lastAuth: ControlAuth?
        var openError: SocketError?
        var opened = 0
        churn.run(window: window, deadline: end + 2_000_000_000, next: {
            if monotonicNanoseconds() >= end || openError != nil { return nil }
            tick(churn.completedJobs)
            let fd: Int32
            do { fd = try openUDPSocket(bindTo: sourceAddress(subnet: UInt8(truncatingIfNeeded: 1 + (opened >> 16) % 100), index: opened, family: server.family), bufferBytes: 64 << 10) } catch let e as SocketError { openError = e; return nil } catch { return nil }
            opened += 1
            let client = ControlClient(index: opened, fd: fd, username: churnCredentials.username, password: churnCredentials.password)
            client.auth = lastAuth
            return ControlJob(client: client, steps: [.allocate(family: requestedFamily(server)), .refresh(lifetime: 0)])
        }, finished: { job, _ in
            if let a = job.client.auth { lastAuth = a }
            close(job.client.fd)
        })
        if let openError { throw .socket(openError) }
        return churn
    }
}

extension Report {
    public static func allocationRate(_ r: AllocationRateResult) -> String {
        var l: [String] = []
        l.append("\(r.server):")
        l.append("| figure | value |")
        l.append("|---|---:|")
        l.append("| churn: allocations set up and deleted per second (window \(r.churnWindow)) | \(Int(r.churnPerSecond)) |")
        l.append("| churn: completed / failed in \(fixed(r.churnSeconds, 2)) s | \(r.churnCompleted) / \(r.churnFailed) |")
        l.append("| churn: 401/438 challenges answered | \(r.churnChallenges) |")
        l.append("| concurrent: allocations held | \(r.concurrentSetUp) of \(r.concurrent) (\(r.concurrentFailed) failed) |")
        l.append("| concurrent: set up per second | \(Int(r.setupPerSecond)) |")
        l.append("| concurrent: deleted per second | \(Int(r.teardownPerSecond)) |")
        l.append("| Allocate latency p50 / p99 µs | \(fixed(r.setupLatency.p50, 1)) / \(fixed(r.setupLatency.p99, 1)) |")
        if let a = r.relayRSSBeforeBytes, let b = r.relayRSSHeldBytes {
            l.append("| relay RSS before → held | \(a / 1024) KiB → \(b / 1024) KiB |")
        }
        if let p = r.relayRSSPerAllocationBytes { l.append("| relay RSS per allocation | \(Int(p)) bytes |") }
        if let c = r.relayCPUMicrosPerSetup { l.append("| relay CPU per allocation set up | \(fixed(c, 1)) µs |") }
        if let c = r.benchCPUMicrosPerSetup { l.append("| load generator CPU per allocation set up | \(fixed(c, 1)) µs |") }
        if !r.failures.isEmpty { l.append("failures: \(r.failures.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))") }
        return l.joined(separator: "\n")
    }
}

/// A client source address on loopback that no earlier phase used: 127.<subnet>.<hi>.<lo> for
/// IPv4 (the whole of 127.0.0.0/8 is loopback), so a fresh 5-tuple never meets an allocation the
/// server still remembers from a previous one. IPv6 has only ::1 (port reuse is then possible).
func sourceAddress(subnet: UInt8, index: Int, family: AddressFamily) -> TransportAddress {
    switch family {
    case .ipv4:
        let i = UInt32(truncatingIfNeeded: index) & 0xFFFF
        return TransportAddress(ip: .v4(IPv4Address(127 << 24 | UInt32(subnet) << 16 | i)), port: 0)
    case .ipv6:
        return TransportAddress(ip: .v6(.loopback), port: 0)
    }
}

extension Report {
    /// Medians per server over rounds, side by side, with A/B ratios.
    public static func allocationRateComparison(_ results: [AllocationRateResult], serverA: String, serverB: String) -> String {
        let a = results.filter { $0.server == serverA }, b = results.filter { $0.server == serverB }
        func med(_ rs: [AllocationRateResult], _ f: (AllocationRateResult) -> Double?) -> Double? {
            let v = rs.compactMap(f)
            return v.count == rs.count ? Summary.median(v) : nil
        }
        func cell(_ v: Double?, _ digits: Int) -> String { v.map { fixed($0, digits) } ?? "-" }
        let rows: [(String, (AllocationRateResult) -> Double?, Int)] = [
            ("churn: set up + deleted per second", { $0.churnPerSecond }, 0),
            ("concurrent: set up per second", { $0.setupPerSecond }, 0),
            ("concurrent: deleted per second", { $0.teardownPerSecond }, 0),
            ("Allocate latency p50 µs", { $0.setupLatency.p50 }, 1),
            ("Allocate latency p99 µs", { $0.setupLatency.p99 }, 1),
            ("relay RSS per allocation, bytes", { $0.relayRSSPerAllocationBytes }, 0),
            ("relay CPU per allocation set up, µs", { $0.relayCPUMicrosPerSetup }, 1),
            ("load generator CPU per allocation set up, µs", { $0.benchCPUMicrosPerSetup }, 1),
        ]
        var l = ["Medians over \(a.count) / \(b.count) rounds (fresh server each round):",
                 "| figure | \(serverA) | \(serverB) | ratio |", "|---|---:|---:|---:|"]
        for (name, f, d) in rows {
            let x = med(a, f), y = med(b, f)
            l.append("| \(name) | \(cell(x, d)) | \(cell(y, d)) | \(Summary.ratio(x, y).map { fixed($0, 2) + "×" } ?? "-") |")
        }
        return l.joined(separator: "\n")
    }
}

/// IPv6 servers are asked for an IPv6 relayed address (the default is IPv4).
func requestedFamily(_ server: TransportAddress) -> AddressFamily? {
    server.family == .ipv6 ? .ipv6 : nil
}
