import Testing
import TestSupport
@testable import RelayCore
import STUN
import TURNRequests

// Builders and a harness for the server scenario tests: a fake clock, a seeded random source, a
// receive buffer laid out as the shell lays it out (64 bytes of headroom, 8 of tailroom), and
// requests encoded with the shared request builder (TURNRequests), which the benchmark uses too.


/// One datagram the server asked to send, copied out of the batch.
struct Sent {
    var socket: SocketHandle
    var destination: TransportAddress
    var bytes: [UInt8]
    var origin: OutboundDatagram.Origin
    /// Where the bytes were (to prove zero copy: a pointer into the receive buffer).
    var pointer: UnsafeRawPointer
}

struct Outputs {
    var sent: [Sent] = []
    var requests: [SocketRequest] = []
    var routes: [RouteChange] = []

    var only: Sent? { sent.count == 1 ? sent[0] : nil }

    var opens: [(handle: SocketHandle, family: AddressFamily, port: UInt16)] {
        requests.compactMap { if case .open(let h, let f, let p) = $0 { return (h, f, p) } else { return nil } }
    }

    var closes: [SocketHandle] {
        requests.compactMap { if case .close(let h) = $0 { return h } else { return nil } }
    }
}

enum Addr {
    static let relayV4 = IPv4Address(203, 0, 113, 10)
    static let relayV6 = IPv6Address("2001:db8::10")!
    static let client = TransportAddress("93.184.216.34:40000")!
    static let client2 = TransportAddress("93.184.216.35:40001")!
    static let clientV6 = TransportAddress("[2a00:1450::34]:40000")!
    static let peer = TransportAddress("8.8.8.8:5000")!
    static let peer2 = TransportAddress("8.8.4.4:6000")!
    static let peerV6 = TransportAddress("[2a00:1450::8]:5000")!
}

struct Credentials {
    var username: String
    var password: String
    var realm = "example.org"
    var algorithm: PasswordAlgorithm = .md5
    var key: [UInt8] { longTermKey(username: username, realm: realm, password: password, algorithm: algorithm) }

    static let alice = Credentials(username: "alice", password: "alice-password")
    static let bob = Credentials(username: "bob", password: "bob-password")
}

func transactionID(_ n: UInt8) -> TransactionID {
    TransactionID([0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, n])
}

/// How a test request authenticates.
struct RequestAuth {
    var credentials: Credentials
    var nonce: String
    var sha256 = false
    var userhash = false
    /// PASSWORD-ALGORITHMS + PASSWORD-ALGORITHM, as RFC 8489 §9.2.4 wants once offered.
    var passwordAlgorithms: [PasswordAlgorithm]? = nil
}

/// Encodes a request (or indication) with the shared request builder (`TURNRequest`): `body`
/// first, then USERNAME/USERHASH, REALM, NONCE, password algorithms, integrity, FINGERPRINT.
func message(_ method: STUNMethod, _ cls: STUNClass = .request, id: TransactionID = transactionID(1),
             auth: RequestAuth? = nil, fingerprint: Bool = false,
             _ body: (inout STUNMessageWriter) -> Void = { _ in }) -> [UInt8] {
    let credentials = auth.map { auth in
        var long = LongTermAuth(username: auth.credentials.username, realm: auth.credentials.realm, nonce: auth.nonce,
                                key: auth.credentials.key)
        long.sha256 = auth.sha256
        long.userhash = auth.userhash
        long.passwordAlgorithms = auth.passwordAlgorithms
        long.algorithm = auth.credentials.algorithm
        return long
    }
    return TURNRequest.bytes(method, cls, transactionID: id, auth: credentials, fingerprint: fingerprint, body)!
}

/// Encodes an expected response the same way the server should, for byte comparison.
func expectedResponse(_ method: STUNMethod, _ cls: STUNClass, id: TransactionID, key: [UInt8]? = nil, sha256: Bool = false,
                      fingerprint: Bool = false, _ body: (inout STUNMessageWriter) -> Void) -> [UInt8] {
    var storage = [UInt8](repeating: 0, count: 2048)
    let length = storage.withUnsafeMutableBytes { buffer -> Int in
        var w = STUNMessageWriter(into: buffer, type: STUNMessageType(method: method, messageClass: cls), transactionID: id)
        body(&w)
        if let key { if sha256 { w.appendMessageIntegritySHA256(key: key) } else { w.appendMessageIntegrity(key: key) } }
        if fingerprint { w.appendFingerprint() }
        return w.finish()!
    }
    return Array(storage[0..<length])
}

/// Reads a STUN message out of bytes the test holds.
func inspect<T>(_ bytes: [UInt8], _ body: (STUNMessage) throws -> T) throws -> T {
    try bytes.withUnsafeBytes { raw in
        let m = try STUNMessage.parse(raw)
        return try body(m)
    }
}

func errorCode(_ bytes: [UInt8]) -> Int? {
    try? inspect(bytes) { try $0.errorCode()?.code }
}

func channelData(_ channel: UInt16, _ payload: [UInt8]) -> [UInt8] {
    [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
}

/// The server plus everything the shell would do around it.
final class Harness {
    var now: Instant
    let server: Server
    let out = OutboundBatch(capacity: 256, arenaBytes: 256 * 1024)
    /// One receive buffer: headroom, up to 4 KiB of datagram, tailroom.
    let buffer: UnsafeMutableRawPointer
    static let bufferSize = InboundDatagram.headroom + 4096 + InboundDatagram.tailroom
    var payloadStart: UnsafeMutableRawPointer { buffer + InboundDatagram.headroom }

    static let start = Instant(seconds: 1_800_000_000)

    static func configuration() -> ServerConfiguration {
        var c = ServerConfiguration(relayAddressIPv4: Addr.relayV4, relayAddressIPv6: nil)
        c.realm = "example.org"
        c.credentials = CredentialStore(staticUsers: ["alice": "alice-password", "bob": "bob-password"],
                                        restSecrets: ["rest-secret"])
        // Every scenario keeps the route bookkeeping and checks it (`routesApplied`, the
        // invariants); `ServerRouteTests` covers the default (off) explicitly.
        c.emitsChannelRoutes = true
        return c
    }

    /// `registry`: shared with other harnesses' servers, as the workers of one process share it.
    /// `liveRelayPorts`: shared likewise (the live allocation ports of the whole process).
    /// `quota`: the allocation counts, shared likewise.
    init(seed: UInt64 = 1, registry: (any ReservationRegistry)? = nil, quota: (any AllocationQuota)? = nil,
         liveRelayPorts: LiveRelayPorts? = nil, _ configure: (inout ServerConfiguration) -> Void = { _ in }) {
        var c = Self.configuration()
        configure(&c)
        now = Self.start
        server = Server(configuration: c, random: SplitMix64(seed: seed), now: now, reservationRegistry: registry,
                        allocationQuota: quota, liveRelayPorts: liveRelayPorts)
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE, count: Self.bufferSize)
    }

    deinit {
        // Every scenario ends with consistent tables.
        #expect(server.invariantViolations() == [])
        buffer.deallocate()
    }

    /// The routes as a shell that applied every batch's `routeChanges` in order holds them.
    private(set) var routesApplied: Set<ChannelRoute> = []

    /// Applies route changes the way the shell does, and checks the pairing rule: an `.up` for a
    /// route not up, a `.down` with the value of a route up; afterwards the shell's routes are
    /// the core's.
    private func applyRoutes(_ changes: [RouteChange]) {
        for change in changes {
            switch change {
            case .up(let route):
                #expect(routesApplied.insert(route).inserted, "up for a route already up: \(route)")
            case .down(let route):
                #expect(routesApplied.remove(route) != nil, "down for a route not up: \(route)")
            }
        }
        #expect(routesApplied == Set(server.channelRoutes), "the shell's routes differ from the core's")
    }

    /// `Server.reload`, with the route changes applied like a batch's.
    @discardableResult
    func reload(credentials: CredentialStore? = nil, peerPolicy: PeerPolicy) -> Outputs {
        out.reset()
        server.reload(credentials: credentials ?? server.configuration.credentials, peerPolicy: peerPolicy, now: now, into: out)
        return collect()
    }

    /// Feeds one datagram, as received on `socket` (the listener of the source's family unless
    /// given), and returns what the server produced.
    @discardableResult
    func receive(_ bytes: [UInt8], from source: TransportAddress, on socket: SocketHandle? = nil, bufferID: UInt32 = 7) -> Outputs {
        precondition(bytes.count <= 4096)
        out.reset()
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE, count: Self.bufferSize)
        bytes.withUnsafeBytes { payloadStart.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var datagram = InboundDatagram(socket: socket ?? .listener(source.family), source: source,
                                       bytes: payloadStart, length: bytes.count, bufferID: bufferID)
        withUnsafePointer(to: &datagram) { server.process(UnsafeBufferPointer(start: $0, count: 1), now: now, into: out) }
        return collect()
    }

    /// Answers socket requests the way the shell would.
    @discardableResult
    func answer(_ opens: [(handle: SocketHandle, family: AddressFamily, port: UInt16)], with result: SocketOpenResult = .opened) -> Outputs {
        out.reset()
        for open in opens { server.socketOpened(open.handle, result: result, now: now, into: out) }
        return collect()
    }

    @discardableResult
    func advance(seconds: UInt64) -> Outputs {
        now = now.adding(seconds: seconds)
        out.reset()
        server.handleTimeout(now: now, into: out)
        return collect()
    }

    func collect() -> Outputs {
        var result = Outputs()
        for d in out.datagrams {
            result.sent.append(Sent(socket: d.socket, destination: d.destination,
                                    bytes: Array(UnsafeRawBufferPointer(start: d.bytes, count: d.length)),
                                    origin: d.origin, pointer: d.bytes))
        }
        result.requests = out.socketRequests
        result.routes = out.routeChanges
        applyRoutes(result.routes)
        return result
    }

    // MARK: Client flows

    /// Nonces already obtained, per client (they stay valid for 600 s; asking again would spend
    /// the client's 401 budget).
    var nonces: [TransportAddress: (nonce: String, at: Instant)] = [:]

    /// A nonce for `client`: from an unauthenticated request's 401, cached while fresh.
    func nonce(for client: TransportAddress = Addr.client) throws -> String {
        if let cached = nonces[client], now.nanoseconds - cached.at.nanoseconds < 300_000_000_000 { return cached.nonce }
        let nonce = try freshNonce(for: client)
        nonces[client] = (nonce, now)
        return nonce
    }

    func freshNonce(for client: TransportAddress) throws -> String {
        let response = try #require(receive(message(.allocate, id: transactionID(200)) { $0.appendRequestedTransport(17) }, from: client).only)
        return try #require(try inspect(response.bytes) { try $0.nonce() })
    }

    /// The full Allocate: challenge, authenticated request, sockets opened. Returns the relayed
    /// addresses in response order and the handles.
    @discardableResult
    func allocate(_ client: TransportAddress = Addr.client, as credentials: Credentials = .alice, id: UInt8 = 1,
                  _ extra: (inout STUNMessageWriter) -> Void = { _ in }) throws -> (relays: [TransportAddress], handles: [SocketHandle], response: [UInt8]) {
        let nonce = try nonce(for: client)
        let request = message(.allocate, id: transactionID(id), auth: RequestAuth(credentials: credentials, nonce: nonce)) {
            $0.appendRequestedTransport(17)
            extra(&$0)
        }
        let pending = receive(request, from: client)
        #expect(pending.sent.isEmpty, "the success response waits for the sockets")
        let opened = answer(pending.opens)
        let response = try #require(opened.only)
        let relays = try inspect(response.bytes) { try $0.xorRelayedAddresses() }
        return (relays, pending.opens.map(\.handle), response.bytes)
    }

    func auth(_ credentials: Credentials = .alice, client: TransportAddress = Addr.client) throws -> RequestAuth {
        RequestAuth(credentials: credentials, nonce: try nonce(for: client))
    }

    @discardableResult
    func createPermission(_ peers: [TransportAddress], client: TransportAddress = Addr.client, id: UInt8 = 2) throws -> Outputs {
        let request = message(.createPermission, id: transactionID(id), auth: try auth(client: client)) { w in
            for peer in peers { w.appendXorAddress(.xorPeerAddress, peer) }
        }
        return receive(request, from: client)
    }

    @discardableResult
    func createPermission(_ peer: TransportAddress, client: TransportAddress = Addr.client, id: UInt8 = 2) throws -> Outputs {
        try createPermission([peer], client: client, id: id)
    }

    @discardableResult
    func refresh(lifetime: UInt32, client: TransportAddress = Addr.client, id: UInt8 = 5) throws -> Outputs {
        let request = message(.refresh, id: transactionID(id), auth: try auth(client: client)) { w in
            w.appendUInt32(.lifetime, lifetime)
        }
        return receive(request, from: client)
    }

    /// The IPv4 relay port of `client`'s allocation (0 when it has none).
    func relayPort(of client: TransportAddress) -> UInt16 {
        server.allocations.allocation(of: ClientSocket(client))?.allocation.ipv4?.port ?? 0
    }

    var relayPort: UInt16 { relayPort(of: Addr.client) }

    @discardableResult
    func channelBind(_ channel: UInt16, to peer: TransportAddress, client: TransportAddress = Addr.client, id: UInt8 = 3) throws -> Outputs {
        let request = message(.channelBind, id: transactionID(id), auth: try auth(client: client)) { w in
            w.appendChannelNumber(channel)
            w.appendXorAddress(.xorPeerAddress, peer)
        }
        return receive(request, from: client)
    }
}
