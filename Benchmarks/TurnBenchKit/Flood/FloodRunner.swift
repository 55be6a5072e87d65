import CUDP
import Foundation
import Glibc
import SocketAddressing
import STUN
import Synchronization

/// Runs the `turn-bench flood` scenarios against a turn-relay it starts itself. Every load goes
/// to loopback and every loop is bounded in count and time.
public enum FloodRunner {
    /// Runs `scenario` with the relay's defaults plus `setting` (extra relay arguments).
    public static func run(_ scenario: FloodScenario, _ c: FloodConfiguration, setting: [String] = []) throws -> FloodResult {
        var extra = setting
        var ports: ClosedRange<UInt16>?
        /// The soaks' raised lifetime, when they raise it.
        var lifetimes: String?
        switch scenario {
        case .exhaust:
            let low = c.relayPorts.lowerBound
            ports = low...(low + UInt16(max(1, min(c.exhaustPorts, 1000)) - 1))
        case .reload:
            // Something for each reload to read: a credentials file (a second secret, the peers).
            let file = c.outputDirectory + "/flood-credentials.conf"
            try Data("auth-secret = reload-\(UInt32.random(in: 0...UInt32.max))\nallow-peer = 127.0.0.0/8\n".utf8)
                .write(to: URL(fileURLWithPath: file), options: .atomic)
            extra = ["--credentials-file", file] + setting
        case .soak, .streamSoak:
            // The load generator binds its channels once and never refreshes them: for a soak
            // longer than the RFC's permission lifetime (300 s) every lifetime is raised to cover
            // it (non-standard, said in the result) so that relaying, not expiry, is measured.
            if c.seconds > 240 {
                let lifetime = "\(Int(min(3600, c.seconds + c.settleSeconds + 120)))"
                lifetimes = lifetime
                extra = ["--permission-lifetime", lifetime, "--channel-lifetime", lifetime,
                         "--default-lifetime", lifetime, "--max-lifetime", lifetime] + setting
            }
            // The stream soak's clients come over TLS: a listener and a certificate.
            if scenario == .streamSoak { extra = try streamSoakArguments(c) + extra }
        case .unauth, .nat, .junk, .churn:
            break
        }
        let relay = try FloodRelay(c, extra: extra, ports: ports)
        defer { relay.stop() }
        let progress = ProgressLine(enabled: c.showProgress)
        let before = relay.settledSample()
        var result: FloodResult
        switch scenario {
        case .unauth: result = try unauth(c, relay, before, progress)
        case .nat: result = try nat(c, relay, before, progress)
        case .exhaust: result = exhaust(c, relay, before, progress)
        case .reload: result = try reload(c, relay, before, progress)
        case .junk: result = try junk(c, relay, before, progress)
        case .churn: result = try churn(c, relay, before, progress)
        case .soak: result = try soak(c, relay, before, progress, lifetimes: lifetimes)
        case .streamSoak: result = try streamSoak(c, relay, before, progress, lifetimes: lifetimes)
        }
        result.setting = setting.joined(separator: " ")
        return result
    }

    // MARK: unauth

    static func unauth(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine) throws -> FloodResult {
        let legit = try LegitTraffic(relay: relay, c, seconds: c.seconds)
        legit.start(allocating: true)
        // The relay warmed up by the legitimate traffic alone (its receive buffers touched).
        let warm = relay.settledSample()
        let start = monotonicNanoseconds()
        let deadline = start + UInt64(c.seconds * 1e9)
        // 1. Distinct pairs: address i % addresses over 127.128.0.0/12 ... and a port per round.
        let addresses = max(1, min(c.addresses, 1 << 20))
        progress.update("unauth: \(c.sources) Allocates from \(addresses) addresses")
        let distinct = sendUnauthenticated(to: relay.listen, count: c.sources, perSecond: c.floodPerSecond, deadline: deadline) { i in
            let a = i % addresses, round = i / addresses
            return TransportAddress(ip: .v4(IPv4Address(127 << 24 | 128 << 16 | UInt32(a))), port: UInt16(40_000 + (a + round) % 20_000))
        }
        let afterDistinct = relay.settledSample()
        // 2. One address, distinct ports: the per-source limit.
        progress.update("unauth: \(c.oneAddressRequests) Allocates from one address")
        // Its own time bound: on a loaded machine flood 1 may use all of its own.
        let oneDeadline = monotonicNanoseconds() + UInt64(c.seconds * 1e9)
        let one = sendUnauthenticated(to: relay.listen, count: c.oneAddressRequests, perSecond: c.floodPerSecond,
                                      deadline: oneDeadline) { i in
            TransportAddress(ip: .v4(IPv4Address(127, 200, 0, 1)), port: UInt16(40_000 + i % 20_000))
        }
        let afterOne = relay.settledSample()
        let (load, allocating) = legit.finish()
        progress.finish()
        let after = relay.settledSample()
        var f = [
            FloodFigure("distinct_sent", "flood 1: unauthenticated Allocates sent, each from its own address/port pair", Double(distinct.sent)),
            FloodFigure("distinct_addresses", "flood 1: distinct source addresses (127.128.0.0/12)", Double(min(addresses, distinct.sent))),
            FloodFigure("distinct_seconds", "flood 1: seconds", distinct.seconds, digits: 2),
            FloodFigure("distinct_401_received", "flood 1: 401s received by the flooders", Double(distinct.answered401)),
            FloodFigure("distinct_401_sent", "flood 1: relay 401s sent (relay_responses_total{code=\"401\"}; the legitimate clients' included)", afterDistinct.metric("401") - warm.metric("401")),
            FloodFigure("distinct_rate_limited", "flood 1: relay 401s withheld (relay_challenges_rate_limited_total)", afterDistinct.metric("rate_limited") - warm.metric("rate_limited")),
            FloodFigure("one_sent", "flood 2: unauthenticated Allocates from one address (127.200.0.1), distinct ports", Double(one.sent)),
            FloodFigure("one_seconds", "flood 2: seconds", one.seconds, digits: 2),
            FloodFigure("one_401_received", "flood 2: 401s received by the flooder", Double(one.answered401)),
            FloodFigure("one_401_sent", "flood 2: relay 401s sent (the legitimate clients' included)", afterOne.metric("401") - afterDistinct.metric("401")),
            FloodFigure("one_rate_limited", "flood 2: relay 401s withheld", afterOne.metric("rate_limited") - afterDistinct.metric("rate_limited")),
            FloodFigure("flood_allocations", "allocations the floods created (relay_allocations_created_total, less the legitimate ones)",
                        after.metric("created") - before.metric("created") - Double(legit.allocationsCreated)),
            FloodFigure("rss_warm_kib", "relay RSS with the legitimate traffic alone, before the floods, KiB", Double(warm.rssKiB)),
            FloodFigure("rss_distinct_kib", "relay RSS after flood 1, KiB", Double(afterDistinct.rssKiB)),
            FloodFigure("rss_one_kib", "relay RSS after flood 2, KiB", Double(afterOne.rssKiB)),
            FloodFigure("rss_delta_kib", "relay RSS after flood 2 − before the floods, KiB", Double(afterOne.rssKiB) - Double(warm.rssKiB)),
        ]
        f += legit.figures(load: load, allocating: allocating)
        return FloodResult(scenario: .unauth, setting: "", figures: f, before: before, after: after)
    }

    /// What a flood of unauthenticated Allocates sent and got back.
    struct UnauthFlood {
        var sent = 0
        var bindFallbacks = 0
        var answered401 = 0
        var seconds = 0.0
    }

    /// Sends one unauthenticated Allocate from each of `count` sockets bound to `source(i)` (port
    /// 0 when that pair cannot be bound), reads what came back to the previous batch, closes it;
    /// `perSecond` of them (0: flat out), until `deadline`.
    static func sendUnauthenticated(to server: TransportAddress, count: Int, perSecond: Double, deadline: UInt64,
                                    source: (Int) -> TransportAddress) -> UnauthFlood {
        var r = UnauthFlood()
        let start = monotonicNanoseconds()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
        defer { buffer.deallocate() }
        let destination = cu_addr(server)
        var previous: [Int32] = [], current: [Int32] = []
        func drain(_ fds: [Int32]) {
            for fd in fds {
                for _ in 0..<4 {
                    let n = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                    if n <= 0 { break }
                    if ControlCodec.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))?.errorCode == 401 { r.answered401 += 1 }
                }
                close(fd)
            }
        }
        var i = 0
        while i < count && monotonicNanoseconds() < deadline {
            if perSecond > 0 {
                let due = start + UInt64(Double(i) / perSecond * 1e9), t = monotonicNanoseconds()
                if due > t { sleepNanoseconds(due - t) }
            }
            let wanted = source(i)
            i += 1
            var fd = try? openUDPSocket(bindTo: wanted, bufferBytes: 4096)
            if fd == nil {
                r.bindFallbacks += 1
                fd = try? openUDPSocket(bindTo: TransportAddress(ip: wanted.ip, port: 0), bufferBytes: 4096)
            }
            guard let fd else { continue }
            let id = (0..<12).map { _ in UInt8.random(in: 0...255) }
            if let n = ControlCodec.encode(.allocate(), transactionID: id, auth: nil, into: buffer),
               destination.withSockaddr({ sendto(fd, buffer.baseAddress, n, 0, $0, $1) }) == n {
                r.sent += 1
            }
            current.append(fd)
            if current.count == 256 {
                drain(previous)
                previous = current
                current = []
            }
        }
        sleepNanoseconds(50_000_000)
        drain(previous)
        drain(current)
        r.seconds = Double(monotonicNanoseconds() - start) / 1e9
        return r
    }

    // MARK: nat

    static func nat(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine) throws -> FloodResult {
        let now = unixSeconds()
        var clients: [ControlClient] = []
        defer { for cl in clients { close(cl.fd) } }
        for i in 0..<c.clients {
            let fd = try openUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(127, 77, 0, 1)), port: 0), bufferBytes: 64 << 10)
            let cr = relay.credentials.credentials(index: i, nowUnixSeconds: now)
            clients.append(ControlClient(index: i, fd: fd, username: cr.username, password: cr.password))
        }
        // All join at once. Each Allocate transaction retransmits as RFC 8489 §6.2.1 says (500 ms,
        // doubling, here capped at 8 s; 7 sends, then it fails after 31.5 s), each wait scaled by
        // 1 ± natJitter; a client whose transaction failed starts a new one, as an application
        // would, once the round's others are done, until the deadline.
        var allocatedAt = [Double?](repeating: nil, count: clients.count)
        var pending = clients
        var failedTransactions = 0
        var rounds = 0
        let start = monotonicNanoseconds()
        let deadline = start + UInt64(c.natDeadlineSeconds * 1e9)
        while !pending.isEmpty && monotonicNanoseconds() < deadline {
            rounds += 1
            let p = ControlPipeline(server: relay.listen)
            p.retransmitNanoseconds = 500_000_000
            p.retransmitBackoff = true
            p.maxRetransmitNanoseconds = 8_000_000_000
            p.maxAttempts = 7
            p.retransmitJitter = c.natJitter
            var next = 0
            var failed: [ControlClient] = []
            var lastProgress = start
            let round = pending
            p.run(window: round.count, deadline: deadline, next: {
                let t = monotonicNanoseconds()
                if t - lastProgress > 500_000_000 {
                    progress.update("nat: \(allocatedAt.count { $0 != nil })/\(clients.count) allocated after \(fixed(Double(t - start) / 1e9, 1)) s")
                    lastProgress = t
                }
                guard next < round.count else { return nil }
                defer { next += 1 }
                return ControlJob(client: round[next], steps: [.allocate()])
            }, finished: { job, ok in
                if ok {
                    allocatedAt[job.client.index] = Double(monotonicNanoseconds() - start) / 1e9
                } else {
                    failed.append(job.client)
                }
            })
            failedTransactions += p.failedJobs
            pending = failed
        }
        progress.finish()
        let times = allocatedAt.compactMap { $0 }.sorted()
        let after = relay.settledSample()
        func quantile(_ q: Double) -> Double {
            let need = Int((Double(clients.count) * q).rounded(.up))
            return need <= times.count && need > 0 ? times[need - 1] : .nan
        }
        let f = [
            FloodFigure("clients", "clients behind one address (127.77.0.1), all joining at once", Double(clients.count)),
            FloodFigure("allocated", "clients with an allocation within \(Int(c.natDeadlineSeconds)) s", Double(times.count)),
            FloodFigure("seconds_50", "seconds until half had an allocation", quantile(0.5), digits: 1),
            FloodFigure("seconds_90", "seconds until 90% had one", quantile(0.9), digits: 1),
            FloodFigure("seconds_all", "seconds until all had one", quantile(1), digits: 1),
            FloodFigure("jitter_percent", "retransmission waits scaled by 1 ± this, %", c.natJitter * 100),
            FloodFigure("failed_transactions", "Allocate transactions that timed out (31.5 s each without jitter; the client saw an error and tried again)", Double(failedTransactions)),
            FloodFigure("rounds", "attempts of the slowest client", Double(rounds)),
            FloodFigure("401_sent", "relay 401s sent", after.metric("401") - before.metric("401")),
            FloodFigure("rate_limited", "relay 401s withheld (rate limited)", after.metric("rate_limited") - before.metric("rate_limited")),
        ]
        return FloodResult(scenario: .nat, setting: "", figures: f, before: before, after: after)
    }

    // MARK: exhaust

    static func exhaust(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine) -> FloodResult {
        let ports = relay.ports
        let first = allocate(relay, count: ports.count + 10, subnet: 78)
        let full = relay.settledSample()
        let deleted = delete(relay, first.clients.filter { $0.relayedAddress != nil })
        for cl in first.clients { close(cl.fd) }
        let freed = relay.settledSample()
        let second = allocate(relay, count: ports.count, subnet: 79)
        let again = relay.settledSample()
        _ = delete(relay, second.clients.filter { $0.relayedAddress != nil })
        for cl in second.clients { close(cl.fd) }
        let after = relay.settledSample()
        let f = [
            FloodFigure("ports", "relay ports in the range (--min-port … --max-port)", Double(ports.count)),
            FloodFigure("first_allocated", "phase 1: allocations made (of \(ports.count + 10) clients)", Double(first.ok)),
            FloodFigure("first_508", "phase 1: 508 Insufficient Capacity answers", full.metric("508") - before.metric("508")),
            FloodFigure("deleted", "allocations deleted (Refresh, LIFETIME 0)", Double(deleted)),
            FloodFigure("allocations_freed", "relay allocations active after deleting", freed.metric("allocations")),
            FloodFigure("second_allocated", "phase 2: allocations made again (of \(ports.count) new clients)", Double(second.ok)),
            FloodFigure("second_508", "phase 2: 508 answers", again.metric("508") - freed.metric("508")),
        ]
        return FloodResult(scenario: .exhaust, setting: "", figures: f, before: before, peak: full, after: after)
    }

    /// `count` clients from 127.`subnet`.x.y, one Allocate each, 8 at a time.
    static func allocate(_ relay: FloodRelay, count: Int, subnet: UInt8) -> (clients: [ControlClient], ok: Int) {
        let now = unixSeconds()
        var clients: [ControlClient] = []
        for i in 0..<count {
            guard let fd = try? openUDPSocket(bindTo: sourceAddress(subnet: subnet, index: i, family: .ipv4), bufferBytes: 64 << 10) else { continue }
            let cr = relay.credentials.credentials(index: i, nowUnixSeconds: now)
            clients.append(ControlClient(index: i, fd: fd, username: cr.username, password: cr.password))
        }
        return (clients, each(relay, clients, .allocate()))
    }

    /// Deletes the clients' allocations (Refresh, LIFETIME 0); how many succeeded.
    static func delete(_ relay: FloodRelay, _ clients: [ControlClient]) -> Int {
        each(relay, clients, .refresh(lifetime: 0))
    }

    /// One `request` from each client, 8 at a time, within a minute; how many succeeded.
    static func each(_ relay: FloodRelay, _ clients: [ControlClient], _ request: ControlRequest) -> Int {
        let p = ControlPipeline(server: relay.listen)
        p.maxAttempts = 4
        var next = 0
        p.run(window: 8, deadline: monotonicNanoseconds() + 60_000_000_000) {
            guard next < clients.count else { return nil }
            defer { next += 1 }
            return ControlJob(client: clients[next], steps: [request])
        }
        return p.completedJobs
    }

    // MARK: reload

    static func reload(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine) throws -> FloodResult {
        let legit = try LegitTraffic(relay: relay, c, seconds: c.seconds)
        progress.update("reload: \(fixed(c.seconds, 0)) s of relaying without reloads")
        let quiet = legit.generator.run()
        let middle = relay.settledSample()
        progress.update("reload: \(fixed(c.seconds, 0)) s of relaying with \(c.reloads) SIGHUPs")
        legit.start(allocating: false)
        let start = monotonicNanoseconds()
        let spacing = UInt64(c.seconds * 0.9e9) / UInt64(max(c.reloads, 1))
        var sent = 0
        for i in 0..<c.reloads {
            let at = start + UInt64(i) * spacing + spacing / 2
            let t = monotonicNanoseconds()
            if at > t { sleepNanoseconds(at - t) }
            guard relay.process.process.isRunning, kill(relay.pid, SIGHUP) == 0 else { break }
            sent += 1
        }
        let (loud, _) = legit.finish()
        progress.finish()
        let after = relay.settledSample()
        let log = (try? String(contentsOfFile: c.outputDirectory + "/turn-relay.out", encoding: .utf8)) ?? ""
        let logged = log.split(separator: "\n").count { $0.contains("SIGHUP") && !$0.contains("not reloaded") }
        var f = [
            FloodFigure("quiet_sent", "phase 1 (no reloads): packets sent", Double(quiet.sent)),
            FloodFigure("quiet_loss_percent", "phase 1: loss, %", quiet.lossRatio * 100, digits: 3),
            FloodFigure("quiet_relayed", "phase 1: relay packets relayed (both directions)", middle.metric("c2p") + middle.metric("p2c") - before.metric("c2p") - before.metric("p2c")),
            FloodFigure("sighups", "phase 2: SIGHUPs sent", Double(sent)),
            FloodFigure("reloads_logged", "relay log lines about a SIGHUP reload (none failed)", Double(logged)),
        ]
        if let loud {
            f += [FloodFigure("loud_sent", "phase 2 (reloads): packets sent", Double(loud.sent)),
                  FloodFigure("loud_loss_percent", "phase 2: loss, %", loud.lossRatio * 100, digits: 3)]
        }
        f.append(FloodFigure("allocations_after", "allocations after both phases (of \(c.legitAllocations))", after.metric("allocations")))
        return FloodResult(scenario: .reload, setting: "", figures: f, before: before, after: after)
    }

    // MARK: junk

    static func junk(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine) throws -> FloodResult {
        let legit = try LegitTraffic(relay: relay, c, seconds: c.seconds)
        progress.update("junk: \(fixed(c.seconds, 0)) s of relaying alone")
        let quiet = legit.generator.run()
        let middle = relay.settledSample()

        // The junk's own allocations: one that sends ChannelData on channels it never bound, and a
        // client that never reads (4 KiB receive buffer) whose peer sends to it flat out.
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        func socket(_ a: IPv4Address, buffer: Int32 = 64 << 10) throws -> Int32 {
            let fd = try openUDPSocket(bindTo: TransportAddress(ip: .v4(a), port: 0), bufferBytes: buffer)
            fds.append(fd)
            return fd
        }
        let cr = relay.credentials.credentials(index: 900_000, nowUnixSeconds: unixSeconds())
        let unbound = ControlClient(index: 0, fd: try socket(IPv4Address(127, 79, 0, 1)), username: cr.username, password: cr.password)
        let stalled = ControlClient(index: 1, fd: try socket(IPv4Address(127, 79, 0, 2), buffer: 4096), username: cr.username, password: cr.password)
        let stalledPeer = try socket(IPv4Address(127, 251, 1, 1))
        guard let stalledPeerAddress = TransportAddress.local(of: stalledPeer) else { throw LoadError.setupFailed("getsockname") }
        let setup = ControlPipeline(server: relay.listen)
        var jobs = [ControlJob(client: unbound, steps: [.allocate()]),
                    ControlJob(client: stalled, steps: [.allocate(), .channelBind(channel: 0x4000, peer: stalledPeerAddress)])]
        setup.run(window: 2, deadline: monotonicNanoseconds() + 10_000_000_000) { jobs.popLast() }
        guard setup.completedJobs == 2, let stalledRelayed = stalled.relayedAddress else {
            throw LoadError.setupFailed("junk allocations: \(setup.failures)")
        }
        var strangers: [Int32] = []
        for i in 0..<16 { strangers.append(try socket(IPv4Address(127, 251, 2, UInt8(1 + i)))) }
        let oversize = try socket(IPv4Address(127, 79, 0, 3), buffer: 1 << 20)
        let targets = legit.generator.clients.compactMap { $0.relayedAddress }.map { cu_addr($0) }
        let server = cu_addr(relay.listen), stalledTarget = cu_addr(stalledRelayed)

        progress.update("junk: \(fixed(c.seconds, 0)) s of relaying with junk")
        legit.start(allocating: false)
        let payload = [UInt8](repeating: 0xA5, count: 65_000)
        var counts = (unbound: 0, stranger: 0, oversize: 0, stalled: 0)
        let start = monotonicNanoseconds()
        let end = start + UInt64(c.seconds * 1e9)
        var round = 0
        // Bounded: c.seconds, and at most 2,000 rounds a second of 1 + 1 + 1 + 8 datagrams.
        while monotonicNanoseconds() < end {
            let due = start + UInt64(round) * 500_000
            let t = monotonicNanoseconds()
            if due > t { sleepNanoseconds(due - t) }
            payload.withUnsafeBytes { p in
                var header = [UInt8](repeating: 0, count: 104)
                let channel = UInt16(0x4001 + round % 0x3FFE)
                header[0] = UInt8(channel >> 8); header[1] = UInt8(channel & 0xFF); header[3] = 100
                if header.withUnsafeBytes({ h in server.withSockaddr { sendto(unbound.fd, h.baseAddress, h.count, 0, $0, $1) } }) > 0 { counts.unbound += 1 }
                if !targets.isEmpty {
                    let fd = strangers[round % strangers.count]
                    if targets[round % targets.count].withSockaddr({ sendto(fd, p.baseAddress, 100, 0, $0, $1) }) > 0 { counts.stranger += 1 }
                }
                let size = round % 2 == 0 ? 9_000 : 65_000
                if c.junkOversize, server.withSockaddr({ sendto(oversize, p.baseAddress, size, 0, $0, $1) }) > 0 { counts.oversize += 1 }
                for _ in 0..<8 where stalledTarget.withSockaddr({ sendto(stalledPeer, p.baseAddress, 1_000, 0, $0, $1) }) > 0 {
                    counts.stalled += 1
                }
            }
            round += 1
        }
        let (loud, _) = legit.finish()
        progress.finish()
        let after = relay.settledSample()
        var f = [
            FloodFigure("quiet_sent", "phase 1 (no junk): legitimate packets sent", Double(quiet.sent)),
            FloodFigure("quiet_loss_percent", "phase 1: legitimate loss, %", quiet.lossRatio * 100, digits: 3),
            FloodFigure("junk_unbound", "phase 2: ChannelData on unbound channels", Double(counts.unbound)),
            FloodFigure("junk_stranger", "phase 2: datagrams from peers without a permission to the legitimate relayed addresses", Double(counts.stranger)),
            FloodFigure("junk_oversize", "phase 2: oversize datagrams to the TURN port (9,000 and 65,000 bytes, alternating)", Double(counts.oversize)),
            FloodFigure("junk_stalled", "phase 2: 1,000-byte datagrams from a peer to a client that never reads", Double(counts.stalled)),
            FloodFigure("stalled_relayed", "phase 2: of those, sent on by the relay (relay_io_datagrams_sent_total less the legitimate packets delivered)",
                        after.metric("io_sent") - middle.metric("io_sent") - Double(loud?.received ?? 0)),
        ]
        if let loud {
            f += [FloodFigure("loud_sent", "phase 2: legitimate packets sent", Double(loud.sent)),
                  FloodFigure("loud_loss_percent", "phase 2: legitimate loss, %", loud.lossRatio * 100, digits: 3)]
        }
        f.append(FloodFigure("rss_delta_kib", "relay RSS after − before, KiB", Double(after.rssKiB) - Double(before.rssKiB)))
        return FloodResult(scenario: .junk, setting: "", figures: f, before: before, after: after)
    }

    // MARK: churn

    static func churn(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine) throws -> FloodResult {
        let sampler = FloodSampler(relay: relay, maxSeconds: c.seconds + c.settleSeconds + 60)
        let start = monotonicNanoseconds()
        var lastProgress = start
        let churn = try AllocationRate.churn(server: relay.listen, credentials: relay.credentials, window: c.churnWindow,
                                             until: start + UInt64(c.seconds * 1e9)) { done in
            let t = monotonicNanoseconds()
            if t - lastProgress > 1_000_000_000 {
                progress.update("churn \(fixed(Double(t - start) / 1e9, 0))/\(fixed(c.seconds, 0)) s: \(done) allocations set up and deleted")
                lastProgress = t
            }
        }
        let churnSeconds = Double(monotonicNanoseconds() - start) / 1e9
        let (samples, after, peak) = settle("churn", c, relay, sampler, progress)
        let f = [
            FloodFigure("seconds", "churn seconds (window \(c.churnWindow))", churnSeconds, digits: 1),
            FloodFigure("completed", "allocations set up and deleted", Double(churn.completedJobs)),
            FloodFigure("per_second", "per second", Double(churn.completedJobs) / churnSeconds),
            FloodFigure("failed", "failed", Double(churn.failedJobs)),
            FloodFigure("challenges", "401/438 round trips", Double(churn.challenges)),
            FloodFigure("max_fds", "relay open fds, highest sample", Double(samples.map(\.fds).max() ?? 0)),
            FloodFigure("max_allocations", "relay allocations active, highest sample", samples.map { $0.metric("allocations") }.max() ?? 0),
            FloodFigure("rss_delta_kib", "relay RSS after \(fixed(c.settleSeconds, 0)) s idle − before, KiB", Double(after.rssKiB) - Double(before.rssKiB)),
            FloodFigure("samples", "samples (one a second)", Double(samples.count)),
        ]
        let notes = churn.failures.isEmpty ? [] : ["failures: " + churn.failures.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")]
        return FloodResult(scenario: .churn, setting: "", figures: f, before: before, peak: peak, after: after, samples: samples, notes: notes)
    }
}

extension FloodRunner {
    /// After a sampled run: `settleSeconds` idle, then the samples, the settled sample and the
    /// sample with the highest RSS.
    static func settle(_ name: String, _ c: FloodConfiguration, _ relay: FloodRelay, _ sampler: FloodSampler,
                       _ progress: ProgressLine) -> (samples: [FloodSample], after: FloodSample, peak: FloodSample?) {
        progress.update("\(name) done; \(fixed(c.settleSeconds, 0)) s idle")
        sleepNanoseconds(UInt64(c.settleSeconds * 1e9))
        let samples = sampler.stop()
        progress.finish()
        return (samples, relay.settledSample(), samples.max { $0.rssKiB < $1.rssKiB })
    }

    // MARK: soak

    /// `legitAllocations` allocations relaying at `legitPPS` for `seconds` while fresh clients
    /// allocate and delete (`LegitTraffic`; about 20 a second in the 20-minute run), then `settleSeconds` idle; RSS, open fds and
    /// allocations sampled every second.
    static func soak(_ c: FloodConfiguration, _ relay: FloodRelay, _ before: FloodSample, _ progress: ProgressLine,
                     lifetimes: String?) throws -> FloodResult {
        let legit = try LegitTraffic(relay: relay, c, seconds: c.seconds)
        let sampler = FloodSampler(relay: relay, maxSeconds: c.seconds + c.settleSeconds + 120)
        let start = monotonicNanoseconds()
        legit.start(allocating: true)
        let end = start + UInt64(c.seconds * 1e9)
        while monotonicNanoseconds() < end {
            progress.update("soak \(fixed(Double(monotonicNanoseconds() - start) / 1e9, 0))/\(fixed(c.seconds, 0)) s")
            sleepNanoseconds(min(1_000_000_000, end - min(end, monotonicNanoseconds())))
        }
        let (load, allocating) = legit.finish()
        let soakSeconds = Double(monotonicNanoseconds() - start) / 1e9
        let (samples, after, peak) = settle("soak", c, relay, sampler, progress)
        var f = [FloodFigure("seconds", "soak seconds", soakSeconds, digits: 1)]
        f += legit.figures(load: load, allocating: allocating)
        f += soakFigures(c, samples: samples, before: before, peak: peak, after: after, soakSeconds: soakSeconds)
        return FloodResult(scenario: .soak, setting: "", figures: f, before: before, peak: peak, after: after, samples: samples,
                           notes: lifetimeNotes(lifetimes))
    }

    /// What every soak reports of the relay from its samples: the most fds and allocations, and
    /// the RSS once warm (after its first minute, or the first third of a short run), at its
    /// highest, and after the idle settle.
    static func soakFigures(_ c: FloodConfiguration, samples: [FloodSample], before: FloodSample, peak: FloodSample?,
                            after: FloodSample, soakSeconds: Double) -> [FloodFigure] {
        let warm = samples.first { $0.seconds >= min(60, soakSeconds / 3) }
        return [
            FloodFigure("max_fds", "relay open fds, highest sample", Double(samples.map(\.fds).max() ?? 0)),
            FloodFigure("max_allocations", "relay allocations active, highest sample", samples.map { $0.metric("allocations") }.max() ?? 0),
            FloodFigure("rss_warm_kib", "relay RSS after its first minute (or third) of the soak, KiB", Double(warm?.rssKiB ?? 0)),
            FloodFigure("rss_peak_kib", "relay RSS, highest sample, KiB", Double(peak?.rssKiB ?? 0)),
            FloodFigure("rss_end_delta_kib", "relay RSS after \(fixed(c.settleSeconds, 0)) s idle − after the first minute (or third), KiB",
                        Double(after.rssKiB) - Double(warm?.rssKiB ?? after.rssKiB)),
            FloodFigure("rss_delta_kib", "relay RSS after − before, KiB", Double(after.rssKiB) - Double(before.rssKiB)),
            FloodFigure("samples", "samples (one a second)", Double(samples.count)),
        ]
    }

    static func lifetimeNotes(_ lifetimes: String?) -> [String] {
        guard let lifetimes else { return [] }
        return ["permission, channel and allocation lifetimes raised to \(lifetimes) s (non-standard): the load generator never refreshes"]
    }
}

/// Legitimate clients alongside a flood: `legitAllocations` allocations relaying at `legitPPS`
/// (a `LoadGenerator`, on a thread of its own once started), and optionally fresh clients that
/// allocate and delete, about 40 a second, until `finish`.
final class LegitTraffic: @unchecked Sendable {
    let generator: LoadGenerator
    private let relay: FloodRelay
    private var threads: [BenchThread] = []
    private let stopping = Atomic<Bool>(false)
    private var load: LoadResult?
    private var allocating: (tried: Int, ok: Int, failures: [String: Int])?
    /// How long the relaying runs; the allocating clients stop a minute after it at the latest.
    private let seconds: Double

    init(relay: FloodRelay, _ c: FloodConfiguration, seconds: Double) throws {
        var lc = LoadConfiguration(label: "legit", server: relay.listen, credentials: relay.credentials)
        lc.allocations = c.legitAllocations
        lc.targetPPS = c.legitPPS > 0 ? c.legitPPS : nil
        lc.seconds = seconds
        lc.relayPID = relay.pid
        lc.showProgress = false
        self.relay = relay
        self.seconds = seconds
        generator = try LoadGenerator(configuration: lc)
        try generator.setUp()
    }

    /// Allocations the generator and the allocating clients made.
    var allocationsCreated: Int { generator.clients.count + (allocating?.ok ?? 0) }

    func start(allocating alsoAllocate: Bool) {
        threads.append(BenchThread { [self] in load = generator.run() })
        if alsoAllocate { threads.append(BenchThread { [self] in allocateUntilStopped() }) }
    }

    /// Stops the allocating clients, waits for the load; its result and the allocation counts.
    func finish() -> (LoadResult?, (tried: Int, ok: Int, failures: [String: Int])?) {
        stopping.store(true, ordering: .relaxed)
        for t in threads { t.join() }
        threads = []
        return (load, allocating)
    }

    private func allocateUntilStopped() {
        let p = ControlPipeline(server: relay.listen)
        p.retransmitNanoseconds = 500_000_000
        p.retransmitBackoff = true
        p.maxAttempts = 7
        let now = unixSeconds()
        var i = 0
        // Bounded: until stopped, at most the relaying's length plus a minute (a soak churns for
        // its whole length).
        let end = monotonicNanoseconds() + UInt64((max(0, seconds) + 60) * 1e9)
        while !stopping.load(ordering: .relaxed) && monotonicNanoseconds() < end {
            guard let fd = try? openUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(127 << 24 | 61 << 16 | UInt32(i & 0xFFFF))), port: 0),
                                              bufferBytes: 64 << 10) else { break }
            let cr = relay.credentials.credentials(index: 100_000 + i, nowUnixSeconds: now)
            var job: ControlJob? = ControlJob(client: ControlClient(index: i, fd: fd, username: cr.username, password: cr.password),
                                              steps: [.allocate(), .refresh(lifetime: 0)])
            i += 1
            p.run(window: 1, deadline: monotonicNanoseconds() + 40_000_000_000) {
                defer { job = nil }
                return job
            }
            close(fd)
            sleepNanoseconds(25_000_000)
        }
        allocating = (p.completedJobs + p.failedJobs, p.completedJobs, p.failures)
    }

    func figures(load: LoadResult?, allocating: (tried: Int, ok: Int, failures: [String: Int])?) -> [FloodFigure] {
        var f: [FloodFigure] = []
        if let load {
            f.append(FloodFigure("legit_sent", "legitimate relaying: packets sent (\(generator.clients.count) allocations, both directions)", Double(load.sent)))
            f.append(FloodFigure("legit_loss_percent", "legitimate relaying: loss, %", load.lossRatio * 100, digits: 3))
        }
        if let a = allocating {
            f.append(FloodFigure("legit_allocations_tried", "legitimate clients allocating (and deleting) meanwhile", Double(a.tried)))
            f.append(FloodFigure("legit_allocation_success_percent", "legitimate allocations that succeeded, %", a.tried == 0 ? .nan : Double(a.ok) * 100 / Double(a.tried), digits: 1))
        }
        return f
    }
}
