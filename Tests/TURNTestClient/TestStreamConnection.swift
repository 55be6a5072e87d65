import CUDP
import Glibc
@testable import RelayIO
import STUN
import SocketAddressing
import TURNRequests
import TestSupport

/// A blocking TCP connection to a TURN server for tests (TURN over TCP, RFC 8656 §3.1): raw
/// bytes out, framed messages in (the same framing the relay uses, so a test can also send
/// anything it likes). Every wait is bounded.
public final class TestStreamConnection {
    public let fd: Int32
    private var reassembler = StreamReassembler(maxMessageBytes: 70_000, rfc5766Channels: true)
    private var received: [[UInt8]] = []
    public private(set) var closedByServer = false

    public struct ConnectFailed: Error, CustomStringConvertible {
        public let errno: Int32
        public var description: String { "connect failed: \(String(cString: strerror(errno)))" }
    }

    /// Connects to `server`, from `local` when given (e.g. another 127.x address). With
    /// `receiveBufferBytes`, the socket's SO_RCVBUF is set first (a small one makes the sender
    /// feel backpressure early).
    public init(to server: TransportAddress, from local: TransportAddress? = nil, receiveBufferBytes: Int32? = nil) throws {
        let address = cu_addr(server)
        fd = socket(Int32(address.sa.sa_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ConnectFailed(errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if var size = receiveBufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        let fd = fd
        let bound = local.map { cu_addr($0).withSockaddr { bind(fd, $0, $1) } } ?? 0
        guard bound == 0, address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw ConnectFailed(errno: e)
        }
    }

    /// An accepted socket (a test's TCP peer), owned from now on.
    public init(adopting fd: Int32) {
        self.fd = fd
    }

    deinit { Glibc.close(fd) }

    /// The local address (the client's side of the 5-tuple).
    public var localAddress: TransportAddress? {
        var a = cu_addr()
        return cu_local_address(fd, &a) == 0 ? a.transportAddress : nil
    }

    /// Writes all of `bytes`; false when the connection refused them (closed, reset).
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Writes bytes as they are (no framing), for TLS records.
    public func sendRaw(_ bytes: [UInt8]) { _ = send(bytes) }

    /// The next chunk the server sent as it came (no framing), for TLS; nil on timeout or close.
    public func receiveRaw(timeoutMilliseconds: Int32) -> [UInt8]? {
        guard !closedByServer else { return nil }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return nil }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else {
            closedByServer = true
            return nil
        }
        return Array(chunk[0..<n])
    }

    /// Exactly `count` raw bytes (no framing: an RFC 6062 data connection), or fewer when the
    /// connection closed or nothing came for `timeoutMilliseconds`.
    public func receiveRaw(count: Int, timeoutMilliseconds: Int32) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count, let chunk = receiveRaw(timeoutMilliseconds: timeoutMilliseconds) {
            out += chunk
        }
        return out
    }

    /// Closes the writing side (FIN), keeping the reading side.
    public func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// The next framed message, waiting up to `timeoutMilliseconds`; nil on timeout or when the
    /// server closed the connection (`closedByServer`).
    public func receive(timeoutMilliseconds: Int32 = 2000) -> [UInt8]? {
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while received.isEmpty {
            let left = deadline - monotonicMilliseconds()
            guard left > 0, !closedByServer else { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left)) > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 {
                closedByServer = true
                return nil
            }
            let result = chunk.withUnsafeBytes { raw in
                reassembler.consume(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { received.append(Array($0)) }
            }
            if result.invalid != nil {
                received.append(Array(chunk[0..<n]))
            }
        }
        return received.removeFirst()
    }

    /// Whether the server closes the connection within `timeoutMilliseconds` (reading and
    /// discarding what it sends meanwhile).
    public func waitForClose(timeoutMilliseconds: Int32) -> Bool {
        let deadline = monotonicMilliseconds() + Int64(timeoutMilliseconds)
        while !closedByServer {
            let left = deadline - monotonicMilliseconds()
            guard left > 0 else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(left)) > 0 else { return false }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { closedByServer = true }
        }
        return true
    }

    private func monotonicMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// A TURN client over one `TestStreamConnection`: the 401 dance, Allocate, CreatePermission,
/// ChannelBind, Refresh, ChannelData (padded to a multiple of 4, RFC 8656 §12.5).
public final class TestStreamTURNClient {
    public let connection: any TestMessageStream
    public let username: String
    public let password: String
    public var realm: String?
    public var nonce: String?
    public var key: [UInt8]?
    public var generator: SplitMix64

    public convenience init(server: TransportAddress, username: String, password: String) throws {
        try self.init(over: TestStreamConnection(to: server), username: username, password: password)
    }

    public init(over connection: any TestMessageStream, username: String, password: String) {
        self.connection = connection
        self.username = username
        self.password = password
        generator = SplitMix64(seed: username.utf8.reduce(0x57AE_A11) { ($0 &* 31) &+ UInt64($1) })
    }

    public func request(_ method: STUNMethod, _ attributes: (inout STUNMessageWriter) -> Void = { _ in })
        -> TestTURNClient.Response? {
        var realm = realm, nonce = nonce, key = key
        defer { (self.realm, self.nonce, self.key) = (realm, nonce, key) }
        return TestTURNClient.answeringChallenges(username: username, password: password, realm: &realm, nonce: &nonce,
                                                  key: &key) { realm, nonce, key in
            let id = TransactionID(using: &generator)
            var auth: LongTermAuth?
            if let realm, let nonce, let key { auth = LongTermAuth(username: username, realm: realm, nonce: nonce, key: key) }
            guard let message = TURNRequest.bytes(method, transactionID: id, auth: auth, fingerprint: true,
                                                  capacity: 1500, attributes),
                  connection.send(message) else { return nil }
            while true {
                guard let bytes = connection.receive(timeoutMilliseconds: 2000) else { return nil }
                if let response = TestTURNClient.parseResponse(bytes, id: id) { return response }
            }
        }
    }

    public func allocate(family: AddressFamily? = nil) -> TestTURNClient.Response? {
        request(.allocate) { TURNRequest.allocate(&$0, family: family, lifetime: nil) }
    }

    public func channelBind(_ channel: UInt16, peer: TransportAddress) -> TestTURNClient.Response? {
        request(.channelBind) { TURNRequest.channelBind(&$0, channel: channel, peer: peer) }
    }

    public func createPermission(peer: TransportAddress) -> TestTURNClient.Response? {
        request(.createPermission) { TURNRequest.createPermission(&$0, peers: [peer]) }
    }

    public func refresh(lifetime: UInt32) -> TestTURNClient.Response? {
        request(.refresh) { w in w.appendUInt32(.lifetime, lifetime) }
    }

    /// ChannelData padded to a multiple of 4 (RFC 8656 §12.5).
    @discardableResult
    public func sendChannelData(_ channel: UInt16, payload: [UInt8]) -> Bool {
        let header: [UInt8] = [UInt8(channel >> 8), UInt8(channel & 0xFF),
                               UInt8(truncatingIfNeeded: payload.count >> 8), UInt8(truncatingIfNeeded: payload.count)]
        let padding = [UInt8](repeating: 0, count: (4 - payload.count % 4) % 4)
        return connection.send(header + payload + padding)
    }

    /// The next ChannelData or Data indication from the server.
    public func receive(timeoutMilliseconds: Int32 = 2000) -> TestTURNClient.Received? {
        connection.receive(timeoutMilliseconds: timeoutMilliseconds).map(TestTURNClient.decode)
    }

    /// The TCP connection's descriptor, when the stream is plain TCP.
    public var fd: Int32? { (connection as? TestStreamConnection)?.fd }
}

/// What a stream TURN client talks through: a plain TCP connection or TLS over one.
public protocol TestMessageStream: AnyObject {
    @discardableResult func send(_ bytes: [UInt8]) -> Bool
    func receive(timeoutMilliseconds: Int32) -> [UInt8]?
    var localAddress: TransportAddress? { get }
}

extension TestStreamConnection: TestMessageStream {}

/// TLS over a `TestStreamConnection`, with the relay's TLS client (`TLSSession`, certificate not
/// verified: the tests make their own). Framed messages in, plaintext out.
public final class TestTLSConnection: TestMessageStream {
    public let tcp: TestStreamConnection
    public let session: TLSSession
    private var reassembler = StreamReassembler(maxMessageBytes: 70_000, rfc5766Channels: true)
    private var received: [[UInt8]] = []
    public private(set) var failure: String?

    public struct HandshakeFailed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Connects and completes the handshake (offering `alpn`), within `timeoutMilliseconds`.
    public init(to server: TransportAddress, alpn: String? = "stun.turn", from local: TransportAddress? = nil,
                maximumVersion: TLSVersion = .tls13, timeoutMilliseconds: Int32 = 5000) throws {
        tcp = try TestStreamConnection(to: server, from: local)
        session = try TLSSession(context: TLSContext(clientALPN: alpn, maximumVersion: maximumVersion), role: .client)
        // The first read (no input yet) makes the ClientHello.
        var scratch = [UInt8](repeating: 0, count: 1024)
        do {
            _ = try scratch.withUnsafeMutableBytes { try session.read(into: $0) }
        } catch {
            throw HandshakeFailed(description: "\(error)")
        }
        flushOutput()
        var rounds = 0
        while !session.isHandshakeDone {
            rounds += 1
            guard rounds < 100, pump(timeoutMilliseconds: timeoutMilliseconds) else {
                throw HandshakeFailed(description: failure ?? "no handshake within \(timeoutMilliseconds) ms")
            }
        }
    }

    public var localAddress: TransportAddress? { tcp.localAddress }
    public var serverCommonName: String? { session.peerCertificateCommonName }

    private func flushOutput() {
        let out = session.takeOutput()
        if !out.isEmpty { tcp.sendRaw(out) }
    }

    /// Reads one chunk of ciphertext and decrypts what it can; false on timeout, close or failure.
    private func pump(timeoutMilliseconds: Int32) -> Bool {
        guard let chunk = tcp.receiveRaw(timeoutMilliseconds: timeoutMilliseconds) else { return false }
        do {
            try session.feed(chunk)
            var buffer = [UInt8](repeating: 0, count: 32 * 1024)
            while true {
                let result = try buffer.withUnsafeMutableBytes { try session.read(into: $0) }
                guard case .plaintext(let n) = result else { break }
                _ = buffer.withUnsafeBytes { raw in
                    reassembler.consume(UnsafeRawBufferPointer(rebasing: raw[0..<n])) { received.append(Array($0)) }
                }
            }
        } catch {
            failure = "\(error)"
            flushOutput()
            return false
        }
        flushOutput()
        return true
    }

    /// TLS 1.2 only: starts a renegotiation (a new ClientHello on the established connection).
    public func startRenegotiation() -> Bool {
        guard session.startRenegotiationForTesting() else { return false }
        flushOutput()
        return true
    }

    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        guard (try? session.write(bytes)) == true else { return false }
        flushOutput()
        return true
    }

    public func receive(timeoutMilliseconds: Int32 = 2000) -> [UInt8]? {
        while received.isEmpty {
            guard pump(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        }
        return received.removeFirst()
    }
}
