import Glibc
import RelayOperations
import STUN
import Testing

/// A blocking TCP client for the tests, with receive/send timeouts so nothing waits forever.
struct HTTPTestClient {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    enum Failure: Error { case connect(Int32), closedWithoutResponse, malformed(String) }

    static func connect(_ address: TransportAddress, timeoutMilliseconds: Int = 3000) throws -> Int32 {
        guard case .v4(let ip) = address.ip else { throw Failure.connect(EAFNOSUPPORT) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure.connect(errno) }
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = address.port.bigEndian
        sin.sin_addr = in_addr(s_addr: ip.value.bigEndian)
        let rc = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let code = errno
            close(fd)
            throw Failure.connect(code)
        }
        return fd
    }

    /// True when the connection's two ends are the same address and port: the kernel chose the
    /// destination port as the source of a connect to a port nobody listens on (a TCP self-connect).
    static func isSelfConnected(_ fd: Int32) -> Bool {
        var local = sockaddr_in(), peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let a = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let b = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return a == 0 && b == 0 && local.sin_port == peer.sin_port && local.sin_addr.s_addr == peer.sin_addr.s_addr
    }

    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// Reads until the server closes (or the receive timeout); returns everything read.
    static func readAll(_ fd: Int32, limit: Int = 1 << 22) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// How one connection ended in `waitForCloses`.
    struct Close {
        /// What arrived before the end.
        var bytes: [UInt8] = []
        /// The server closed it (end of stream or a reset); false: still open at the deadline.
        var closedByServer = false
        /// When the close was seen (`MonotonicClock`), or the deadline.
        var atNanoseconds: UInt64 = 0
    }

    /// Watches all of `fds` at once (poll) until each is closed by the peer or `timeoutMilliseconds`
    /// pass, and says for each when and whether the server closed it, so that "closed by the server"
    /// is told apart from "we stopped waiting".
    static func waitForCloses(_ fds: [Int32], timeoutMilliseconds: Int) -> [Close] {
        var results = [Close](repeating: Close(), count: fds.count)
        var open = Set(fds.indices)
        let deadline = MonotonicClock.nanoseconds() + UInt64(timeoutMilliseconds) * 1_000_000
        var buffer = [UInt8](repeating: 0, count: 8192)
        while !open.isEmpty {
            let now = MonotonicClock.nanoseconds()
            guard now < deadline else { break }
            let order = open.sorted()
            var polled = order.map { pollfd(fd: fds[$0], events: Int16(POLLIN), revents: 0) }
            let wait = Int32(min(100, (deadline - now) / 1_000_000 + 1))
            guard poll(&polled, nfds_t(polled.count), wait) >= 0 else { continue }
            let seen = MonotonicClock.nanoseconds()
            for (slot, index) in order.enumerated() where polled[slot].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { recv(fds[index], $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                if n > 0 {
                    results[index].bytes.append(contentsOf: buffer[0..<n])
                } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    results[index].closedByServer = true
                    results[index].atNanoseconds = seen
                    open.remove(index)
                }
            }
        }
        for index in open { results[index].atNanoseconds = MonotonicClock.nanoseconds() }
        return results
    }

    static func parse(_ raw: [UInt8]) throws -> Response {
        let text = String(decoding: raw, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else {
            throw raw.isEmpty ? Failure.closedWithoutResponse : Failure.malformed(text)
        }
        let head = text[..<split.lowerBound].split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let statusLine = head.first, statusLine.hasPrefix("HTTP/1.1 "),
              let status = Int(statusLine.dropFirst(9).prefix(3)) else { throw Failure.malformed(text) }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: " ")
        }
        return Response(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    static func request(_ address: TransportAddress, _ raw: String) throws -> Response {
        let fd = try connect(address)
        defer { close(fd) }
        _ = send(fd, Array(raw.utf8))
        return try parse(readAll(fd))
    }

    static func get(_ address: TransportAddress, _ path: String) throws -> Response {
        try request(address, "GET \(path) HTTP/1.1\r\nHost: test\r\nUser-Agent: relay-tests\r\n\r\n")
    }
}

extension Substring {
    func trimmingCharacters(in character: Character) -> String {
        var s = self
        while s.first == character { s = s.dropFirst() }
        while s.last == character { s = s.dropLast() }
        return String(s)
    }
}

/// Prometheus text exposition parsed into `series → value`, keyed exactly as printed
/// (`name{label="value",...}`), plus the `# TYPE` of each family.
struct Exposition {
    var samples: [String: Double] = [:]
    var types: [String: String] = [:]

    init(_ text: String) throws {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                if parts.count == 4 { types[String(parts[2])] = String(parts[3]) }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                throw HTTPTestClient.Failure.malformed(String(line))
            }
            samples[String(line[..<space])] = value
        }
    }

    subscript(_ key: String) -> Double? { samples[key] }
}

func scrapeMetrics(_ address: TransportAddress) throws -> Exposition {
    let response = try HTTPTestClient.get(address, "/metrics")
    #expect(response.status == 200)
    return try Exposition(response.body)
}
