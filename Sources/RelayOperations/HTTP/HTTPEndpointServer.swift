import CUDP
import Glibc
import SocketAddressing
import STUN
import Synchronization

/// A very small HTTP/1.1 server for the operations endpoints (`/metrics`, `/healthz`, `/readyz`).
///
/// It runs on its own thread with `poll(2)` over non-blocking sockets, so it never touches a
/// worker and needs no event-loop library. Everything a client can make it hold is bounded:
/// connections (`maxConnections`; beyond it new connections wait in the kernel backlog), request
/// bytes (`maxRequestBytes`, then 431), and time (`requestTimeout` for the whole exchange, which
/// bounds slowloris clients). One request per connection (`Connection: close`); only the request
/// line is interpreted, so headers and bodies cannot confuse it.
public final class HTTPEndpointServer: Sendable {
    public struct Limits: Sendable {
        public var maxConnections = 64
        public var maxRequestBytes = 8192
        /// From accept to the last byte of the response.
        public var requestTimeoutNanoseconds: UInt64 = 5_000_000_000
        public var listenBacklog: Int32 = 64

        public init() {}
    }

    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    /// The address actually bound (the configured port may be 0).
    public let boundAddress: TransportAddress
    private let wakeFD: Int32
    private let thread: pthread_t
    private let stopped = Mutex(false)

    /// Binds `address` at once (so a busy port fails here) and starts serving on a new thread.
    public init(address: TransportAddress, limits: Limits = Limits(), handler: @escaping Handler) throws(HTTPServerError) {
        let listener = try Self.listen(on: address, backlog: limits.listenBacklog)
        guard let bound = TransportAddress.local(of: listener) else {
            close(listener)
            throw .socket("getsockname", errno)
        }
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe(&pipeFDs) == 0 else {
            let code = errno
            close(listener)
            throw .socket("pipe", code)
        }
        for fd in pipeFDs { Self.makeNonBlocking(fd) }
        let loop = ServeLoop(listener: listener, wakeFD: pipeFDs[0], limits: limits, handler: handler)
        do throws(HTTPServerError) {
            thread = try startThread { loop.run() }
        } catch {
            close(listener)
            for fd in pipeFDs { close(fd) }
            throw error
        }
        boundAddress = bound
        wakeFD = pipeFDs[1]
    }

    static func makeNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    /// Stops serving, closes every socket and waits for the thread. Idempotent.
    public func stop() {
        let first = stopped.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        var one: UInt8 = 1
        _ = write(wakeFD, &one, 1)
        pthread_join(thread, nil)
        close(wakeFD)
    }

    deinit { stop() }

    // MARK: - Sockets

    private static func listen(on address: TransportAddress, backlog: Int32) throws(HTTPServerError) -> Int32 {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket("socket", errno) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.family == .ipv6 {
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let rc = cu_addr(address).withSockaddr { bind(fd, $0, $1) }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw .bind(address, code)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw .socket("listen", code)
        }
        return fd
    }
}

public enum HTTPServerError: Error, Equatable, CustomStringConvertible {
    case bind(TransportAddress, Int32)
    case socket(String, Int32)
    case thread(Int32)

    public var description: String {
        switch self {
        case .bind(let address, let code): return "cannot bind \(address): \(String(cString: strerror(code)))"
        case .socket(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        case .thread(let code): return "cannot start the HTTP thread: \(String(cString: strerror(code)))"
        }
    }
}

/// The serving thread's state. Created on the starting thread, then used only by the serving thread.
private final class ServeLoop: @unchecked Sendable {
    struct Connection {
        var fd: Int32
        var deadline: UInt64
        var request: [UInt8] = []
        var response: [UInt8] = []
        var sent = 0
        /// The response is out and the write side shut: reading (and discarding) until the client
        /// closes, so unread request bytes do not turn the close into a reset that loses the response.
        var draining = false
        var writing: Bool { !response.isEmpty && !draining }
    }

    let listener: Int32
    let wakeFD: Int32
    let limits: HTTPEndpointServer.Limits
    let handler: HTTPEndpointServer.Handler
    var connections: [Connection] = []
    var scratch = [UInt8](repeating: 0, count: 4096)

    init(listener: Int32, wakeFD: Int32, limits: HTTPEndpointServer.Limits, handler: @escaping HTTPEndpointServer.Handler) {
        self.listener = listener
        self.wakeFD = wakeFD
        self.limits = limits
        self.handler = handler
    }

    func run() {
        var fds: [pollfd] = []
        while true {
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            let accepting = connections.count < limits.maxConnections
            fds.append(pollfd(fd: accepting ? listener : -1, events: Int16(POLLIN), revents: 0))
            for c in connections {
                fds.append(pollfd(fd: c.fd, events: Int16(c.writing ? POLLOUT : POLLIN), revents: 0))
            }
            let now = MonotonicClock.nanoseconds()
            var timeout: UInt64 = 1_000_000_000
            for c in connections { timeout = min(timeout, c.deadline > now ? c.deadline - now : 0) }
            let rc = poll(&fds, nfds_t(fds.count), Int32(timeout / 1_000_000) + 1)
            if rc < 0 && errno != EINTR { break }
            if fds[0].revents != 0 { break }
            // Serve the connections that were polled (indices 2...), newest accepts afterwards.
            var closing: [Int] = []
            for i in connections.indices {
                let revents = fds[i + 2].revents
                if revents == 0 { continue }
                if !service(i, revents: revents) { closing.append(i) }
            }
            let after = MonotonicClock.nanoseconds()
            for i in connections.indices where connections[i].deadline <= after && !closing.contains(i) {
                closing.append(i)
            }
            for i in closing.sorted(by: >) {
                close(connections[i].fd)
                connections.remove(at: i)
            }
            if accepting && fds[1].revents != 0 { acceptAll() }
        }
        for c in connections { close(c.fd) }
        connections.removeAll()
        close(listener)
        close(wakeFD)
    }

    func acceptAll() {
        while connections.count < limits.maxConnections {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            HTTPEndpointServer.makeNonBlocking(fd)
            var request: [UInt8] = []
            request.reserveCapacity(512)
            connections.append(Connection(fd: fd, deadline: MonotonicClock.nanoseconds() &+ limits.requestTimeoutNanoseconds,
                                          request: request))
        }
    }

    /// Reads or writes; false when the connection is finished.
    func service(_ i: Int, revents: Int16) -> Bool {
        if connections[i].writing { return write(i) }
        if revents & Int16(POLLIN | POLLHUP | POLLERR) == 0 { return true }
        let n = scratch.withUnsafeMutableBytes { recv(connections[i].fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return false }
        if n < 0 { return errno == EAGAIN || errno == EINTR }
        if connections[i].draining { return true }
        let room = limits.maxRequestBytes - connections[i].request.count
        connections[i].request.append(contentsOf: scratch[0..<min(n, max(0, room))])
        let response: HTTPResponse
        switch HTTPRequest.parse(connections[i].request, limit: limits.maxRequestBytes) {
        case .incomplete:
            return true
        case .tooLarge:
            response = HTTPResponse(status: 431, body: "request header too large\n")
        case .malformed:
            response = HTTPResponse(status: 400, body: "bad request\n")
        case .request(let request):
            if request.method != "GET" && request.method != "HEAD" {
                response = HTTPResponse(status: 405, body: "method not allowed\n", extraHeaders: [("Allow", "GET, HEAD")])
            } else {
                let full = handler(request)
                response = request.method == "HEAD" ? full.withoutBody() : full
            }
        }
        connections[i].request = []
        connections[i].response = response.serialized()
        return write(i)
    }

    func write(_ i: Int) -> Bool {
        while connections[i].sent < connections[i].response.count {
            let offset = connections[i].sent
            let fd = connections[i].fd
            let n = connections[i].response.withUnsafeBytes { bytes -> Int in
                guard let base = bytes.baseAddress else { return 0 }
                return send(fd, base + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 { return errno == EAGAIN || errno == EINTR }
            if n == 0 { return false }
            connections[i].sent += n
        }
        shutdown(connections[i].fd, Int32(SHUT_WR))
        connections[i].draining = true
        return true
    }
}

final class ThreadEntry: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(body: @escaping @Sendable () -> Void) { self.body = body }
}

func startThread(_ body: @escaping @Sendable () -> Void) throws(HTTPServerError) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadEntry(body: body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { argument in
        guard let argument else { return nil }
        let entry = Unmanaged<ThreadEntry>.fromOpaque(argument).takeRetainedValue()
        entry.body()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<ThreadEntry>.fromOpaque(box).release()
        throw .thread(rc)
    }
    return thread
}
