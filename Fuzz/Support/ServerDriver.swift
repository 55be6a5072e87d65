import STUN
@testable import RelayCore
import TURNRequests

/// Addresses the server harnesses use: clients on public addresses, peers on public addresses
/// (the default peer policy allows them), a peer on the relay's own address (hairpin), one on
/// loopback (denied), and a scanner's source port 0.
public enum FuzzAddr {
    public static let relayV4 = IPv4Address(203, 0, 113, 10)
    public static let relayV6 = IPv6Address("2001:db8::10")!
    public static let client = TransportAddress("93.184.216.34:40000")!
    public static let client2 = TransportAddress("93.184.216.35:40001")!
    public static let clientV6 = TransportAddress("[2a00:1450::34]:40000")!
    public static let peer = TransportAddress("8.8.8.8:5000")!
    public static let peer2 = TransportAddress("8.8.4.4:6000")!
    public static let peerV6 = TransportAddress("[2a00:1450::8]:5000")!
    public static let loopback = TransportAddress("127.0.0.1:5000")!
    public static let mappedLoopback = TransportAddress("[::ffff:127.0.0.1]:5000")!
    public static let hairpin = TransportAddress("203.0.113.10:49200")!
    public static let portZero = TransportAddress("93.184.216.36:0")!

    public static let sources = [client, client2, clientV6, peer, peer2, peerV6, loopback, hairpin, portZero]
    public static let peers = [peer, peer2, peerV6, loopback, mappedLoopback, hairpin, client2]
}

/// Static users of the harness server.
public struct FuzzUser {
    public var username: String
    public var password: String
    public var realm = "example.org"
    public var key: [UInt8] { longTermKey(username: username, realm: realm, password: password, algorithm: .md5) }
    public var sha256Key: [UInt8] { longTermKey(username: username, realm: realm, password: password, algorithm: .sha256) }

    public static let alice = FuzzUser(username: "alice", password: "alice-password")
    public static let bob = FuzzUser(username: "bob", password: "bob-password")
}

/// One datagram the server asked to send, copied out of the batch.
public struct FuzzSent {
    public var socket: SocketHandle
    public var destination: TransportAddress
    public var bytes: [UInt8]
    public var origin: OutboundDatagram.Origin
}

/// One datagram to feed: its bytes, its source and the socket it arrived on.
public struct FuzzDatagram {
    public var bytes: [UInt8]
    public var source: TransportAddress
    public var socket: SocketHandle
    public init(_ bytes: [UInt8], from source: TransportAddress, on socket: SocketHandle? = nil) {
        self.bytes = bytes
        self.source = source
        self.socket = socket ?? .listener(source.family)
    }
}

/// The sans-IO server plus what the shell does around it (receive buffers with headroom and
/// tailroom, the outbound batch, socket answers, applied route changes), checking after every
/// call:
/// - the tables are consistent (`Server.invariantViolations`) and bounded by the configuration;
/// - route changes pair up (an up for a route not up, a down for one up) and leave the shell's
///   routes equal to the core's;
/// - no response without a request: every STUN response the server sends answers a request of
///   that batch from that destination (or, from `socketOpened`, an earlier Allocate), at most once
///   per request datagram, on the listener of the client's family;
/// - every datagram forwarded in place lies inside its receive buffer's headroom...tailroom.
public final class ServerDriver {
    public private(set) var now: Instant
    public let server: Server
    let out = OutboundBatch(capacity: 256, arenaBytes: 256 * 1024)
    public static let maxBatch = 8
    public static let maxDatagram = 2048
    static let slotSize = InboundDatagram.headroom + maxDatagram + InboundDatagram.tailroom
    let buffers: UnsafeMutableRawPointer
    var routes: Set<ChannelRoute> = []
    /// Allocate requests ever fed, per client and transaction ID: what a `socketOpened` success
    /// may answer.
    var allocateRequests: Set<RequestKey> = []
    /// Socket open requests not answered yet.
    public private(set) var pendingOpens: [(handle: SocketHandle, family: AddressFamily, port: UInt16)] = []
    /// Every allocation socket handle the server ever asked for (to aim peer datagrams at).
    public private(set) var knownHandles: [SocketHandle] = []
    public let configuration: ServerConfiguration

    struct RequestKey: Hashable {
        var client: TransportAddress
        var transactionID: TransactionID
    }

    public static let start = Instant(seconds: 1_800_000_000)

    public static func configuration() -> ServerConfiguration {
        var c = ServerConfiguration(relayAddressIPv4: FuzzAddr.relayV4, relayAddressIPv6: FuzzAddr.relayV6)
        c.realm = "example.org"
        c.credentials = CredentialStore(staticUsers: ["alice": "alice-password", "bob": "bob-password"],
                                        restSecrets: ["rest-secret"])
        c.emitsChannelRoutes = true
        c.maxPermissionsPerAllocation = 8
        c.maxChannelsPerAllocation = 8
        c.maxAllocationsPerUsername = 4
        c.maxAllocations = 16
        c.maxReservations = 8
        c.transactionCacheSize = 64
        c.portRange = 49152...49407
        c.localAddresses = [.v4(FuzzAddr.relayV4)]
        return c
    }

    public init(seed: UInt64 = 1, _ configure: (inout ServerConfiguration) -> Void = { _ in }) {
        var c = Self.configuration()
        configure(&c)
        configuration = c
        now = Self.start
        server = Server(configuration: c, random: SplitMix64(seed: seed), now: now)
        buffers = .allocate(byteCount: Self.slotSize * Self.maxBatch, alignment: 16)
    }

    deinit { buffers.deallocate() }

    /// Feeds one batch (at most `maxBatch` datagrams, each at most `maxDatagram` bytes; longer
    /// ones are cut) and returns what the server sent.
    @discardableResult
    public func process(_ batch: [FuzzDatagram]) -> [FuzzSent] {
        let batch = Array(batch.prefix(Self.maxBatch))
        out.reset()
        var inbound: [InboundDatagram] = []
        var requests: [RequestKey: Int] = [:]
        for (i, d) in batch.enumerated() {
            let slot = buffers + i * Self.slotSize
            slot.initializeMemory(as: UInt8.self, repeating: 0xEE, count: Self.slotSize)
            let payload = slot + InboundDatagram.headroom
            let length = min(d.bytes.count, Self.maxDatagram)
            d.bytes.withUnsafeBytes { if length > 0 { payload.copyMemory(from: $0.baseAddress!, byteCount: length) } }
            inbound.append(InboundDatagram(socket: d.socket, source: d.source, bytes: payload, length: length, bufferID: UInt32(i)))
            if d.socket.isListener, let m = try? STUNMessage.parse(UnsafeRawBufferPointer(start: payload, count: length)),
               m.type.messageClass == .request {
                let key = RequestKey(client: d.source, transactionID: m.transactionID)
                requests[key, default: 0] += 1
                if m.type.method == .allocate { allocateRequests.insert(key) }
            }
        }
        inbound.withUnsafeBufferPointer { server.process($0, now: now, into: out) }
        return collect { sent, key in
            guard let n = requests[key], n > 0 else { return "a response to \(key.client) for a request not in the batch" }
            requests[key] = n - 1
            // The core answers on the listener of the client's family. The shell's listeners are
            // IPV6_V6ONLY (SocketAddressing), so that is the one the request came in on; the
            // harness also feeds sources on the other family's listener, which a shell never does.
            if sent.socket != .listener(key.client.family) { return "a response to \(key.client) on socket \(sent.socket.raw)" }
            return nil
        }
    }

    /// Answers the pending socket requests: all opened, or those `failing` says with EADDRINUSE.
    @discardableResult
    public func answerOpens(failing: (Int) -> Bool = { _ in false }) -> [FuzzSent] {
        let opens = pendingOpens
        pendingOpens = []
        out.reset()
        for (i, open) in opens.enumerated() {
            server.socketOpened(open.handle, result: failing(i) ? .failed(errno: 98) : .opened, now: now, into: out)
        }
        return collect { sent, key in
            allocateRequests.contains(key) ? nil : "a response from socketOpened to \(key.client) for no Allocate"
        }
    }

    @discardableResult
    public func advance(seconds: UInt64) -> [FuzzSent] {
        now = now.adding(seconds: seconds)
        out.reset()
        server.handleTimeout(now: now, into: out)
        // A pending Allocate whose sockets did not open in time is answered here (508).
        return collect { _, key in
            allocateRequests.contains(key) ? nil : "a response to \(key.client) from handleTimeout for no Allocate"
        }
    }

    @discardableResult
    public func reload(peerPolicy: PeerPolicy) -> [FuzzSent] {
        out.reset()
        server.reload(credentials: server.configuration.credentials, peerPolicy: peerPolicy, now: now, into: out)
        return collect { _, key in "a response to \(key.client) from reload" }
    }

    /// Copies the batch out and checks it; `response` judges each STUN response (nil: fine).
    func collect(_ response: (FuzzSent, RequestKey) -> String?) -> [FuzzSent] {
        var sent: [FuzzSent] = []
        for d in out.datagrams {
            let s = FuzzSent(socket: d.socket, destination: d.destination,
                             bytes: Array(UnsafeRawBufferPointer(start: d.bytes, count: d.length)), origin: d.origin)
            if case .received(let id) = d.origin {
                fuzzCheck(Int(id) < Self.maxBatch, "origin names buffer \(id)")
                let lower = UnsafeRawPointer(buffers + Int(id) * Self.slotSize)
                fuzzCheck(d.bytes >= lower && d.bytes + d.length <= lower + Self.slotSize,
                          "a datagram outside its receive buffer's headroom...tailroom")
            }
            fuzzCheck(d.length <= Self.maxDatagram + InboundDatagram.headroom + InboundDatagram.tailroom || d.origin == .arena,
                      "an in-place datagram longer than its buffer")
            if d.socket.isListener, d.origin == .arena,
               let m = try? STUNMessage.parse(UnsafeRawBufferPointer(start: d.bytes, count: d.length)),
               m.type.messageClass == .successResponse || m.type.messageClass == .errorResponse {
                if let problem = response(s, RequestKey(client: d.destination, transactionID: m.transactionID)) {
                    fuzzCheck(false, problem)
                }
            }
            sent.append(s)
        }
        for request in out.socketRequests {
            switch request {
            case .open(let h, let family, let port), .listen(let h, let family, let port):
                pendingOpens.append((h, family, port))
                if !knownHandles.contains(h) { knownHandles.append(h) }
            case .close:
                // The shell still answers an open whose socket the core has since closed (the
                // core frees that orphaned entry on the answer), so the open stays pending.
                break
            case .connect, .abortConnect, .splice, .closeConnection:
                // RFC 6062 TCP allocations need a stream client; the datagrams here are UDP, so
                // the core refuses them (400) and never asks for these.
                fuzzCheck(false, "a TCP-allocation request from UDP traffic: \(request)")
            }
        }
        for change in out.routeChanges {
            switch change {
            case .up(let route): fuzzCheck(routes.insert(route).inserted, "up for a route already up: \(route)")
            case .down(let route): fuzzCheck(routes.remove(route) != nil, "down for a route not up: \(route)")
            }
        }
        fuzzCheck(routes == Set(server.channelRoutes), "the shell's routes differ from the core's")
        checkInvariants()
        return sent
    }

    public func checkInvariants() {
        let problems = server.invariantViolations()
        fuzzCheck(problems.isEmpty, "invariants: \(problems)")
        let s = server.tableSizes
        let c = configuration
        fuzzCheck(s.allocationsByClient <= c.maxAllocations, "allocations \(s.allocationsByClient) > \(c.maxAllocations)")
        fuzzCheck(s.permissions <= c.maxPermissionsPerAllocation * s.allocationsByClient,
                  "permissions \(s.permissions) over \(c.maxPermissionsPerAllocation) per allocation (\(s.allocationsByClient))")
        fuzzCheck(s.channels <= c.maxChannelsPerAllocation * s.allocationsByClient,
                  "channels \(s.channels) over \(c.maxChannelsPerAllocation) per allocation (\(s.allocationsByClient))")
        fuzzCheck(s.transactionCache <= c.transactionCacheSize, "transaction cache \(s.transactionCache)")
        fuzzCheck(s.reservations <= c.maxReservations, "reservations \(s.reservations)")
        // Socket entries: two per allocation at most, one per reserved port, and those orphaned
        // while opening (kept until the shell answers).
        fuzzCheck(s.sockets <= 2 * s.allocationsByClient + s.reservations + pendingOpens.count,
                  "sockets \(s.sockets) for \(s.allocationsByClient) allocations, \(s.reservations) reservations, \(pendingOpens.count) opening")
    }

    // MARK: Authenticated client flows

    /// A client of the server: its address, user, current nonce, and a transaction ID counter.
    public struct Client {
        public var address: TransportAddress
        public var user: FuzzUser
        public var nonce: String = ""
        public var counter: UInt32 = 0
        public init(address: TransportAddress, user: FuzzUser) {
            self.address = address
            self.user = user
        }
        public mutating func freshTransactionID() -> TransactionID {
            counter &+= 1
            let c = counter
            return TransactionID([0xF0, 0x22, UInt8(address.port >> 8), UInt8(address.port & 0xFF),
                                  0, 0, 0, 0, UInt8(c >> 24), UInt8((c >> 16) & 0xFF), UInt8((c >> 8) & 0xFF), UInt8(c & 0xFF)])
        }
    }

    /// Gets a nonce from a 401 (unauthenticated Allocate).
    public func challenge(_ client: inout Client) {
        let id = client.freshTransactionID()
        let request = TURNRequest.bytes(.allocate, transactionID: id) { $0.appendRequestedTransport(17) }!
        for s in process([FuzzDatagram(request, from: client.address)]) {
            if let nonce = Self.nonce(in: s.bytes) { client.nonce = nonce }
        }
    }

    public static func nonce(in bytes: [UInt8]) -> String? {
        bytes.withUnsafeBytes { raw in (try? STUNMessage.parse(raw)).flatMap { try? $0.nonce() } }
    }

    public static func errorCode(in bytes: [UInt8]) -> Int? {
        bytes.withUnsafeBytes { raw in (try? STUNMessage.parse(raw)).flatMap { try? $0.errorCode()?.code } }
    }

    /// A signed request from `client` (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY after `body`).
    public func signed(_ method: STUNMethod, by client: inout Client, sha256: Bool = false, fingerprint: Bool = false,
                       id: TransactionID? = nil, _ body: (inout STUNMessageWriter) -> Void) -> [UInt8]? {
        var auth = LongTermAuth(username: client.user.username, realm: client.user.realm, nonce: client.nonce, key: client.user.key)
        auth.sha256 = sha256
        return TURNRequest.bytes(method, transactionID: id ?? client.freshTransactionID(), auth: auth,
                                 fingerprint: fingerprint, capacity: Self.maxDatagram, body)
    }
}
