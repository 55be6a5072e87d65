import CUDP
import Glibc
import RelayIO
import STUN
import Synchronization

/// TCP allocations (RFC 6062) coming and going, one after another on a thread of its own until
/// `finish` (or its end): each client allocates over TCP or TLS (two of each in turn), permits
/// the loopback peer, and gets one peer connection, half of them by Connect to the churn's
/// listener (§4.3), half by the peer connecting to the relayed address (ConnectionAttempt,
/// §4.4); binds it on a new data connection (ConnectionBind), sends bytes both ways and checks
/// them, then goes: one in four with Refresh 0 first, the others by closing the control and data
/// connections only. Each time, the relay must close the peer's connection: "when the
/// allocation is deleted, the server MUST close all connections associated with it" (RFC 6062
/// §5.4, by way of RFC 8656's deletion when the control connection closes, §3.3 / RFC 6062 §2).
final class TCPAllocationChurn: @unchecked Sendable {
    private let stopping = Atomic<Bool>(false)
    private let attempts = Atomic<Int>(0)
    private var thread: BenchThread?
    private var result = Outcome()
    private let listener: Int32
    private let listenerAddress: TransportAddress

    struct Outcome {
        var ok = 0
        var peerInitiated = 0
        var closedOnly = 0
        var bytesChecked = 0
        var failures: [String: Int] = [:]
    }

    var tried: Int { attempts.load(ordering: .relaxed) }

    /// Bytes each way per connection.
    static let exchangeBytes = 1200

    /// Whether client `i` deletes its allocation first (pairs of both kinds of peer connection).
    static func deletes(_ i: Int) -> Bool { (i / 2) % 4 == 3 }

    /// `server`/`tlsServer`: the relay's TCP and TLS listeners; clients send from 127.63.0.0/16.
    init(server: TransportAddress, tlsServer: TransportAddress, tls: TLSContext, credentials: CredentialSource,
         endNanoseconds: UInt64, pauseNanoseconds: UInt64 = 100_000_000) throws {
        (listener, listenerAddress) = try Self.listen()
        nonisolated(unsafe) let tls = tls
        thread = BenchThread { [self] in
            var i = 0
            while !stopping.load(ordering: .relaxed) && monotonicNanoseconds() < endNanoseconds {
                let transport: ClientTransport = (i / 4) % 2 == 0 ? .tcp : .tls
                let cr = credentials.credentials(index: 400_000 + i, nowUnixSeconds: unixSeconds())
                do {
                    try cycle(i, transport: transport, server: transport == .tls ? tlsServer : server, tls: tls, credentials: cr)
                    result.ok += 1
                    if i % 2 == 1 { result.peerInitiated += 1 }
                    if !Self.deletes(i) { result.closedOnly += 1 }
                } catch {
                    result.failures["\(transport.rawValue): \(error)".prefix(120).description, default: 0] += 1
                }
                i += 1
                attempts.store(i, ordering: .relaxed)
                sleepNanoseconds(pauseNanoseconds)
            }
        }
    }

    deinit { Glibc.close(listener) }

    /// One client's life (see the type).
    private func cycle(_ i: Int, transport: ClientTransport, server: TransportAddress, tls: TLSContext,
                       credentials: (username: String, password: String)) throws {
        let source = TransportAddress(ip: .v4(IPv4Address(127 << 24 | 63 << 16 | UInt32(i & 0xFFFF))), port: 0)
        func client() throws -> StreamTURNClient {
            StreamTURNClient(connection: try StreamClient(transport: transport, server: server, source: source, tls: tls),
                             username: credentials.username, password: credentials.password)
        }
        var peer: Int32 = -1
        defer { if peer >= 0 { Glibc.close(peer) } }
        do { // the client's control and data connections close at the end of this scope
            let control = try client()
            try control.request(.allocateTCP)
            guard let relayed = control.relayedAddress else { throw StreamClient.Failure("no XOR-RELAYED-ADDRESS") }
            try control.request(.createPermission(peer: listenerAddress))
            let id: UInt32
            if i % 2 == 1 {
                peer = try Self.connect(to: relayed, from: listenerAddress.ip)
                guard let attempt = Self.connectionAttempt(on: control.connection) else {
                    throw StreamClient.Failure("no ConnectionAttempt within 3 s")
                }
                id = attempt
            } else {
                guard let connectionID = try control.request(.connect(peer: listenerAddress)).connectionID else {
                    throw StreamClient.Failure("Connect without CONNECTION-ID")
                }
                id = connectionID
                guard let accepted = Self.accept(listener, timeoutMilliseconds: 3000) else {
                    throw StreamClient.Failure("the relay did not connect to the peer within 3 s")
                }
                peer = accepted
            }
            let data = try client()
            try data.request(.connectionBind(id: id))
            // Bytes both ways, as they are (no framing after the bind).
            let out = (0..<Self.exchangeBytes).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            guard data.connection.send(out), Self.receive(peer, count: out.count, timeoutMilliseconds: 3000) == out else {
                throw StreamClient.Failure("client → peer bytes did not arrive intact")
            }
            let back = out.reversed() as [UInt8]
            guard Self.send(peer, back), data.connection.receiveRaw(count: back.count, timeoutMilliseconds: 3000) == back else {
                throw StreamClient.Failure("peer → client bytes did not arrive intact")
            }
            result.bytesChecked += out.count + back.count
            if Self.deletes(i) { try control.request(.refresh(lifetime: 0)) }
            withExtendedLifetime(control) {} // its connection holds the allocation until here
        }
        // The client's connections are closed: the relay must now close the peer's.
        guard Self.waitForClose(peer, timeoutMilliseconds: 5000) else {
            throw StreamClient.Failure("the peer connection outlived its allocation by 5 s")
        }
    }

    /// Stops the churn and waits for the client in flight; what it did.
    func finish() -> (tried: Int, outcome: Outcome) {
        stopping.store(true, ordering: .relaxed)
        thread?.join()
        thread = nil
        return (tried, result)
    }

    // MARK: - The peer's side (plain blocking sockets on loopback)

    static func listen() throws -> (Int32, TransportAddress) {
        let fd = Glibc.socket(AF_INET, Int32(Glibc.SOCK_STREAM.rawValue) | Int32(Glibc.SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StreamClient.Failure("socket: errno \(errno)") }
        let any = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: 0)
        guard cu_addr(any).withSockaddr({ bind(fd, $0, $1) }) == 0, Glibc.listen(fd, 64) == 0,
              let address = TransportAddress.local(of: fd) else {
            Glibc.close(fd)
            throw StreamClient.Failure("the peer's listener: errno \(errno)")
        }
        return (fd, address)
    }

    static func connect(to address: TransportAddress, from ip: IPAddress) throws -> Int32 {
        let fd = Glibc.socket(AF_INET, Int32(Glibc.SOCK_STREAM.rawValue) | Int32(Glibc.SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw StreamClient.Failure("socket: errno \(errno)") }
        guard cu_addr(TransportAddress(ip: ip, port: 0)).withSockaddr({ bind(fd, $0, $1) }) == 0,
              cu_addr(address).withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw StreamClient.Failure("the peer's connect to \(address): \(String(cString: strerror(code)))")
        }
        return fd
    }

    static func accept(_ listener: Int32, timeoutMilliseconds: Int32) -> Int32? {
        var p = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return nil }
        let fd = Glibc.accept(listener, nil, nil)
        return fd >= 0 ? fd : nil
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    static func receive(_ fd: Int32, count: Int, timeoutMilliseconds: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while out.count < count {
            let now = monotonicNanoseconds()
            guard now < deadline else { break }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { break }
            if n > 0 { out.append(contentsOf: buffer[0..<n]) }
        }
        return out
    }

    /// Whether the other end closes (end of stream or reset) within the time.
    static func waitForClose(_ fd: Int32, timeoutMilliseconds: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicNanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        while true {
            let now = monotonicNanoseconds()
            guard now < deadline else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32((deadline - now) / 1_000_000) + 1) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) { return true }
        }
    }

    /// The CONNECTION-ID of the next ConnectionAttempt indication on `control` within 3 s.
    static func connectionAttempt(on control: StreamClient) -> UInt32? {
        let deadline = monotonicNanoseconds() + 3_000_000_000
        var id: UInt32?
        while id == nil && monotonicNanoseconds() < deadline {
            _ = control.waitReadable(milliseconds: 50)
            let open = control.receive { bytes in
                guard id == nil, let m = try? STUNMessage.parse(bytes),
                      m.type == STUNMessageType(method: .connectionAttempt, messageClass: .indication) else { return }
                id = (try? m.connectionID()) ?? nil
            }
            if !open { break }
        }
        return id
    }
}
