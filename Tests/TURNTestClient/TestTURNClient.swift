import RelayIO
import STUN
import TURNRequests
import TestSupport

/// A small, blocking TURN client (RFC 8656 over UDP) for tests: long-term credentials with the
/// 401 → retry dance, Allocate, Refresh, CreatePermission, ChannelBind, Send indications and
/// ChannelData. Every wait is bounded.
public final class TestTURNClient {
    public struct Response {
        public var messageClass: STUNClass
        public var method: STUNMethod
        public var errorCode: Int?
        public var realm: String?
        public var nonce: String?
        public var xorRelayedAddresses: [TransportAddress] = []
        public var xorMappedAddress: TransportAddress?
        public var lifetime: UInt32?
        public var hasMessageIntegrity = false
        public var reservationToken: UInt64?
        /// The whole response as received.
        public var bytes: [UInt8] = []
    }

    public enum Received: Equatable {
        case channelData(channel: UInt16, payload: [UInt8])
        case dataIndication(peer: TransportAddress, payload: [UInt8])
        case other([UInt8])
    }

    public let socket: BlockingUDPSocket
    public let server: TransportAddress
    public let username: String
    public let password: String
    public var realm: String?
    public var nonce: String?
    public var key: [UInt8]?
    /// Transaction IDs come from here: seeded, so a test sends the same IDs on every run.
    public var generator: SplitMix64

    public init(server: TransportAddress, username: String, password: String,
         bind: TransportAddress = TransportAddress(ip: .v4(.loopback), port: 0), seed: UInt64? = nil) throws {
        socket = try BlockingUDPSocket(bindTo: bind)
        // By default one seed per username, so two clients of one test do not share IDs.
        generator = SplitMix64(seed: seed ?? username.utf8.reduce(0x7E57_C11E) { ($0 &* 31) &+ UInt64($1) })
        self.server = server
        self.username = username
        self.password = password
    }

    // MARK: - Requests

    /// Sends an authenticated request (first learning REALM/NONCE from a 401, and following one
    /// 438 Stale Nonce), and returns the matching response.
    public func request(_ method: STUNMethod, _ attributes: (inout STUNMessageWriter) -> Void = { _ in }) -> Response? {
        var realm = realm, nonce = nonce, key = key
        defer { (self.realm, self.nonce, self.key) = (realm, nonce, key) }
        return Self.answeringChallenges(username: username, password: password, realm: &realm, nonce: &nonce, key: &key) { r, n, k in
            (self.realm, self.nonce, self.key) = (r, n, k)
            return transact(method, authenticated: k != nil, attributes)
        }
    }

    /// The long-term credential dance (RFC 8489 §9.2): `transact` sends the request with the
    /// realm, nonce and key known so far (signed when there is a key); a 401 teaches REALM and
    /// NONCE and the request goes again, once; a 438 brings a fresh NONCE, once. Shared by the UDP
    /// and the stream test clients.
    public static func answeringChallenges(username: String, password: String, realm: inout String?, nonce: inout String?,
                                           key: inout [UInt8]?,
                                           _ transact: (String?, String?, [UInt8]?) -> Response?) -> Response? {
        for _ in 0..<3 {
            guard let response = transact(realm, nonce, key) else { return nil }
            if response.messageClass == .errorResponse, response.errorCode == 401 || response.errorCode == 438,
               let newRealm = response.realm, let newNonce = response.nonce {
                let firstChallenge = key == nil || response.errorCode == 438
                realm = newRealm
                nonce = newNonce
                key = longTermKey(username: username, realm: newRealm, password: password, algorithm: .md5)
                if firstChallenge { continue }
            }
            return response
        }
        return nil
    }

    /// One request/response exchange (retransmitted up to 3 times, 500 ms apart).
    public func transact(_ method: STUNMethod, authenticated: Bool, _ attributes: (inout STUNMessageWriter) -> Void) -> Response? {
        let id = TransactionID(using: &generator)
        var auth: LongTermAuth?
        if authenticated, let realm, let nonce, let key {
            auth = LongTermAuth(username: username, realm: realm, nonce: nonce, key: key)
        }
        guard let message = TURNRequest.bytes(method, transactionID: id, auth: auth,
                                              fingerprint: true, capacity: 1500, attributes) else { return nil }
        for _ in 0..<3 {
            socket.send(message, to: server)
            for _ in 0..<20 {
                guard let (bytes, from) = socket.receive(timeoutMilliseconds: 500) else { break }
                guard from == server, let response = Self.parseResponse(bytes, id: id) else { continue }
                return response
            }
        }
        return nil
    }

    public static func parseResponse(_ bytes: [UInt8], id: TransactionID) -> Response? {
        bytes.withUnsafeBytes { raw -> Response? in
            guard let m = try? STUNMessage.parse(raw), m.transactionID == id else { return nil }
            var r = Response(messageClass: m.type.messageClass, method: m.type.method)
            r.errorCode = (try? m.errorCode())??.code
            r.realm = (try? m.realm()) ?? nil
            r.nonce = (try? m.nonce()) ?? nil
            r.xorRelayedAddresses = (try? m.xorRelayedAddresses()) ?? []
            r.xorMappedAddress = (try? m.xorMappedAddress()) ?? nil
            r.lifetime = (try? m.lifetime()) ?? nil
            r.hasMessageIntegrity = m.attribute(.messageIntegrity) != nil
            r.reservationToken = (try? m.reservationToken()) ?? nil
            r.bytes = bytes
            return r
        }
    }

    // MARK: - TURN operations

    public func allocate(lifetime: UInt32? = nil, family: AddressFamily? = nil) -> Response? {
        request(.allocate) { TURNRequest.allocate(&$0, family: family, lifetime: lifetime) }
    }

    public func refresh(lifetime: UInt32) -> Response? {
        request(.refresh) { w in w.appendUInt32(.lifetime, lifetime) }
    }

    public func createPermission(peer: TransportAddress) -> Response? {
        request(.createPermission) { TURNRequest.createPermission(&$0, peers: [peer]) }
    }

    public func channelBind(_ channel: UInt16, peer: TransportAddress) -> Response? {
        request(.channelBind) { TURNRequest.channelBind(&$0, channel: channel, peer: peer) }
    }

    /// A Send indication (RFC 8656 §11): no response.
    public func sendIndication(to peer: TransportAddress, payload: [UInt8]) {
        let message = TURNRequest.bytes(.send, .indication, transactionID: TransactionID(using: &generator),
                                        capacity: 1500 + payload.count) { w in
            w.appendXorAddress(.xorPeerAddress, peer)
            payload.withUnsafeBytes { w.append(.data, bytes: $0) }
        }
        if let message { socket.send(message, to: server) }
    }

    /// RFC 8656 §12.4: a 4-byte header (channel number, length) and the application data.
    public func sendChannelData(_ channel: UInt16, payload: [UInt8]) {
        let header: [UInt8] = [UInt8(channel >> 8), UInt8(channel & 0xFF),
                               UInt8(truncatingIfNeeded: payload.count >> 8), UInt8(truncatingIfNeeded: payload.count)]
        socket.send(header + payload, to: server)
    }

    /// The next datagram from the server, decoded as ChannelData or a Data indication.
    public func receive(timeoutMilliseconds: Int32 = 2000) -> Received? {
        for _ in 0..<20 {
            guard let (bytes, from) = socket.receive(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
            guard from == server else { continue }
            return Self.decode(bytes)
        }
        return nil
    }

    public static func decode(_ bytes: [UInt8]) -> Received {
        bytes.withUnsafeBytes { raw -> Received in
            if let (channel, length) = ChannelData.parse(raw), 4 + length <= bytes.count {
                return .channelData(channel: channel, payload: Array(bytes[4..<(4 + length)]))
            }
            if let m = try? STUNMessage.parse(raw), m.type == STUNMessageType(method: .data, messageClass: .indication),
               let peer = ((try? m.xorPeerAddresses()) ?? []).first, let data = m.data() {
                return .dataIndication(peer: peer, payload: Array(data))
            }
            return .other(bytes)
        }
    }
}
