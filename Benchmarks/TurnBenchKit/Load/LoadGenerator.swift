import CUDP
import Glibc
import SocketAddressing
import STUN
import Synchronization

public struct LoadConfiguration: Sendable {
    public var label: String
    public var server: TransportAddress
    public var credentials: CredentialSource
    public var allocations: Int = 64
    public var payloadBytes: Int = 100
    /// Target total packets/s over all directions; nil for flat out.
    public var targetPPS: Double?
    public var seconds: Double = 5
    public var directions: [Direction] = Direction.allCases
    public var batch: Int = 32
    /// How long the receiver keeps going after the last send.
    public var drainSeconds: Double = 0.3
    public var relayPID: Int32?
    public var setupWindow: Int = 32
    public var showProgress = true

    public init(label: String, server: TransportAddress, credentials: CredentialSource) {
        self.label = label
        self.server = server
        self.credentials = credentials
    }
}

public enum LoadError: Error, CustomStringConvertible {
    case notLoopback(TransportAddress)
    case socket(SocketError)
    case setupFailed(String)

    public var description: String {
        switch self {
        case .notLoopback(let a): return "\(a) is not a loopback address; turn-bench only sends to loopback"
        case .socket(let e): return e.description
        case .setupFailed(let s): return "allocation setup failed: \(s)"
        }
    }
}

/// Sets up allocations with channels to peer sockets it owns, drives ChannelData through them and
/// measures what comes out.
public final class LoadGenerator {
    public let configuration: LoadConfiguration
    public private(set) var clients: [ControlClient] = []
    public private(set) var peerFDs: [Int32] = []
    public private(set) var peerAddresses: [TransportAddress] = []
    public private(set) var setupSeconds: Double = 0
    public static let channel: UInt16 = 0x4000
    /// Counts generators in this process, so each uses its own client source addresses.
    static let generations = Atomic<Int>(0)

    public init(configuration: LoadConfiguration) throws(LoadError) {
        guard configuration.server.ip.isLoopback else { throw .notLoopback(configuration.server) }
        self.configuration = configuration
    }

    deinit { closeAll() }

    /// Opens one client and one peer socket per allocation, then Allocate (answering the 401
    /// challenge) and ChannelBind to the peer, `setupWindow` allocations at a time.
    public func setUp() throws(LoadError) {
        let c = configuration
        let peerBindAddress = TransportAddress(ip: c.server.family == .ipv4 ? .v4(IPv4Address(127, 250, 0, 1)) : .v6(.loopback), port: 0)
        let now = unixSeconds()
        // Clients of successive runs come from different loopback addresses (127.10-109.x.y), so a
        // 5-tuple never meets an allocation the server still remembers from an earlier run.
        let generation = Self.generations.add(1, ordering: .relaxed).newValue
        for i in 0..<c.allocations {
            do {
                let source = sourceAddress(subnet: UInt8(10 + generation % 100), index: i, family: c.server.family)
                let fd = try openUDPSocket(bindTo: source)
                let creds = c.credentials.credentials(index: i, nowUnixSeconds: now)
                clients.append(ControlClient(index: i, fd: fd, username: creds.username, password: creds.password))
                // Peers sit on 127.250.0.1, not on the relay's own 127.0.0.1: a relay may treat its own
                // address as "relay self" and allow only its relay ports there (hairpin).
                let peer = try openUDPSocket(bindTo: peerBindAddress)
                peerFDs.append(peer)
                guard let a = TransportAddress.local(of: peer) else { throw LoadError.setupFailed("getsockname") }
                peerAddresses.append(a)
            } catch let e as SocketError {
                throw .socket(e)
            } catch {
                throw .setupFailed("\(error)")
            }
        }
        let pipeline = ControlPipeline(server: c.server)
        var next = 0
        let start = monotonicNanoseconds()
        pipeline.run(window: c.setupWindow, deadline: start + 60_000_000_000) {
            guard next < clients.count else { return nil }
            defer { next += 1 }
            return ControlJob(client: clients[next], steps: [.allocate(family: requestedFamily(c.server)), .channelBind(channel: Self.channel, peer: peerAddresses[next])])
        }
        setupSeconds = Double(monotonicNanoseconds() - start) / 1e9
        guard pipeline.failedJobs == 0 else {
            throw .setupFailed("\(pipeline.failedJobs) of \(clients.count) failed: \(pipeline.failures)")
        }
        for client in clients {
            guard let relayed = client.relayedAddress, relayed.ip.isLoopback else {
                throw .setupFailed("relayed address \(String(describing: client.relayedAddress)) is not loopback")
            }
        }
    }

    /// Sends for `seconds`, drains, and reports.
    public func run() -> LoadResult {
        let c = configuration
        let live = LiveCounters()
        var flows: [SendFlow] = []
        for (i, client) in clients.enumerated() {
            for d in c.directions {
                var f = SendFlow(fd: d == .clientToPeer ? client.fd : peerFDs[i],
                                 channel: d == .clientToPeer ? Self.channel : 0,
                                 flow: BenchPayload.flow(allocation: i, direction: d),
                                 directionIndex: d == .clientToPeer ? 0 : 1)
                let destination = d == .clientToPeer ? c.server : (client.relayedAddress ?? c.server)
                f.destination = cu_addr(destination)
                flows.append(f)
            }
        }
        let sender = Sender(flows: flows, batch: c.batch, payloadBytes: max(c.payloadBytes, BenchPayload.headerLength), live: live)
        var endpoints: [Receiver.Endpoint] = []
        for (i, client) in clients.enumerated() {
            endpoints.append(.init(fd: client.fd, isClient: true))
            endpoints.append(.init(fd: peerFDs[i], isClient: false))
        }
        let receiver = Receiver(endpoints: endpoints, flowCount: clients.count * 2, live: live)

        let durationNs = UInt64(c.seconds * 1e9)
        let relayCPU0 = c.relayPID.flatMap(ProcessStats.cpuSeconds(pid:))
        let ownCPU0 = ownCPUSeconds()
        let heap0 = AllocationCounter.count()
        let hardEnd = monotonicNanoseconds() + durationNs + UInt64(c.drainSeconds * 1e9) + 5_000_000_000
        let receiverThread = BenchThread { receiver.run(hardEnd: hardEnd) }
        let start = monotonicNanoseconds()
        let end = start + durationNs
        let rate = c.targetPPS
        let senderThread = BenchThread { sender.run(start: start, end: end, rate: rate) }

        let progress = ProgressLine(enabled: c.showProgress)
        var lastSent: UInt64 = 0, lastReceived: UInt64 = 0, lastT = start
        while monotonicNanoseconds() < end {
            sleepNanoseconds(min(500_000_000, end - min(end, monotonicNanoseconds())))
            let t = monotonicNanoseconds()
            let s = live.sent.load(ordering: .relaxed), r = live.received.load(ordering: .relaxed)
            let dt = Double(t - lastT) / 1e9
            if dt > 0 {
                progress.update("[\(c.label)] \(fixed(Double(t - start) / 1e9, 1))/\(fixed(c.seconds, 0)) s  sent \(Int(Double(s - lastSent) / dt)) pps  received \(Int(Double(r &- lastReceived) / dt)) pps  total \(s)/\(r)")
            }
            lastSent = s; lastReceived = r; lastT = t
        }
        senderThread.join()
        let sendEnd = monotonicNanoseconds()
        sleepNanoseconds(UInt64(c.drainSeconds * 1e9))
        live.stopReceiving.store(true, ordering: .relaxed)
        receiverThread.join()
        progress.finish()
        let relayCPU1 = c.relayPID.flatMap(ProcessStats.cpuSeconds(pid:))
        let ownCPU1 = ownCPUSeconds()
        let heap1 = AllocationCounter.count()

        let seconds = Double(sendEnd - start) / 1e9
        var directions: [DirectionResult] = []
        for d in c.directions {
            let di = d == .clientToPeer ? 0 : 1
            var sent: UInt64 = 0, errors: UInt64 = 0, received: UInt64 = 0, dups: UInt64 = 0, reord: UInt64 = 0, lost: UInt64 = 0
            for f in sender.flows where f.directionIndex == di {
                let t = receiver.trackers[Int(f.flow)]
                sent += f.sent
                errors += f.sendErrors
                received += t.received
                dups += t.duplicates
                reord += t.reordered
                lost += t.lost(sent: f.sent)
            }
            directions.append(DirectionResult(direction: d, sent: sent, sendErrors: errors, received: received, duplicates: dups,
                                              reordered: reord, lost: lost, offeredPPS: Double(sent) / seconds,
                                              deliveredPPS: Double(received) / seconds,
                                              latency: LatencySummary(nanoseconds: receiver.histograms[di])))
        }
        var relayCPU: Double?
        if let a = relayCPU0, let b = relayCPU1 { relayCPU = b - a }
        var result = LoadResult(server: c.label, allocations: clients.count, payloadBytes: max(c.payloadBytes, BenchPayload.headerLength),
                                targetPPS: c.targetPPS, seconds: seconds, directions: directions,
                                benchCPUSeconds: ownCPU1 - ownCPU0, relayCPUSeconds: relayCPU)
        if let a = heap0, let b = heap1 { result.benchHeapAllocations = b - a }
        return result
    }

    /// Deletes the allocations (Refresh with LIFETIME 0) and closes the sockets.
    public func tearDown() {
        let pipeline = ControlPipeline(server: configuration.server)
        pipeline.maxAttempts = 2
        var next = 0
        let ready = clients.filter { $0.relayedAddress != nil }
        pipeline.run(window: configuration.setupWindow, deadline: monotonicNanoseconds() + 10_000_000_000) {
            guard next < ready.count else { return nil }
            defer { next += 1 }
            return ControlJob(client: ready[next], steps: [.refresh(lifetime: 0)])
        }
        closeAll()
    }

    private func closeAll() {
        for c in clients { close(c.fd) }
        for p in peerFDs { close(p) }
        clients = []
        peerFDs = []
    }
}
