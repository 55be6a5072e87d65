import Foundation
import CUDP
import Glibc
import RelayCore
import RelayIO
import STUN
import SocketAddressing
import TURNRequests
import TURNTestClient
import Testing
import TestSupport
@testable import OperationsTestSupport

/// TCP allocations (RFC 6062) against the `turn-relay` binary, with real TCP peers on loopback:
/// a peer connecting to the relayed address (ConnectionAttempt) and the relay connecting to a
/// peer (Connect), data connections bound with ConnectionBind carrying bytes as-is both ways,
/// backpressure across the splice, the peer policy on Connect, and data connections closing
/// with their allocation.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryTCPAllocationTests {
    typealias Server = RelayBinaryStreamTests.Server

    /// A TCP allocation over a TCP control connection, with a permission for loopback peers.
    static func tcpAllocation(_ server: Server, permit: Bool = true) throws -> (TestStreamTURNClient, TransportAddress) {
        let control = try server.client()
        let allocated = try #require(control.request(.allocate) { $0.appendRequestedTransport(6) })
        #expect(allocated.errorCode == nil, "Allocate TCP: \(String(describing: allocated.errorCode))")
        let relayed = try #require(allocated.xorRelayedAddresses.first)
        if permit {
            let permitted = try #require(control.createPermission(peer: TransportAddress(ip: .v4(.loopback), port: 1)))
            #expect(permitted.errorCode == nil)
        }
        return (control, relayed)
    }

    /// A data connection bound to `connectionID` (RFC 6062 §4.3/§4.4: a new connection to the
    /// server, ConnectionBind with the control connection's credentials).
    static func bind(_ server: Server, _ connectionID: UInt32, receiveBufferBytes: Int32? = nil) throws
        -> (TestStreamConnection, TestTURNClient.Response?) {
        let connection = try TestStreamConnection(to: server.address, receiveBufferBytes: receiveBufferBytes)
        let client = TestStreamTURNClient(over: connection, username: "alice", password: "alice-pw")
        let response = client.request(.connectionBind) { $0.appendUInt32(.connectionID, connectionID) }
        return (connection, response)
    }

    /// The next ConnectionAttempt indication on the control connection: (CONNECTION-ID, peer).
    static func connectionAttempt(on control: TestStreamTURNClient) -> (UInt32, TransportAddress)? {
        guard let bytes = control.connection.receive(timeoutMilliseconds: 3000) else { return nil }
        return try? bytes.withUnsafeBytes { raw -> (UInt32, TransportAddress)? in
            let message = try STUNMessage.parse(raw)
            guard message.type == STUNMessageType(method: .connectionAttempt, messageClass: .indication),
                  let id = try message.connectionID(), let peer = try message.xorPeerAddresses().first else { return nil }
            return (id, peer)
        }
    }

    static func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        var out = [UInt8](repeating: 0, count: count)
        for i in stride(from: 0, to: count, by: 8) {
            let word = random.next()
            for k in 0..<min(8, count - i) { out[i + k] = UInt8(truncatingIfNeeded: word >> (8 * UInt64(k))) }
        }
        return out
    }

    // MARK: Tests

    /// RFC 6062 §5.3 and §5.4, both directions, with the client not reading for a while: the
    /// relay stops reading the peer instead of buffering (its buffered bytes stay bounded) and
    /// every byte arrives, in order.
    @Test(.timeLimit(.minutes(2)), arguments: ["io-uring", "batched-syscalls"])
    func aPeerConnectingToTheRelayedAddressIsSplicedWithBackpressure(backend: String) async throws {
        let server = try await Server(["--io-backend", backend])
        let (control, relayed) = try Self.tcpAllocation(server)
        let peer = try TestStreamConnection(to: relayed)
        let (connectionID, announced) = try #require(Self.connectionAttempt(on: control), "no ConnectionAttempt")
        #expect(announced == peer.localAddress)
        let (data, bound) = try Self.bind(server, connectionID, receiveBufferBytes: 16 * 1024)
        #expect(bound?.messageClass == .successResponse, "ConnectionBind: \(String(describing: bound?.errorCode))")

        // Client → peer.
        let upstream = Self.pattern(256 * 1024, seed: 1)
        #expect(data.send(upstream))
        let upstreamIntact = peer.receiveRaw(count: upstream.count, timeoutMilliseconds: 3000) == upstream
        #expect(upstreamIntact)

        // Peer → client, 24 MiB while the client reads nothing: more than the kernel's buffers on
        // both sides hold, so the relay must stop reading the peer.
        let downstream = Self.pattern(24 << 20, seed: 2)
        // The peer's fd is written from another thread while this one reads the data connection.
        let peerFD = peer.fd
        let sender = Thread {
            var offset = 0
            while offset < downstream.count {
                let n = downstream.withUnsafeBytes { Glibc.send(peerFD, $0.baseAddress! + offset, downstream.count - offset, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
                offset += n
            }
        }
        sender.start()
        let paused = await eventually(.seconds(20)) { server.metric("relay_tcp_splice_pauses_total") >= 1 }
        #expect(paused, "the relay never stopped reading the peer")
        let buffered = server.metric("relay_stream_buffered_bytes")
        #expect(buffered >= 0 && buffered <= 2 * 262_144 + 65_536, "the relay buffered \(buffered) bytes for a client that did not read")
        let received = data.receiveRaw(count: downstream.count, timeoutMilliseconds: 5000)
        #expect(received.count == downstream.count)
        // Compared outside #expect: a failing #expect would print two 24 MiB arrays.
        let intact = received == downstream
        #expect(intact, "the peer's bytes arrived changed or out of order")
        await server.expectMetric("relay_tcp_connections_bound_total", 1)
        await server.expectMetric("relay_tcp_peer_connections_open", 1)

        // §5.5: the peer closes → the client data connection closes; the allocation stays.
        peer.shutdownWrite()
        #expect(data.waitForClose(timeoutMilliseconds: 5000), "the client data connection stayed open")
        await server.expectMetric("relay_tcp_peer_connections_open", 0)
        #expect(control.refresh(lifetime: 600)?.errorCode == nil, "the control connection's allocation is gone")
    }

    /// `--max-tcp-connections-per-allocation`: one allocation cannot hold more peer connections
    /// than that, whether peers connect to its relayed address (the one over the cap is closed at
    /// once, announced to no one) or the client asks for them with Connect (508, as for a full
    /// relay port range). Another allocation of the same relay is not affected.
    @Test(.timeLimit(.minutes(2))) func peerConnectionsPerAllocationAreCapped() async throws {
        let server = try await Server(["--max-tcp-connections-per-allocation", "2"])
        let (control, relayed) = try Self.tcpAllocation(server)
        var peers: [TestStreamConnection] = []
        var connectionIDs: [UInt32] = []
        for n in 1...2 {
            let peer = try TestStreamConnection(to: relayed)
            let attempt = try #require(Self.connectionAttempt(on: control), "peer \(n): no ConnectionAttempt")
            #expect(attempt.1 == peer.localAddress)
            peers.append(peer)
            connectionIDs.append(attempt.0)
        }
        await server.expectMetric("relay_tcp_peer_connections_open", 2)
        let third = try TestStreamConnection(to: relayed)
        #expect(third.waitForClose(timeoutMilliseconds: 5000), "the connection over the cap stayed open")
        #expect(control.connection.receive(timeoutMilliseconds: 500) == nil, "the connection over the cap was announced")
        let listener = try TestTCPListener()
        let refused = try #require(control.request(.connect) { $0.appendXorAddress(.xorPeerAddress, listener.address) })
        #expect(refused.errorCode == 508, "Connect over the cap: \(String(describing: refused.errorCode))")
        #expect(listener.accept(timeoutMilliseconds: 300) == nil, "the relay connected to the peer anyway")

        // One of the two, bound and then closed by its peer, frees a place (§5.5).
        let (data, bound) = try Self.bind(server, connectionIDs[0])
        #expect(bound?.messageClass == .successResponse, "ConnectionBind: \(String(describing: bound?.errorCode))")
        peers[0].shutdownWrite()
        #expect(data.waitForClose(timeoutMilliseconds: 5000), "the client data connection stayed open")
        await server.expectMetric("relay_tcp_peer_connections_open", 1)
        let again = try #require(control.request(.connect) { $0.appendXorAddress(.xorPeerAddress, listener.address) })
        #expect(again.messageClass == .successResponse, "Connect after one ended: \(String(describing: again.errorCode))")
        #expect(listener.accept(timeoutMilliseconds: 3000) != nil)

        // Another allocation has its own two.
        let (otherControl, otherRelayed) = try Self.tcpAllocation(server)
        let otherPeer = try TestStreamConnection(to: otherRelayed)
        #expect(Self.connectionAttempt(on: otherControl)?.1 == otherPeer.localAddress)
    }

    /// RFC 6062 §5.3: "If no ConnectionBind request associated with this peer data connection is
    /// received after 30 seconds, the peer data connection MUST be closed." A peer that connects
    /// and a client that never binds: the relay closes the peer's connection after 30 s (counted),
    /// the CONNECTION-ID is then unknown, and the allocation goes on.
    @Test(.timeLimit(.minutes(2))) func aPeerConnectionNeverBoundIsClosedAfterThirtySeconds() async throws {
        let server = try await Server()
        let (control, relayed) = try Self.tcpAllocation(server)
        let peer = try TestStreamConnection(to: relayed)
        let (connectionID, _) = try #require(Self.connectionAttempt(on: control), "no ConnectionAttempt")
        let connectedAt = ContinuousClock.now
        #expect(!peer.waitForClose(timeoutMilliseconds: 25_000), "closed before 30 s")
        #expect(peer.waitForClose(timeoutMilliseconds: 15_000), "still open 40 s after the ConnectionAttempt")
        let closedAfter = ContinuousClock.now - connectedAt
        print("tcp-allocations: a never-bound peer connection was closed \(closedAfter) after its ConnectionAttempt")
        await server.expectMetric("relay_tcp_bind_timeouts_total", 1)
        await server.expectMetric("relay_tcp_peer_connections_open", 0)
        let (_, late) = try Self.bind(server, connectionID)
        #expect(late?.errorCode == 400, "ConnectionBind after the timeout: \(String(describing: late?.errorCode))")
        #expect(control.refresh(lifetime: 600)?.errorCode == nil, "the allocation is gone")
    }

    /// §5.3: "If no permission for this peer has been installed for this allocation, the server
    /// MUST close the connection with the peer immediately after it has been accepted."
    @Test(.timeLimit(.minutes(2))) func aPeerWithoutPermissionIsClosedAtOnce() async throws {
        let server = try await Server()
        let (control, relayed) = try Self.tcpAllocation(server, permit: false)
        let peer = try TestStreamConnection(to: relayed)
        #expect(peer.waitForClose(timeoutMilliseconds: 3000), "the relay kept a peer without permission")
        #expect(control.connection.receive(timeoutMilliseconds: 500) == nil, "a ConnectionAttempt for a peer without permission")
        await server.expectMetric("relay_tcp_peer_connections_total{result=\"refused\"}", 1)
    }

    /// §5.2: Connect makes an outgoing connection from the relayed address; the data connection
    /// carries bytes both ways; a Refresh with lifetime 0 ends the allocation and every data
    /// connection with it (§5.5).
    @Test(.timeLimit(.minutes(2))) func connectReachesAPeerFromTheRelayedAddress() async throws {
        let server = try await Server()
        let listener = try TestTCPListener()
        let (control, relayed) = try Self.tcpAllocation(server)
        let connected = try #require(control.request(.connect) { $0.appendXorAddress(.xorPeerAddress, listener.address) })
        #expect(connected.messageClass == .successResponse, "Connect: \(String(describing: connected.errorCode))")
        let connectionID = try #require(try connected.bytes.withUnsafeBytes { try STUNMessage.parse($0).connectionID() })
        let peer = try #require(listener.accept(timeoutMilliseconds: 3000))
        // "The local endpoint is the relayed transport address associated with the allocation."
        #expect(peer.remote == relayed)
        // §5.2: a second Connect to the same peer while this one is pending: 446.
        let again = try #require(control.request(.connect) { $0.appendXorAddress(.xorPeerAddress, listener.address) })
        #expect(again.errorCode == 446)

        let (data, bound) = try Self.bind(server, connectionID)
        #expect(bound?.messageClass == .successResponse)
        // Bytes the peer sent before the ConnectionBind were held for it (§5.4: "This includes
        // data that was received after the associated Connect ... and before this ConnectionBind").
        let early: [UInt8] = Array("sent before the bind".utf8)
        _ = peer.connection.send(early)
        #expect(data.receiveRaw(count: early.count, timeoutMilliseconds: 3000) == early)
        let hello = Self.pattern(4096, seed: 3)
        #expect(data.send(hello))
        #expect(peer.connection.receiveRaw(count: hello.count, timeoutMilliseconds: 3000) == hello)

        #expect(control.refresh(lifetime: 0)?.errorCode == nil)
        #expect(data.waitForClose(timeoutMilliseconds: 5000), "the data connection outlived its allocation")
        #expect(peer.connection.waitForClose(timeoutMilliseconds: 5000), "the peer connection outlived its allocation")
        await server.expectMetric("relay_tcp_peer_connections_open", 0)
    }

    /// RFC 6062 on an IPv6 relayed address, asked for with REQUESTED-ADDRESS-FAMILY (RFC 8656
    /// §7.1) over an IPv4 control connection: a peer connecting to the relayed address
    /// (ConnectionAttempt) and Connect to an IPv6 peer from it, bytes both ways; an IPv4 peer is
    /// 443 ("Peer Address Family Mismatch", RFC 8656 §12.2's rule, which Connect follows here).
    @Test(.timeLimit(.minutes(2)), .enabled(if: IPv6Loopback.isAvailable, IPv6Loopback.missing))
    func tcpAllocationsWorkOnIPv6RelayedAddresses() async throws {
        let server = try await Server(["--bind-ip6", "::1", "--allow-peer", "::1/128"])
        let loopback6 = try #require(IPAddress("::1"))
        let control = try server.client()
        let allocated = try #require(control.request(.allocate) {
            $0.appendRequestedTransport(6)
            $0.appendAddressFamily(.requestedAddressFamily, .ipv6)
        })
        #expect(allocated.errorCode == nil, "Allocate TCP on IPv6: \(String(describing: allocated.errorCode))")
        let relayed = try #require(allocated.xorRelayedAddresses.first)
        #expect(relayed.ip == loopback6)
        #expect(control.createPermission(peer: TransportAddress(ip: loopback6, port: 1))?.errorCode == nil)

        let incoming = try TestStreamConnection(to: relayed)
        let (attemptID, announced) = try #require(Self.connectionAttempt(on: control), "no ConnectionAttempt")
        #expect(announced == incoming.localAddress)
        let (inbound, inboundBound) = try Self.bind(server, attemptID)
        #expect(inboundBound?.messageClass == .successResponse)
        let up = Self.pattern(10_000, seed: 6)
        #expect(incoming.send(up))
        #expect(inbound.receiveRaw(count: up.count, timeoutMilliseconds: 3000) == up)

        let listener = try TestTCPListener(ip: loopback6)
        let connected = try #require(control.request(.connect) { $0.appendXorAddress(.xorPeerAddress, listener.address) })
        #expect(connected.messageClass == .successResponse, "Connect: \(String(describing: connected.errorCode))")
        let connectID = try #require(try connected.bytes.withUnsafeBytes { try STUNMessage.parse($0).connectionID() })
        let peer = try #require(listener.accept(timeoutMilliseconds: 3000))
        #expect(peer.remote == relayed)
        let (outbound, outboundBound) = try Self.bind(server, connectID)
        #expect(outboundBound?.messageClass == .successResponse)
        let down = Self.pattern(10_000, seed: 7)
        #expect(peer.connection.send(down))
        #expect(outbound.receiveRaw(count: down.count, timeoutMilliseconds: 3000) == down)

        let v4 = try #require(control.request(.connect) {
            $0.appendXorAddress(.xorPeerAddress, TransportAddress(ip: .v4(.loopback), port: listener.address.port))
        })
        #expect(v4.errorCode == 443, "Connect to an IPv4 peer from an IPv6 allocation: \(String(describing: v4.errorCode))")
        await server.expectMetric("relay_tcp_peer_connections_open", 2)
    }

    /// The peer policy on Connect (coturn's CVE-2026-73212 was an SSRF on this path): the relay's
    /// own listener, port 0 and a private address are 403; a port nobody listens on is 447.
    @Test(.timeLimit(.minutes(2))) func connectObeysThePeerPolicy() async throws {
        let server = try await Server()
        let (control, _) = try Self.tcpAllocation(server)
        for forbidden in [server.address, TransportAddress(ip: .v4(.loopback), port: 0), TransportAddress("10.1.2.3:80")!,
                          TransportAddress("169.254.169.254:80")!] {
            let refused = try #require(control.request(.connect) { $0.appendXorAddress(.xorPeerAddress, forbidden) })
            #expect(refused.errorCode == 403, "Connect to \(forbidden): \(String(describing: refused.errorCode))")
        }
        let closedPort = try ListenPortClaims.freePort()
        let nobody = try #require(control.request(.connect) {
            $0.appendXorAddress(.xorPeerAddress, TransportAddress(ip: .v4(.loopback), port: closedPort))
        })
        #expect(nobody.errorCode == 447, "Connect to a closed port: \(String(describing: nobody.errorCode))")
        await server.expectMetric("relay_tcp_connects_total{result=\"failed\"}", 1)
    }

    /// A client controls the CONNECTION-ID and what follows it: made-up ids (this worker's, the
    /// other worker's, a worker that does not exist, 0), each the first message of a new
    /// connection and followed in the same write by a Binding. Each ConnectionBind gets an error
    /// (the connection may move to the worker its id names first), and the Binding behind it is
    /// still answered: refused, the held bytes are framed again, on whichever worker holds it.
    @Test(.timeLimit(.minutes(2))) func madeUpConnectionIDsAreRefusedAndTheConnectionGoesOn() async throws {
        let server = try await Server(["--workers", "2"])
        let (control, _) = try Self.tcpAllocation(server)
        let auth = try LongTermAuth(username: "alice", realm: #require(control.realm), nonce: #require(control.nonce),
                                    key: #require(control.key))
        var random = SplitMix64(seed: 6062)
        for id: UInt32 in [0x0000_0001, 0x0100_0001, 0xFF00_0001, 0, 0x01FF_FFFF] {
            let connection = try TestStreamConnection(to: server.address)
            let bindID = TransactionID(using: &random), bindingID = TransactionID(using: &random)
            let bind = try #require(TURNRequest.bytes(.connectionBind, transactionID: bindID, auth: auth, fingerprint: true) {
                $0.appendUInt32(.connectionID, id)
            })
            let binding = try #require(TURNRequest.bytes(.binding, transactionID: bindingID))
            #expect(connection.send(bind + binding))
            let refused = connection.receive(timeoutMilliseconds: 3000).flatMap { TestTURNClient.parseResponse($0, id: bindID) }
            #expect(refused?.messageClass == .errorResponse, "CONNECTION-ID \(id): \(String(describing: refused?.errorCode))")
            let answered = connection.receive(timeoutMilliseconds: 3000).flatMap { TestTURNClient.parseResponse($0, id: bindingID) }
            #expect(answered?.messageClass == .successResponse, "the Binding after CONNECTION-ID \(id) was not answered")
            #expect(server.binds(over: connection), "the connection stopped working after CONNECTION-ID \(id)")
        }
        await server.expectMetric("relay_tcp_connections_bound_total", 0)
        #expect(control.refresh(lifetime: 600)?.errorCode == nil, "the control connection was disturbed")
    }

    @Test(.timeLimit(.minutes(2))) func noTCPRelayRefusesTCPAllocations() async throws {
        let server = try await Server(["--no-tcp-relay"])
        let control = try server.client()
        #expect(control.request(.allocate) { $0.appendRequestedTransport(6) }?.errorCode == 442)
    }

    /// With two workers, a data connection lands on either; one that reaches the worker not
    /// holding its peer connection moves there, and every bind succeeds.
    @Test(.timeLimit(.minutes(2))) func dataConnectionsBindWhicheverWorkerAcceptedThem() async throws {
        let server = try await Server(["--workers", "2"])
        let (control, relayed) = try Self.tcpAllocation(server)
        var moved = 0.0
        for attempt in 0..<20 where moved < 1 {
            let peer = try TestStreamConnection(to: relayed)
            let (connectionID, _) = try #require(Self.connectionAttempt(on: control), "no ConnectionAttempt (attempt \(attempt))")
            let (data, bound) = try Self.bind(server, connectionID)
            #expect(bound?.messageClass == .successResponse, "attempt \(attempt): \(String(describing: bound?.errorCode))")
            let bytes = Self.pattern(1000, seed: UInt64(attempt))
            #expect(peer.send(bytes))
            #expect(data.receiveRaw(count: bytes.count, timeoutMilliseconds: 3000) == bytes, "attempt \(attempt)")
            _ = await eventually(.seconds(2)) { server.metric("relay_stream_connections_moved_total{direction=\"out\"}") >= 1 }
            moved = server.metric("relay_stream_connections_moved_total{direction=\"out\"}")
        }
        #expect(moved >= 1, "20 data connections all reached the peer's worker (p = 2^-20), or none moved")
        // Each worker publishes its own counters: the adopting worker's "in" can come a
        // publication later than the posting worker's "out" (seen under ThreadSanitizer).
        await server.expectMetric("relay_stream_connections_moved_total{direction=\"in\"}", moved)
    }
}

/// A TCP listener on loopback for a test's peer, with a bounded accept.
final class TestTCPListener {
    let fd: Int32
    let address: TransportAddress

    struct Accepted {
        let connection: TestStreamConnection
        let remote: TransportAddress
    }

    init(ip: IPAddress = .v4(.loopback)) throws {
        let family = if case .v4 = ip { AF_INET } else { AF_INET6 }
        fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let address = cu_addr(TransportAddress(ip: ip, port: 0))
        let fd = fd
        guard fd >= 0, address.withSockaddr({ Glibc.bind(fd, $0, $1) }) == 0, listen(fd, 16) == 0 else {
            throw RelayIOError.configuration("test listener: \(String(cString: strerror(errno)))")
        }
        var local = cu_addr()
        _ = cu_local_address(fd, &local)
        self.address = try #require(local.transportAddress)
    }

    deinit { Glibc.close(fd) }

    func accept(timeoutMilliseconds: Int32) -> Accepted? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return nil }
        let client = Glibc.accept(fd, nil, nil)
        guard client >= 0 else { return nil }
        var remote = cu_addr()
        guard cu_peer_address(client, &remote) == 0, let address = remote.transportAddress else {
            Glibc.close(client)
            return nil
        }
        return Accepted(connection: TestStreamConnection(adopting: client), remote: address)
    }
}
