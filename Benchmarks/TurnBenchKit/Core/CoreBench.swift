import RelayCore
import STUN

/// What `core` measured.
public struct CoreResult: Codable, Sendable, Equatable {
    public struct FastPath: Codable, Sendable, Equatable {
        public var allocations: Int
        public var direction: Direction
        public var batch: Int
        public var packets: UInt64
        /// Datagrams the core put in the outbound batch (must equal `packets`).
        public var forwarded: UInt64
        /// Wall time per packet.
        public var nanosecondsPerPacket: Double
        /// Thread CPU time per packet (robust to other load on the machine).
        public var cpuNanosecondsPerPacket: Double
        /// Packets per second of thread CPU time.
        public var packetsPerSecond: Double
        /// Heap allocations per packet during the timed loop; nil without the malloc counter.
        public var heapAllocationsPerPacket: Double?
    }

    public struct SlowPath: Codable, Sendable, Equatable {
        public var request: String
        public var requests: Int
        public var succeeded: Int
        /// Requests per second of thread CPU time.
        public var requestsPerSecond: Double
        /// Thread CPU time per request.
        public var microsecondsPerRequest: Double
        public var wallMicrosecondsPerRequest: Double
        public var heapAllocationsPerRequest: Double?
    }

    public var fastPath: [FastPath]
    public var slowPath: [SlowPath]
    public var errors: [String]
}

public struct CoreConfiguration: Sendable {
    public var allocationCounts: [Int] = [1, 1000, 10_000]
    public var batch = 64
    public var payloadBytes = 100
    /// Upper bound on the timed loop of each fast-path case.
    public var seconds = 1.0
    public var maxPacketsPerCase: UInt64 = 20_000_000
    public var slowPathRequests = 4000
    public var showProgress = true
    public init() {}
}

/// Drives `RelayCore.Server` in process, without sockets, with a fixed clock: allocations and
/// channels are set up by feeding it real STUN requests through `process`, then batches of
/// ChannelData (client → peer) and peer datagrams (peer → client) are timed.
public final class CoreBench {
    static let relayAddress = IPv4Address(203, 0, 113, 1)
    static let username = "bench"
    static let password = "bench-password"
    static let realm = "bench"
    static let channel: UInt16 = 0x4000

    struct Client {
        var address: TransportAddress
        var peer: TransportAddress
        var auth: ControlAuth?
        var handle: SocketHandle?
    }

    let server: Server
    let out = OutboundBatch(capacity: 1024, arenaBytes: 512 * 1024)
    let now = Instant(seconds: 1_800_000_000)
    let key: [UInt8]
    var clients: [Client] = []
    var generator = SystemRandomNumberGenerator()
    /// Scratch slot for single requests, with the headroom/tailroom the boundary promises.
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: InboundDatagram.headroom + 2048 + InboundDatagram.tailroom, alignment: 16)

    public init(maxAllocations: Int) {
        var config = ServerConfiguration(relayAddressIPv4: Self.relayAddress)
        config.realm = Self.realm
        config.credentials = CredentialStore(staticUsers: [Self.username: Self.password])
        // Peers live in 198.18.0.0/15 (benchmarking range, RFC 2544), which the default policy denies.
        config.peerPolicy = PeerPolicy(allow: [CIDR("198.18.0.0/15")].compactMap { $0 })
        config.maxAllocations = maxAllocations + 16
        config.maxAllocationsPerUsername = maxAllocations + 16
        config.challengesPerSecondPerSource = 1_000_000
        config.transactionCacheSize = 64
        server = Server(configuration: config, random: SystemRandomNumberGenerator(), now: now)
        key = ControlCodec.longTermKey(username: Self.username, realm: Self.realm, password: Self.password)
    }

    deinit { scratch.deallocate() }

    static func clientAddress(_ i: Int) -> TransportAddress {
        TransportAddress(ip: .v4(IPv4Address(10 << 24 | UInt32(truncatingIfNeeded: i) & 0xFF_FFFF)), port: 40000)
    }

    static func peerAddress(_ i: Int, _ n: Int = 0) -> TransportAddress {
        TransportAddress(ip: .v4(IPv4Address(198 << 24 | 18 << 16 | UInt32(truncatingIfNeeded: i) & 0x1_FFFF)), port: UInt16(50000 + n))
    }

    // MARK: - Driving the core with single requests

    /// Feeds one datagram from `source` on the IPv4 listener; answers socket opens; returns the
    /// STUN responses addressed to `source`, decoded.
    func exchange(_ request: ControlRequest, from source: TransportAddress, auth: ControlAuth?) -> (ControlResponse?, SocketHandle?) {
        let tid = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let payload = scratch + InboundDatagram.headroom
        guard let n = ControlCodec.encode(request, transactionID: tid, auth: auth,
                                          into: UnsafeMutableRawBufferPointer(start: payload, count: 2048)) else { return (nil, nil) }
        var datagram = InboundDatagram(socket: .listener(.ipv4), source: source, bytes: payload, length: n, bufferID: 0)
        out.reset()
        withUnsafePointer(to: &datagram) { server.process(UnsafeBufferPointer(start: $0, count: 1), now: now, into: out) }
        var responses = decodeResponses(to: source)
        var opened: SocketHandle?
        let requests = out.socketRequests
        for r in requests {
            if case .open(let handle, _, _) = r {
                opened = handle
                out.reset()
                server.socketOpened(handle, result: .opened, now: now, into: out)
                responses += decodeResponses(to: source)
            }
        }
        return (responses.first { $0.transactionID == tid }, opened)
    }

    func decodeResponses(to destination: TransportAddress) -> [ControlResponse] {
        out.datagrams.compactMap { d in
            guard d.destination == destination else { return nil }
            return ControlCodec.decode(UnsafeRawBufferPointer(start: d.bytes, count: d.length))
        }
    }

    /// Allocate (401, then authenticated) and ChannelBind 0x4000 for `count` clients.
    func setUp(count: Int) throws(LoadError) {
        for i in 0..<count {
            var c = Client(address: Self.clientAddress(i), peer: Self.peerAddress(i), auth: nil, handle: nil)
            let (challenge, _) = exchange(.allocate(), from: c.address, auth: nil)
            guard let challenge, challenge.errorCode == 401, let nonce = challenge.nonce else {
                throw .setupFailed("core: Allocate without credentials got \(String(describing: challenge)), expected 401 with a NONCE")
            }
            c.auth = ControlAuth(username: Self.username, realm: challenge.realm ?? Self.realm, nonce: nonce, key: key)
            let (allocated, handle) = exchange(.allocate(), from: c.address, auth: c.auth)
            guard let allocated, allocated.isSuccess, let handle else {
                throw .setupFailed("core: authenticated Allocate got \(String(describing: allocated))")
            }
            c.handle = handle
            let (bound, _) = exchange(.channelBind(channel: Self.channel, peer: c.peer), from: c.address, auth: c.auth)
            guard let bound, bound.isSuccess else {
                throw .setupFailed("core: ChannelBind got \(String(describing: bound))")
            }
            clients.append(c)
        }
    }

    // MARK: - Fast path

    /// Times `process` on batches of prepared datagrams cycling over all allocations.
    func fastPath(direction: Direction, config: CoreConfiguration) -> CoreResult.FastPath {
        let pool = max(config.batch, min(clients.count, 16_384))
        let headerBytes = direction == .clientToPeer ? ChannelData.headerLength : 0
        let slot = (InboundDatagram.headroom + headerBytes + config.payloadBytes + InboundDatagram.tailroom + 63) & ~63
        let arena = UnsafeMutableRawPointer.allocate(byteCount: slot * pool, alignment: 64)
        defer { arena.deallocate() }
        let datagrams = UnsafeMutablePointer<InboundDatagram>.allocate(capacity: pool)
        defer { datagrams.deallocate() }
        for k in 0..<pool {
            let c = clients[k % clients.count]
            let bytes = arena + k * slot + InboundDatagram.headroom
            for b in 0..<(headerBytes + config.payloadBytes) { bytes.storeBytes(of: UInt8(truncatingIfNeeded: b), toByteOffset: b, as: UInt8.self) }
            if direction == .clientToPeer {
                bytes.storeBytes(of: Self.channel.bigEndian, toByteOffset: 0, as: UInt16.self)
                bytes.storeBytes(of: UInt16(config.payloadBytes).bigEndian, toByteOffset: 2, as: UInt16.self)
                (datagrams + k).initialize(to: InboundDatagram(socket: .listener(.ipv4), source: c.address, bytes: bytes,
                                                               length: headerBytes + config.payloadBytes, bufferID: UInt32(k)))
            } else {
                (datagrams + k).initialize(to: InboundDatagram(socket: c.handle ?? .listener(.ipv4), source: c.peer, bytes: bytes,
                                                               length: config.payloadBytes, bufferID: UInt32(k)))
            }
        }
        let batches = pool / config.batch
        var packets: UInt64 = 0, forwarded: UInt64 = 0
        // Warm-up pass over the whole pool (first touches of tables and caches), not timed.
        for b in 0..<batches {
            out.reset()
            server.process(UnsafeBufferPointer(start: datagrams + b * config.batch, count: config.batch), now: now, into: out)
        }
        let deadline = monotonicNanoseconds() + UInt64(config.seconds * 1e9)
        let allocs0 = AllocationCounter.count()
        let cpu0 = threadCPUNanoseconds()
        let start = monotonicNanoseconds()
        var end = start
        var b = 0
        while packets < config.maxPacketsPerCase {
            out.reset()
            server.process(UnsafeBufferPointer(start: datagrams + b * config.batch, count: config.batch), now: now, into: out)
            forwarded &+= UInt64(out.count)
            packets &+= UInt64(config.batch)
            b += 1
            if b == batches { b = 0 }
            if packets % UInt64(config.batch * 256) == 0 {
                end = monotonicNanoseconds()
                if end >= deadline { break }
            }
        }
        end = monotonicNanoseconds()
        let cpu = Double(threadCPUNanoseconds() - cpu0)
        let allocs1 = AllocationCounter.count()
        out.reset()
        let ns = Double(end - start)
        var perPacket: Double?
        if let a = allocs0, let z = allocs1 { perPacket = Double(z - a) / Double(packets) }
        return CoreResult.FastPath(allocations: clients.count, direction: direction, batch: config.batch, packets: packets,
                                   forwarded: forwarded, nanosecondsPerPacket: ns / Double(packets),
                                   cpuNanosecondsPerPacket: cpu / Double(packets),
                                   packetsPerSecond: Double(packets) / cpu * 1e9, heapAllocationsPerPacket: perPacket)
    }

    // MARK: - Slow path

    /// Times a list of pre-encoded requests fed in batches, answering socket opens as the shell
    /// would; counts success responses.
    func timeRequests(name: String, _ requests: [(source: TransportAddress, bytes: [UInt8])], batch: Int) -> CoreResult.SlowPath {
        let slot = (InboundDatagram.headroom + 512 + InboundDatagram.tailroom + 63) & ~63
        let arena = UnsafeMutableRawPointer.allocate(byteCount: slot * max(requests.count, 1), alignment: 64)
        defer { arena.deallocate() }
        var datagrams: [InboundDatagram] = []
        datagrams.reserveCapacity(requests.count)
        for (k, r) in requests.enumerated() {
            let bytes = arena + k * slot + InboundDatagram.headroom
            r.bytes.withUnsafeBytes { src in
                if let base = src.baseAddress { bytes.copyMemory(from: base, byteCount: min(src.count, 512)) }
            }
            datagrams.append(InboundDatagram(socket: .listener(.ipv4), source: r.source, bytes: bytes, length: min(r.bytes.count, 512), bufferID: UInt32(k)))
        }
        var succeeded = 0
        func countSuccesses() {
            for d in out.datagrams {
                let b = UnsafeRawBufferPointer(start: d.bytes, count: d.length)
                // Success responses: class bits 0b10 (0x0100 set, 0x0010 clear) in the type.
                if b.count >= 20, b[0] & 0xC0 == 0, b[0] & 0x01 == 0x01, b[1] & 0x10 == 0 { succeeded += 1 }
            }
        }
        let allocs0 = AllocationCounter.count()
        let cpu0 = threadCPUNanoseconds()
        let start = monotonicNanoseconds()
        datagrams.withUnsafeBufferPointer { all in
            var i = 0
            while i < all.count {
                let n = min(batch, all.count - i)
                out.reset()
                server.process(UnsafeBufferPointer(rebasing: all[i..<(i + n)]), now: now, into: out)
                countSuccesses()
                let opens = out.socketRequests.compactMap { r -> SocketHandle? in
                    if case .open(let h, _, _) = r { return h }
                    return nil
                }
                for h in opens {
                    out.reset()
                    server.socketOpened(h, result: .opened, now: now, into: out)
                    countSuccesses()
                }
                i += n
            }
        }
        let ns = Double(monotonicNanoseconds() - start)
        let cpu = Double(threadCPUNanoseconds() - cpu0)
        let allocs1 = AllocationCounter.count()
        out.reset()
        var perRequest: Double?
        if let a = allocs0, let z = allocs1, !requests.isEmpty { perRequest = Double(z - a) / Double(requests.count) }
        return CoreResult.SlowPath(request: name, requests: requests.count, succeeded: succeeded,
                                   requestsPerSecond: Double(requests.count) / cpu * 1e9,
                                   microsecondsPerRequest: cpu / 1000 / Double(max(requests.count, 1)),
                                   wallMicrosecondsPerRequest: ns / 1000 / Double(max(requests.count, 1)),
                                   heapAllocationsPerRequest: perRequest)
    }

    func encode(_ request: ControlRequest, auth: ControlAuth?) -> [UInt8] {
        let tid = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = buf.withUnsafeMutableBytes { ControlCodec.encode(request, transactionID: tid, auth: auth, into: $0) } ?? 0
        return Array(buf[0..<n])
    }

    /// Authenticated Allocate, ChannelBind and Refresh per second, plus the 401 challenge itself.
    func slowPath(count: Int, batch: Int) -> [CoreResult.SlowPath] {
        // Challenges: unauthenticated Allocates from fresh addresses; their nonces feed the next step.
        let fresh = (0..<count).map { Self.clientAddress(0x80_0000 + $0) }
        let challenge = timeRequests(name: "Allocate → 401 challenge", fresh.map { ($0, encode(.allocate(), auth: nil)) }, batch: batch)
        // The nonces (stateless, bound to the source address) are fetched untimed.
        var auths: [ControlAuth] = []
        for a in fresh {
            let (r, _) = exchange(.allocate(), from: a, auth: nil)
            guard let nonce = r?.nonce else { return [challenge] }
            auths.append(ControlAuth(username: Self.username, realm: r?.realm ?? Self.realm, nonce: nonce, key: key))
        }
        let allocate = timeRequests(name: "Allocate (authenticated)", zip(fresh, auths).map { ($0, encode(.allocate(), auth: $1)) }, batch: batch)
        let bind = timeRequests(name: "ChannelBind (authenticated)", zip(fresh, auths).enumerated().map { i, p in
            (p.0, encode(.channelBind(channel: 0x4001, peer: Self.peerAddress(0x1_0000 + i, 1)), auth: p.1))
        }, batch: batch)
        let refresh = timeRequests(name: "Refresh (authenticated)", zip(fresh, auths).map { ($0, encode(.refresh(lifetime: 600), auth: $1)) }, batch: batch)
        return [challenge, allocate, bind, refresh]
    }

    // MARK: - The whole mode

    public static func run(_ config: CoreConfiguration) -> CoreResult {
        let progress = ProgressLine(enabled: config.showProgress)
        var result = CoreResult(fastPath: [], slowPath: [], errors: [])
        if let before = AllocationCounter.count() {
            // Self-check: one Swift heap allocation must move the counter, or its zeros mean nothing.
            let probe = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
            probe.storeBytes(of: 1, as: UInt8.self)
            let after = AllocationCounter.count() ?? before
            probe.deallocate()
            if after <= before { result.errors.append("malloc counter did not see a Swift allocation: heap figures are not valid") }
        } else {
            result.errors.append("no malloc counter: heap allocations not measured")
        }
        for n in config.allocationCounts {
            progress.update("core: setting up \(n) allocations")
            let bench = CoreBench(maxAllocations: n)
            do {
                try bench.setUp(count: n)
            } catch {
                result.errors.append("\(n) allocations: \(error)")
                continue
            }
            for d in Direction.allCases {
                progress.update("core: \(n) allocations, \(d.rawValue)")
                let r = bench.fastPath(direction: d, config: config)
                if r.forwarded != r.packets {
                    result.errors.append("\(n) allocations \(d.rawValue): forwarded \(r.forwarded) of \(r.packets)")
                }
                result.fastPath.append(r)
            }
        }
        progress.update("core: slow path")
        let bench = CoreBench(maxAllocations: config.slowPathRequests)
        result.slowPath = bench.slowPath(count: config.slowPathRequests, batch: config.batch)
        for s in result.slowPath where s.succeeded != s.requests && !s.request.contains("401") {
            result.errors.append("\(s.request): \(s.succeeded) of \(s.requests) succeeded")
        }
        progress.finish()
        return result
    }
}

extension Report {
    public static func core(_ r: CoreResult) -> String {
        var l: [String] = []
        l.append("Fast path (RelayCore.Server.process, in process, no sockets):")
        l.append("| allocations | direction | batch | packets | CPU ns/packet | wall ns/packet | packets/s (CPU) | heap allocs/packet |")
        l.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for f in r.fastPath {
            l.append("| \(f.allocations) | \(f.direction.rawValue) | \(f.batch) | \(f.packets) | \(fixed(f.cpuNanosecondsPerPacket, 1)) | \(fixed(f.nanosecondsPerPacket, 1)) | \(Int(f.packetsPerSecond)) | \(f.heapAllocationsPerPacket.map { fixed($0, 3) } ?? "n/a") |")
        }
        l.append("")
        l.append("Slow path (requests fed through process, socket opens answered at once):")
        l.append("| request | requests | succeeded | requests/s (CPU) | CPU µs/request | wall µs/request | heap allocs/request |")
        l.append("|---|---:|---:|---:|---:|---:|---:|")
        for s in r.slowPath {
            l.append("| \(s.request) | \(s.requests) | \(s.succeeded) | \(Int(s.requestsPerSecond)) | \(fixed(s.microsecondsPerRequest, 2)) | \(fixed(s.wallMicrosecondsPerRequest, 2)) | \(s.heapAllocationsPerRequest.map { fixed($0, 1) } ?? "n/a") |")
        }
        for e in r.errors { l.append("error: \(e)") }
        return l.joined(separator: "\n")
    }
}
