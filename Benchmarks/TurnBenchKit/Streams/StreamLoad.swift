import CUDP
import Glibc
import Histogram
import RelayIO
import SocketAddressing
import STUN
import Synchronization

public struct StreamLoadConfiguration: Sendable {
    public var label: String
    public var transport: ClientTransport
    /// The server's address for this transport (its TLS port for .tls).
    public var server: TransportAddress
    public var credentials: CredentialSource
    public var clients = 16
    public var payloadBytes = 100
    /// Offered relayed packets per second, both directions together (the clients send half, the
    /// peer echoes the other half); nil = flat out (each client keeps `window` packets in flight).
    public var targetPPS: Double?
    public var seconds = 3.0
    public var drainSeconds = 0.3
    public var window = 32
    public var relayPID: Int32?
    /// Clients bind to 127.`sourceSubnet`.x.y so successive runs never reuse a 5-tuple.
    public var sourceSubnet: UInt8 = 60

    public init(label: String, transport: ClientTransport, server: TransportAddress, credentials: CredentialSource) {
        self.label = label
        self.transport = transport
        self.server = server
        self.credentials = credentials
    }
}

/// What one `streams` run measured. Relayed packets are counted at both ends: client → relay →
/// peer (received by the peer) and peer → relay → client (the peer's echo, received by the client).
public struct StreamLoadResult: Codable, Sendable, Equatable {
    public var server: String
    public var transport: ClientTransport
    public var round: Int
    public var clients: Int
    public var payloadBytes: Int
    /// 0 = flat out.
    public var targetPPS: Double
    public var seconds: Double
    public var clientSent: UInt64
    public var peerReceived: UInt64
    public var peerEchoed: UInt64
    public var clientReceived: UInt64
    /// Messages the clients could not hand to the socket (full buffer): not counted as sent.
    public var clientDropped: UInt64
    public var relayCPUSeconds: Double?
    /// Times the relay's threads were put on a CPU over the window (schedstat): its wake-ups.
    public var relayTimesScheduled: UInt64?
    /// The relay's user and system (kernel) clock ticks over the window (/proc/PID/stat): how its
    /// CPU time divides, sampled at each tick (so only a share, not to the nanosecond).
    public var relayUserTicks: UInt64?
    public var relaySystemTicks: UInt64?
    public var benchCPUSeconds: Double
    /// Round trip client → peer → client.
    public var roundTrip: LatencySummary

    public var offeredPPS: Double { seconds > 0 ? Double(clientSent + peerEchoed) / seconds : 0 }
    public var deliveredPPS: Double { seconds > 0 ? Double(peerReceived + clientReceived) / seconds : 0 }
    public var lossRatio: Double {
        let offered = clientSent + peerEchoed
        return offered == 0 ? 0 : max(0, 1 - Double(peerReceived + clientReceived) / Double(offered))
    }
    public var relayCPUMicrosPerPacket: Double? {
        let relayed = peerReceived + clientReceived
        guard let cpu = relayCPUSeconds, relayed > 0 else { return nil }
        return cpu * 1e6 / Double(relayed)
    }
    /// The kernel's share of the relay's CPU time over the window (system ticks ÷ all ticks).
    public var relaySystemShare: Double? {
        guard let u = relayUserTicks, let s = relaySystemTicks, u + s > 0 else { return nil }
        return Double(s) / Double(u + s)
    }
    /// The relay's CPU per relayed packet spent in the kernel (its system share of the precise
    /// CPU time): what no user-space change takes away.
    public var relaySystemMicrosPerPacket: Double? {
        guard let share = relaySystemShare, let total = relayCPUMicrosPerPacket else { return nil }
        return share * total
    }
    /// The relay's wake-ups per relayed packet: below 1 only where one wake-up serves several.
    public var relayWakeUpsPerPacket: Double? {
        let relayed = peerReceived + clientReceived
        guard let n = relayTimesScheduled, relayed > 0 else { return nil }
        return Double(n) / Double(relayed)
    }

    /// The row `ComparisonTable` aggregates (server named as in the table).
    public func row(server name: String) -> RunRow {
        RunRow(server: name, round: round, targetPPS: targetPPS, offeredPPS: offeredPPS, deliveredPPS: deliveredPPS,
               lossRatio: lossRatio, relayCPUMicrosPerPacket: relayCPUMicrosPerPacket, p50Micros: roundTrip.p50,
               p99Micros: roundTrip.p99, benchCPUSeconds: benchCPUSeconds, seconds: seconds)
    }
}

/// One UDP peer socket that echoes every datagram back to where it came from (the relayed
/// address), counting them, on its own thread.
final class EchoPeer: @unchecked Sendable {
    let fd: Int32
    let address: TransportAddress
    let stop = Atomic<Bool>(false)
    let counting = Atomic<Bool>(false)
    private(set) var received: UInt64 = 0
    private(set) var echoed: UInt64 = 0
    private var thread: BenchThread?

    init() throws(SocketError) {
        // 127.250.0.1: not the relay's own address (a relay may treat that as hairpin).
        fd = try openUDPSocket(bindTo: TransportAddress(ip: .v4(IPv4Address(127, 250, 0, 1)), port: 0))
        guard let a = TransportAddress.local(of: fd) else { close(fd); throw SocketError(call: "getsockname", errno: errno) }
        address = a
    }

    deinit { close(fd) }

    func start(hardEnd: UInt64) {
        thread = BenchThread { [self] in run(hardEnd: hardEnd) }
    }

    func finish() {
        stop.store(true, ordering: .relaxed)
        thread?.join()
        thread = nil
    }

    private func run(hardEnd: UInt64) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
        defer { buffer.deallocate() }
        var from = sockaddr_storage()
        while !stop.load(ordering: .relaxed) && monotonicNanoseconds() < hardEnd {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 5) > 0 else { continue }
            for _ in 0..<256 {
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
                if n <= 0 { break }
                guard counting.load(ordering: .relaxed) else { continue }
                received += 1
                let rc = withUnsafePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buffer.baseAddress, n, 0, $0, length) }
                }
                if rc == n { echoed += 1 }
            }
        }
    }
}

/// `clients` TURN clients over one transport, each with its own connection, allocation and a
/// channel to one echoing UDP peer; sends paced ChannelData for `seconds` and counts what comes back.
public final class StreamLoad {
    public let configuration: StreamLoadConfiguration
    public private(set) var clients: [StreamTURNClient] = []
    let peer: EchoPeer
    let tls: TLSContext?
    public static let channel: UInt16 = 0x4000

    public init(configuration: StreamLoadConfiguration, tls: TLSContext? = nil) throws {
        self.configuration = configuration
        self.tls = tls
        peer = try EchoPeer()
    }

    /// Connects (and handshakes), allocates and binds a channel to the peer, client after client.
    public func setUp() throws {
        let c = configuration
        let now = unixSeconds()
        for i in 0..<c.clients {
            let source = sourceAddress(subnet: c.sourceSubnet, index: i + 1, family: .ipv4)
            let connection = try StreamClient(transport: c.transport, server: c.server, source: source, tls: tls)
            let creds = c.credentials.credentials(index: i, nowUnixSeconds: now)
            let client = StreamTURNClient(connection: connection, username: creds.username, password: creds.password)
            try client.request(.allocate(family: nil))
            guard let relayed = client.relayedAddress, relayed.ip.isLoopback else {
                throw LoadError.setupFailed("relayed address \(String(describing: client.relayedAddress)) is not loopback")
            }
            try client.request(.channelBind(channel: Self.channel, peer: peer.address))
            clients.append(client)
        }
    }

    /// Sends for `seconds` (paced, or flat out with a window), drains, and reports.
    public func run(round: Int = 0) -> StreamLoadResult {
        let c = configuration
        let padded = c.transport != .udp
        let payload = max(c.payloadBytes, BenchPayload.headerLength)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 + payload + 4, alignment: 8)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        defer { buffer.deallocate() }
        var histogram = LatencyHistogram.make()
        var sent = [UInt64](repeating: 0, count: clients.count)
        var received = [UInt64](repeating: 0, count: clients.count)
        var lastProgress = [UInt64](repeating: 0, count: clients.count)
        var forgiven = [UInt64](repeating: 0, count: clients.count)
        var dropped0: UInt64 = 0
        for cl in clients { dropped0 += cl.connection.dropped }
        var pollFDs = clients.map { pollfd(fd: $0.connection.fd, events: Int16(POLLIN), revents: 0) }

        let durationNs = UInt64(c.seconds * 1e9)
        let drainNs = UInt64(c.drainSeconds * 1e9)
        let relayCPU0 = c.relayPID.flatMap(ProcessStats.preciseCPUSeconds(pid:))
        let relayScheduled0 = c.relayPID.flatMap(ProcessStats.timesScheduled(pid:))
        let relayTicks0 = c.relayPID.flatMap(ProcessStats.cpuTickSplit(pid:))
        let ownCPU0 = ownCPUSeconds()
        let start = monotonicNanoseconds()
        let end = start + durationNs
        peer.counting.store(true, ordering: .relaxed)
        peer.start(hardEnd: end + drainNs + 5_000_000_000)
        // Each client sends half the offered rate's share (the peer's echo is the other half).
        let perClientInterval: Double? = c.targetPPS.map { Double(clients.count) * 2 / $0 * 1e9 }

        func drain(_ i: Int) {
            let clientIndex = i
            let before = received[i]
            clients[i].connection.receive { m in
                guard let p = BenchChannelData.payload(m), p.flow == UInt32(clientIndex) else { return }
                received[clientIndex] += 1
                let now = monotonicNanoseconds()
                if now > p.sentNanoseconds { histogram.record(now - p.sentNanoseconds) }
            }
            if received[i] > before { lastProgress[i] = monotonicNanoseconds() }
        }

        while true {
            let now = monotonicNanoseconds()
            if now >= end { break }
            for (i, client) in clients.enumerated() {
                let connection = client.connection
                connection.flush()
                if let interval = perClientInterval {
                    // Offsets spread the clients over one interval.
                    let due = UInt64((Double(now - start) + interval * Double(i) / Double(clients.count)) / interval)
                    var burst = 0
                    while sent[i] < due && burst < 64 {
                        let n = BenchChannelData.write(into: buffer, channel: Self.channel, payloadBytes: payload, padded: padded,
                                                       flow: UInt32(i), sequence: sent[i], now: now)
                        if connection.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) { sent[i] += 1 } else { break }
                        burst += 1
                    }
                } else {
                    // Flat out: a window of packets in flight; ones lost for 20 ms are given up on.
                    if now - max(lastProgress[i], start) > 20_000_000 {
                        forgiven[i] = sent[i] - min(sent[i], received[i])
                        lastProgress[i] = now
                    }
                    while sent[i] - min(sent[i], received[i] + forgiven[i]) < UInt64(c.window) {
                        let n = BenchChannelData.write(into: buffer, channel: Self.channel, payloadBytes: payload, padded: padded,
                                                       flow: UInt32(i), sequence: sent[i], now: now)
                        if connection.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) { sent[i] += 1 } else { break }
                    }
                }
            }
            // Wait for answers, at most until the next send is due (1 ms granularity when paced).
            let timeout: Int32 = 1
            for k in pollFDs.indices { pollFDs[k].revents = 0 }
            if poll(&pollFDs, nfds_t(pollFDs.count), timeout) > 0 {
                for i in pollFDs.indices where pollFDs[i].revents != 0 { drain(i) }
            }
        }
        let sendEnd = monotonicNanoseconds()
        let drainEnd = sendEnd + drainNs
        while monotonicNanoseconds() < drainEnd {
            for k in pollFDs.indices { pollFDs[k].revents = 0 }
            if poll(&pollFDs, nfds_t(pollFDs.count), 5) > 0 {
                for i in pollFDs.indices where pollFDs[i].revents != 0 { drain(i) }
            }
            for cl in clients { cl.connection.flush() }
        }
        peer.counting.store(false, ordering: .relaxed)
        peer.finish()
        let relayCPU1 = c.relayPID.flatMap(ProcessStats.preciseCPUSeconds(pid:))
        let relayScheduled1 = c.relayPID.flatMap(ProcessStats.timesScheduled(pid:))
        let relayTicks1 = c.relayPID.flatMap(ProcessStats.cpuTickSplit(pid:))
        let ownCPU1 = ownCPUSeconds()
        var dropped1: UInt64 = 0
        for cl in clients { dropped1 += cl.connection.dropped }
        var relayCPU: Double?
        if let a = relayCPU0, let b = relayCPU1 { relayCPU = b - a }
        return StreamLoadResult(server: c.label, transport: c.transport, round: round, clients: clients.count,
                                payloadBytes: payload, targetPPS: c.targetPPS ?? 0, seconds: Double(sendEnd - start) / 1e9,
                                clientSent: sent.reduce(0, +), peerReceived: peer.received, peerEchoed: peer.echoed,
                                clientReceived: received.reduce(0, +), clientDropped: dropped1 - dropped0,
                                relayCPUSeconds: relayCPU,
                                relayTimesScheduled: relayScheduled0.flatMap { a in relayScheduled1.map { $0 &- a } },
                                relayUserTicks: relayTicks0.flatMap { a in relayTicks1.map { $0.user &- a.user } },
                                relaySystemTicks: relayTicks0.flatMap { a in relayTicks1.map { $0.system &- a.system } },
                                benchCPUSeconds: ownCPU1 - ownCPU0,
                                roundTrip: LatencySummary(nanoseconds: histogram))
    }

    /// Closes the connections (which ends a TCP/TLS allocation); over UDP deletes the allocations
    /// first (Refresh 0, best effort).
    public func tearDown() {
        for client in clients where configuration.transport == .udp {
            _ = try? client.request(.refresh(lifetime: 0), timeoutMilliseconds: 500)
        }
        clients = []
    }
}
