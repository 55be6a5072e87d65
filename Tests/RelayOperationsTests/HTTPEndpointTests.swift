import Glibc
import RelayOperations
import STUN
import Synchronization
import Testing
import TestSupport
@testable import OperationsTestSupport

private let loopbackAnyPort = TransportAddress(ip: .v4(.loopback), port: 0)

/// Blocking sockets with timeouts of up to seconds: on threads of their own, off the cooperative pool.
@Suite(.dedicatedThread) struct HTTPEndpointTests {
    @Test func healthIsAlwaysOKAndReadinessFollowsItsChecks() throws {
        let readiness = Readiness()
        let server = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: nil,
                                          metrics: RelayMetrics(), readiness: readiness, version: "test-1")
        defer { server.stop() }
        let address = server.health.boundAddress

        #expect(try HTTPTestClient.get(address, "/healthz").status == 200)
        // No check registered: nothing has said the workers run.
        #expect(try HTTPTestClient.get(address, "/readyz").status == 503)

        let workersUp = Atomic(false)
        readiness.set("workers") { workersUp.load(ordering: .acquiring) }
        let notReady = try HTTPTestClient.get(address, "/readyz")
        #expect(notReady.status == 503)
        #expect(notReady.body == "not ready: workers\n")

        workersUp.store(true, ordering: .releasing)
        let ready = try HTTPTestClient.get(address, "/readyz")
        #expect(ready.status == 200)
        #expect(ready.body == "ready test-1\n")

        // The portal plugs in a check of its own later.
        let portalConnected = Atomic(false)
        readiness.set("portal") { portalConnected.load(ordering: .acquiring) }
        #expect(try HTTPTestClient.get(address, "/readyz").status == 503)
        portalConnected.store(true, ordering: .releasing)
        #expect(try HTTPTestClient.get(address, "/readyz").status == 200)
        #expect(try HTTPTestClient.get(address, "/healthz").status == 200)
    }

    @Test func unknownPathsMethodsAndHead() throws {
        let server = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: nil,
                                          metrics: RelayMetrics(), readiness: Readiness())
        defer { server.stop() }
        let address = server.health.boundAddress
        #expect(try HTTPTestClient.get(address, "/nope").status == 404)
        let post = try HTTPTestClient.request(address, "POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        #expect(post.status == 405)
        #expect(post.headers["allow"] == "GET, HEAD")
        let head = try HTTPTestClient.request(address, "HEAD /healthz HTTP/1.1\r\n\r\n")
        #expect(head.status == 200)
        #expect(head.headers["content-length"] == "3")
        #expect(head.body.isEmpty)
        // A query string does not change the route.
        #expect(try HTTPTestClient.get(address, "/healthz?verbose=1").status == 200)
    }

    @Test func separateMetricsListenerServesOnlyMetricsAndHealth() throws {
        let server = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: loopbackAnyPort,
                                          metrics: RelayMetrics(), readiness: Readiness())
        defer { server.stop() }
        #expect(server.metricsAddress != server.health.boundAddress)
        let metrics = try HTTPTestClient.get(try #require(server.metricsAddress), "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        #expect(try HTTPTestClient.get(server.health.boundAddress, "/metrics").status == 404)
        #expect(try HTTPTestClient.get(try #require(server.metricsAddress), "/readyz").status == 404)
    }

    @Test func busyPortIsAnErrorNotACrash() throws {
        let first = try HTTPEndpointServer(address: loopbackAnyPort) { _ in HTTPResponse(status: 200, body: "") }
        defer { first.stop() }
        #expect(throws: HTTPServerError.self) {
            _ = try HTTPEndpointServer(address: first.boundAddress) { _ in HTTPResponse(status: 200, body: "") }
        }
    }
}

@Suite(.dedicatedThread) struct HostileHTTPInputTests {
    static func server(_ limits: HTTPEndpointServer.Limits) throws -> HTTPEndpointServer {
        try HTTPEndpointServer(address: loopbackAnyPort, limits: limits,
                               handler: OperationsEndpoints.handler(metrics: RelayMetrics(), readiness: Readiness(), version: "t"))
    }

    @Test func oversizedRequestGets431AndTheServerGoesOn() throws {
        var limits = HTTPEndpointServer.Limits()
        limits.maxRequestBytes = 1024
        let server = try Self.server(limits)
        defer { server.stop() }
        let huge = "GET /healthz HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 64 * 1024) + "\r\n\r\n"
        let fd = try HTTPTestClient.connect(server.boundAddress)
        _ = HTTPTestClient.send(fd, Array(huge.utf8))
        let response = try HTTPTestClient.parse(HTTPTestClient.readAll(fd))
        close(fd)
        #expect(response.status == 431)
        #expect(try HTTPTestClient.get(server.boundAddress, "/healthz").status == 200)
    }

    @Test func garbageGets400() throws {
        let server = try Self.server(.init())
        defer { server.stop() }
        var bytes: [UInt8] = (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
        bytes += Array("\r\n\r\n".utf8)
        let fd = try HTTPTestClient.connect(server.boundAddress)
        _ = HTTPTestClient.send(fd, bytes)
        let response = try HTTPTestClient.parse(HTTPTestClient.readAll(fd))
        close(fd)
        #expect(response.status == 400)
        for line in ["GET  /healthz HTTP/1.1", "GET healthz HTTP/1.1", "get /healthz HTTP/1.1", "GET /healthz HTTP/2.0",
                     "GET /health\u{7F}z HTTP/1.1", "GET /healthz"] {
            #expect(try HTTPTestClient.request(server.boundAddress, line + "\r\n\r\n").status == 400, "\(line)")
        }
        #expect(try HTTPTestClient.get(server.boundAddress, "/healthz").status == 200)
    }

    @Test func randomBytesNeverStopTheServer() throws {
        let server = try Self.server(.init())
        defer { server.stop() }
        var state: UInt64 = 0x1234_5678
        for round in 0..<40 {
            var bytes: [UInt8] = []
            for _ in 0..<(round * 37 % 700 + 1) {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes.append(UInt8(truncatingIfNeeded: state >> 33))
            }
            if round % 2 == 0 { bytes += Array("\n\n".utf8) }
            let fd = try HTTPTestClient.connect(server.boundAddress, timeoutMilliseconds: 200)
            _ = HTTPTestClient.send(fd, bytes)
            close(fd)
        }
        #expect(try HTTPTestClient.get(server.boundAddress, "/healthz").status == 200)
    }

    /// Slowloris: clients that connect and send a byte now and then hold a connection only until the
    /// request timeout, and the connection cap keeps them from taking more than `maxConnections`.
    @Test func slowClientsAreCutOffAtTheTimeoutAndTheCapHolds() throws {
        var limits = HTTPEndpointServer.Limits()
        limits.maxConnections = 4
        limits.requestTimeoutNanoseconds = 400_000_000
        let server = try Self.server(limits)
        defer { server.stop() }
        let start = MonotonicClock.nanoseconds()
        var slow: [Int32] = []
        for _ in 0..<6 {
            let fd = try HTTPTestClient.connect(server.boundAddress, timeoutMilliseconds: 3000)
            _ = HTTPTestClient.send(fd, Array("GET /healthz HTTP/1.1\r\n".utf8))
            slow.append(fd)
        }
        defer { for fd in slow { close(fd) } }
        // Each slow connection is closed by the server (an orderly EOF, not our own timeout) without
        // a response. Watched all at once, so each close is seen when it happens.
        let closes = HTTPTestClient.waitForCloses(slow, timeoutMilliseconds: 5000)
        for (index, close) in closes.enumerated() {
            #expect(close.closedByServer, "connection \(index) was not closed by the server within 5 s")
            #expect(close.bytes.isEmpty, "connection \(index) got \(close.bytes.count) bytes")
        }
        // The cap holds: only 4 are served at once. The first four are cut off one timeout after
        // their accept; the two beyond the cap wait in the backlog until one of those goes, then get
        // a full timeout of their own, so they close no earlier than two timeouts after the start.
        // Without the cap all six would close after one timeout.
        let closedAfter = closes.map { $0.atNanoseconds - start }.sorted()
        let timeout: UInt64 = 400_000_000
        #expect(closedAfter.allSatisfy { $0 >= timeout }, "\(closedAfter)")
        #expect(closedAfter.filter { $0 < 2 * timeout }.count <= 4, "\(closedAfter)")
        #expect(closedAfter[4] >= 2 * timeout && closedAfter[5] >= 2 * timeout, "\(closedAfter)")
        #expect(closedAfter[5] < 5_000_000_000)
        #expect(try HTTPTestClient.get(server.boundAddress, "/healthz").status == 200)
    }

    /// Scrapers that ask for a large answer and never read it (issue 14's faults): the response
    /// that does not fit their sockets waits only until the request timeout, and the server thread
    /// never blocks on it. With the connection cap at 2 and two such scrapers holding both places,
    /// a third request is answered once the timeout has freed them (never reading, the stuck ones
    /// cannot see the close themselves: the cap is what shows it).
    @Test func scrapersThatNeverReadAreCutOffAtTheTimeout() throws {
        var limits = HTTPEndpointServer.Limits()
        limits.maxConnections = 2
        limits.requestTimeoutNanoseconds = 500_000_000
        let big = String(repeating: "relay_example_series 1\n", count: 400_000)  // 9.2 MB: more than any socket buffer
        let server = try HTTPEndpointServer(address: loopbackAnyPort, limits: limits) { request in
            request.path == "/big" ? HTTPResponse(status: 200, body: big) : HTTPResponse(status: 200, body: "ok\n")
        }
        defer { server.stop() }
        var stuck: [Int32] = []
        defer { for fd in stuck { close(fd) } }
        for _ in 0..<2 {
            let fd = try HTTPTestClient.connect(server.boundAddress, timeoutMilliseconds: 3000)
            var small: Int32 = 4096
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            #expect(HTTPTestClient.send(fd, Array("GET /big HTTP/1.1\r\nHost: x\r\n\r\n".utf8)))
            stuck.append(fd)
        }
        let start = MonotonicClock.nanoseconds()
        #expect(try HTTPTestClient.get(server.boundAddress, "/healthz").status == 200)
        let waited = MonotonicClock.nanoseconds() - start
        #expect(waited < 2_500_000_000, "the third request waited \(waited) ns: the stuck scrapers were kept")
    }

    /// After `stop` nothing of this server answers on its port. A connect there may still succeed
    /// without it: the freed port can be taken by another test's listener, or the kernel can pick
    /// it as the client's own source port (a TCP self-connect, both ends one socket; CI saw one
    /// such run), so the test tells those apart instead of requiring the connect to fail.
    @Test func stopClosesTheListener() throws {
        let token = "stop-test-\(UInt64.random(in: 1...UInt64.max))"
        let server = try HTTPEndpointServer(address: loopbackAnyPort) { _ in HTTPResponse(status: 200, body: token) }
        let address = server.boundAddress
        #expect(try HTTPTestClient.get(address, "/healthz").body == token)
        server.stop()
        server.stop()
        let fd: Int32
        do {
            fd = try HTTPTestClient.connect(address, timeoutMilliseconds: 1000)
        } catch {
            return  // refused: the listener is gone
        }
        defer { close(fd) }
        if HTTPTestClient.isSelfConnected(fd) { return }
        _ = HTTPTestClient.send(fd, Array("GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n".utf8))
        let answer = String(decoding: HTTPTestClient.readAll(fd, limit: 1 << 16), as: UTF8.self)
        #expect(!answer.contains(token), "the stopped server still answered: \(answer)")
    }
}
