import CUDP
import Glibc
import RelayIO
import SocketAddressing
import STUN

/// How a benchmark client reaches the TURN server (RFC 8656 §3.1).
public enum ClientTransport: String, CaseIterable, Codable, Sendable {
    case udp, tcp, tls
}

/// One client's connection to a TURN server over UDP, TCP or TLS-over-TCP, non-blocking: whole
/// messages out (`send`), framed messages in (`receive`). A TLS connection runs a client
/// `TLSSession` (sans-IO) over the socket. Used by one thread at a time.
public final class StreamClient {
    public let transport: ClientTransport
    public let fd: Int32
    let server: cu_addr
    private var session: TLSSession?
    private var reassembler = StreamReassembler(maxMessageBytes: 70_000, rfc5766Channels: true)
    /// Bytes the socket did not take yet (TCP, TLS); sent before anything else.
    private var outbox: [UInt8] = []
    private var outboxStart = 0
    /// Messages dropped because the outbox was over `maxOutboxBytes` (a server not reading).
    public private(set) var dropped: UInt64 = 0
    public private(set) var closed = false
    public var maxOutboxBytes = 256 << 10
    private static let chunkBytes = 65536
    private let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkBytes, alignment: 8)
    private let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkBytes, alignment: 8)

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// Opens the socket (from `source` when given) and connects; for TLS, completes the handshake
    /// within `timeoutMilliseconds`.
    public init(transport: ClientTransport, server: TransportAddress, source: TransportAddress? = nil,
                tls: TLSContext? = nil, timeoutMilliseconds: Int32 = 5000) throws {
        guard server.ip.isLoopback else { throw Failure("\(server) is not loopback") }
        self.transport = transport
        self.server = cu_addr(server)
        let family = Int32(self.server.sa.sa_family)
        let type = transport == .udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)
        fd = socket(family, type | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: \(String(cString: strerror(errno)))") }
        if transport == .tls {
            guard let tls else { Glibc.close(fd); throw Failure("TLS transport without a TLS context") }
            do { session = try TLSSession(context: tls, role: .client) } catch { Glibc.close(fd); throw Failure("\(error)") }
        } else {
            session = nil
        }
        var big: Int32 = 1 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, socklen_t(MemoryLayout<Int32>.size))
        if transport != .udp {
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        // Fully initialised: a throw from here on runs deinit (which closes the socket).
        if let source {
            let rc = cu_addr(source).withSockaddr { bind(fd, $0, $1) }
            guard rc == 0 else { throw Failure("bind \(source): \(String(cString: strerror(errno)))") }
        }
        // Blocking connect (loopback: immediate), then non-blocking from here on.
        let rc = self.server.withSockaddr { connect(fd, $0, $1) }
        guard rc == 0 else { throw Failure("connect \(server): \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        if transport == .tls { try handshake(timeoutMilliseconds: timeoutMilliseconds) }
    }

    deinit {
        Glibc.close(fd)
        chunk.deallocate()
        plain.deallocate()
    }

    /// Drives the TLS handshake to its end.
    private func handshake(timeoutMilliseconds: Int32) throws(Failure) {
        guard let session else { return }
        let deadline = monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            do {
                _ = try session.read(into: plain)
            } catch {
                throw Failure("TLS handshake: \(error)")
            }
            appendOutput()
            guard flush() else { throw Failure("TLS handshake: connection closed") }
            if session.isHandshakeDone { return }
            let now = monotonicNanoseconds()
            guard now < deadline else { throw Failure("TLS handshake: timeout") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1)
            let n = recv(fd, chunk.baseAddress, chunk.count, 0)
            if n == 0 { throw Failure("TLS handshake: closed by the server") }
            if n < 0 { if errno == EAGAIN { continue }; throw Failure("TLS handshake: recv errno \(errno)") }
            do { try session.feed(UnsafeRawBufferPointer(rebasing: chunk[0..<n])) } catch { throw Failure("\(error)") }
        }
    }

    public var isTLSHandshakeDone: Bool { session?.isHandshakeDone ?? false }

    /// Frees the TLS session while keeping the connection: for an idle hold that will never send
    /// or read again (the benchmark's side of 10,000 connections stays small).
    public func releaseTLSSession() { session = nil }

    /// Moves the session's waiting ciphertext into the outbox.
    private func appendOutput() {
        guard let session else { return }
        while session.outputPending > 0 {
            let n = session.takeOutput(into: chunk)
            if n <= 0 { break }
            outbox.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
    }

    /// Sends what the outbox holds as far as the socket takes it; false when the connection is gone.
    @discardableResult
    public func flush() -> Bool {
        while outboxStart < outbox.count {
            let n = outbox.withUnsafeBytes { b in
                Glibc.send(fd, b.baseAddress! + outboxStart, b.count - outboxStart, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { return true }
                closed = true
                return false
            }
            outboxStart += n
        }
        outbox.removeAll(keepingCapacity: true)
        outboxStart = 0
        return true
    }

    public var pendingBytes: Int { outbox.count - outboxStart }

    /// Sends one whole message (STUN or ChannelData, already padded for streams). Over UDP one
    /// datagram; over TCP/TLS one write (one TLS record). False when it was dropped.
    @discardableResult
    public func send(_ message: UnsafeRawBufferPointer) -> Bool {
        switch transport {
        case .udp:
            let rc = server.withSockaddr { sendto(fd, message.baseAddress, message.count, Int32(MSG_DONTWAIT), $0, $1) }
            if rc < 0 { dropped += 1; return false }
            return true
        case .tcp, .tls:
            guard !closed, pendingBytes < maxOutboxBytes else { dropped += 1; return false }
            if let session {
                guard (try? session.write(message)) == true else { dropped += 1; return false }
                appendOutput()
            } else {
                outbox.append(contentsOf: message)
            }
            return flush()
        }
    }

    public func send(_ message: [UInt8]) -> Bool { message.withUnsafeBytes { send($0) } }

    /// Reads what has arrived (without waiting) and hands every complete message to `body`;
    /// false when the server closed the connection or broke its framing.
    @discardableResult
    public func receive(_ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        for _ in 0..<64 {
            let n = recv(fd, chunk.baseAddress, chunk.count, Int32(MSG_DONTWAIT))
            if n < 0 { return errno == EAGAIN || errno == EINTR }
            if n == 0 && transport != .udp { closed = true; return false }
            let bytes = UnsafeRawBufferPointer(rebasing: chunk[0..<n])
            switch transport {
            case .udp:
                body(bytes)
            case .tcp:
                guard reassembler.consume(bytes, body).invalid == nil else { closed = true; return false }
            case .tls:
                guard let session, (try? session.feed(bytes)) != nil else { closed = true; return false }
                while true {
                    guard let r = try? session.read(into: plain) else { closed = true; return false }
                    guard case .plaintext(let m) = r else {
                        if r == .closed { closed = true; return false }
                        break
                    }
                    guard reassembler.consume(UnsafeRawBufferPointer(rebasing: plain[0..<m]), body).invalid == nil
                    else { closed = true; return false }
                }
                // A TLS 1.3 key update or session ticket may want an answer.
                appendOutput()
                flush()
            }
        }
        return true
    }

    /// After a ConnectionBind (RFC 6062 §4.4) the connection carries the peer's bytes as they
    /// are, no framing: reads (decrypting over TLS) until `count` bytes came or the deadline;
    /// what came. Not after `receive` has buffered part of a message.
    public func receiveRaw(count: Int, timeoutMilliseconds: Int32) -> [UInt8] {
        var out: [UInt8] = []
        let deadline = monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while out.count < count && !closed {
            let now = monotonicNanoseconds()
            guard now < deadline else { break }
            _ = waitReadable(milliseconds: Int32(min(50, (deadline - now) / 1_000_000 + 1)))
            let n = recv(fd, chunk.baseAddress, chunk.count, Int32(MSG_DONTWAIT))
            if n == 0 { closed = true; break }
            if n < 0 { if errno == EAGAIN || errno == EINTR { continue }; closed = true; break }
            let bytes = UnsafeRawBufferPointer(rebasing: chunk[0..<n])
            guard let session else {
                out.append(contentsOf: bytes)
                continue
            }
            guard (try? session.feed(bytes)) != nil else { closed = true; break }
            while case .plaintext(let m)? = try? session.read(into: plain) {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: plain[0..<m]))
            }
            appendOutput()
            flush()
        }
        return out
    }

    /// Waits up to `milliseconds` for the socket to become readable.
    public func waitReadable(milliseconds: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, milliseconds) > 0
    }

    /// The local address of the socket.
    public var localAddress: TransportAddress? { TransportAddress.local(of: fd) }
}

/// A TURN client on a `StreamClient`: blocking requests with the long-term credential dance,
/// then ChannelData.
public final class StreamTURNClient {
    public let connection: StreamClient
    public let username: String
    public let password: String
    public var auth: ControlAuth?
    public private(set) var relayedAddress: TransportAddress?
    private var generator = SystemRandomNumberGenerator()
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)

    public init(connection: StreamClient, username: String, password: String) {
        self.connection = connection
        self.username = username
        self.password = password
    }

    deinit { buffer.deallocate() }

    /// Sends `request` (again after a 401/438 with the credentials) and waits for its answer;
    /// retransmits over UDP. Throws unless it succeeded.
    @discardableResult
    public func request(_ request: ControlRequest, timeoutMilliseconds: Int32 = 3000) throws(StreamClient.Failure) -> ControlResponse {
        var challenges = 0
        let deadline = monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            let id = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
            guard let n = ControlCodec.encode(request, transactionID: id, auth: auth, into: buffer) else {
                throw .init("cannot encode \(request)")
            }
            var answer: ControlResponse?
            var lastSent: UInt64 = 0
            while answer == nil {
                let now = monotonicNanoseconds()
                guard now < deadline else { throw .init("no answer to \(request) within \(timeoutMilliseconds) ms") }
                if lastSent == 0 || (connection.transport == .udp && now - lastSent > 250_000_000) {
                    connection.send(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    lastSent = now
                }
                connection.flush()
                _ = connection.waitReadable(milliseconds: 50)
                let open = connection.receive { bytes in
                    if answer == nil, let r = ControlCodec.decode(bytes), r.transactionID == id { answer = r }
                }
                guard open || answer != nil else { throw .init("connection closed during \(request)") }
            }
            guard let r = answer else { continue }
            if r.isSuccess {
                switch request {
                case .allocate, .allocateTCP: relayedAddress = r.relayedAddress
                default: break
                }
                return r
            }
            let code = r.errorCode ?? 0
            guard code == 401 || code == 438, let nonce = r.nonce, challenges < 2 else {
                throw .init("\(request): error \(code)")
            }
            challenges += 1
            let realm = r.realm ?? auth?.realm ?? ""
            let key = auth?.realm == realm ? auth!.key : ControlCodec.longTermKey(username: username, realm: realm, password: password)
            auth = ControlAuth(username: username, realm: realm, nonce: nonce, key: key)
        }
    }
}

/// ChannelData framing for the benchmark (RFC 8656 §12.5: padded to 4 over streams).
public enum BenchChannelData {
    /// Writes ChannelData with `payloadBytes` of payload (a BenchPayload header, then zeros) into
    /// `buffer`; returns its length (padded when `padded`).
    public static func write(into buffer: UnsafeMutableRawBufferPointer, channel: UInt16, payloadBytes: Int, padded: Bool,
                             flow: UInt32, sequence: UInt64, now: UInt64) -> Int {
        let p = buffer.baseAddress!
        p.storeBytes(of: UInt8(channel >> 8), toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: UInt8(channel & 0xFF), toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: payloadBytes >> 8), toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: payloadBytes), toByteOffset: 3, as: UInt8.self)
        BenchPayload.write(to: p + 4, flow: flow, sequence: sequence, sentNanoseconds: now)
        let length = 4 + payloadBytes
        return padded ? (length + 3) & ~3 : length
    }

    /// The BenchPayload header inside ChannelData, nil for anything else.
    public static func payload(_ message: UnsafeRawBufferPointer) -> (flow: UInt32, sequence: UInt64, sentNanoseconds: UInt64)? {
        guard message.count >= 4 + BenchPayload.headerLength, message[0] & 0xC0 == 0x40 else { return nil }
        return BenchPayload.read(UnsafeRawBufferPointer(rebasing: message[4...]))
    }
}
