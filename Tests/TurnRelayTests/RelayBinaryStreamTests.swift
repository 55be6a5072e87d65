import Foundation
import TestSupport
import Glibc
import RelayCore
import RelayIO
import STUN
import TURNTestClient
import Testing
@testable import OperationsTestSupport

/// TURN over TCP against the `turn-relay` binary (RFC 8656 §3.1): relaying between a TCP client
/// and a UDP peer, the allocation ending with its connection, and every bound on connections
/// (hostile input, slow and silent clients, limits), each with its outcome on `/metrics`. One
/// worker, so per-worker limits are the process's.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryStreamTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    final class Server {
        let relay: Relay
        let port: UInt16
        let tlsPort: UInt16
        var tlsAddress: TransportAddress { TransportAddress(ip: .v4(.loopback), port: tlsPort) }
        let metrics: TransportAddress
        var address: TransportAddress { TransportAddress(ip: .v4(.loopback), port: port) }

        /// With `certificate`, TURN over TLS on `tlsPort` too.
        init(_ extra: [String] = [], certificate: (certificate: String, key: String)? = nil) async throws {
            port = try ListenPortClaims.freePort()
            var tls = try ListenPortClaims.freePort()
            while tls == port { tls = try ListenPortClaims.freePort() }
            tlsPort = tls
            let tlsArguments = certificate.map { ["--tls-listen-port", "\(tls)", "--tls-cert", $0.certificate, "--tls-key", $0.key] } ?? []
            relay = try Relay(port: port, arguments: [
                "serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
                "--min-port", "50500", "--max-port", "50540", "--workers", "1", "--health-check-addr", "none",
                "--metrics-addr", "127.0.0.1:0", "--drain-seconds", "0", "--user", "alice:alice-pw",
                "--user", "bob:bob-pw", "--allow-peer", "127.0.0.0/8", "--log-format", "json"] + tlsArguments + extra,
                environment: [:])
            let relay = relay
            #expect(await eventually(.seconds(20)) { relay.log.contains("turn-relay listening") }, "\(relay.log)")
            var found: TransportAddress?
            _ = await eventually(.seconds(10)) {
                found = RelayBinaryFirezoneTests.jsonField("metrics", in: relay.log).flatMap(TransportAddress.init)
                return found != nil
            }
            metrics = try #require(found, "no metrics address in the log:\n\(relay.log)")
        }

        func metric(_ key: String) -> Double {
            (try? scrapeMetrics(metrics))?[key] ?? -1
        }

        /// Waits for `key` to reach `value` (metrics are published about once a second).
        func expectMetric(_ key: String, _ value: Double, within seconds: Int = 5,
                          sourceLocation: SourceLocation = #_sourceLocation) async {
            let ok = await eventually(.seconds(seconds)) { self.metric(key) == value }
            #expect(ok, "\(key) = \(metric(key)), expected \(value)", sourceLocation: sourceLocation)
        }

        func client(_ user: String = "alice") throws -> TestStreamTURNClient {
            try TestStreamTURNClient(server: address, username: user, password: "\(user)-pw")
        }

        /// A Binding request over `connection`, answered?
        func binds(over connection: any TestMessageStream) -> Bool {
            let id = TransactionID([UInt8](repeating: 0x42, count: 11) + [UInt8.random(in: 0...255)])
            var request: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42]
            request += id.bytes
            guard connection.send(request), let answer = connection.receive(timeoutMilliseconds: 2000) else { return false }
            return TestTURNClient.parseResponse(answer, id: id)?.messageClass == .successResponse
        }
    }

    // MARK: Relaying

    @Test(.timeLimit(.minutes(2))) func channelDataBetweenATCPClientAndAUDPPeerIsPaddedOnTheStream() async throws {
        let server = try await Server()
        let peer = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        let alice = try server.client()
        let allocated = try #require(alice.allocate())
        #expect(allocated.errorCode == nil)
        let relayed = try #require(allocated.xorRelayedAddresses.first)
        // RFC 8489 §14.2: XOR-MAPPED-ADDRESS is the client's address as the server sees it, here
        // the TCP connection's source.
        #expect(allocated.xorMappedAddress == alice.connection.localAddress)
        #expect(alice.channelBind(0x4001, peer: peer.localAddress)?.errorCode == nil)
        // Lengths 0 to 5: every padding length (RFC 8656 §12.5) both ways.
        for length in 0...5 {
            let payload = (0..<length).map { UInt8($0 + 1) }
            #expect(alice.sendChannelData(0x4001, payload: payload))
            let (got, from) = try #require(peer.receive(timeoutMilliseconds: 2000), "length \(length) not relayed")
            #expect(got == payload && from == relayed)
            peer.send(payload.reversed(), to: relayed)
            #expect(alice.receive() == .channelData(channel: 0x4001, payload: payload.reversed()), "length \(length)")
        }
        // And a Data indication without a channel (CreatePermission for another peer).
        let other = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        #expect(alice.createPermission(peer: other.localAddress)?.errorCode == nil)
        other.send([7, 7, 7], to: relayed)
        #expect(alice.receive() == .dataIndication(peer: other.localAddress, payload: [7, 7, 7]))
        // Allocate twice (401, then with credentials), ChannelBind, six ChannelData, CreatePermission.
        await server.expectMetric("relay_stream_messages_received_total{transport=\"tcp\"}", 10)
    }

    /// ChannelData over a stream may carry up to 65,535 bytes (RFC 8656 §12.4's 16-bit length),
    /// more than a transmit buffer: such a message still reaches the UDP peer whole, and a large
    /// datagram from the peer reaches the client whole.
    @Test(.timeLimit(.minutes(2))) func largeChannelDataCrossesBetweenTheStreamAndUDP() async throws {
        let server = try await Server()
        let peer = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        let alice = try server.client()
        let relayed = try #require(alice.allocate()?.xorRelayedAddresses.first)
        #expect(alice.channelBind(0x4001, peer: peer.localAddress)?.errorCode == nil)
        for length in [4097, 8000, 30_001] {
            let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
            #expect(alice.sendChannelData(0x4001, payload: payload))
            let (got, from) = try #require(peer.receive(timeoutMilliseconds: 2000), "\(length) bytes not relayed")
            let intact = got == payload
            #expect(intact && from == relayed, "\(length) bytes: got \(got.count)")
            peer.send(Array(payload.reversed()), to: relayed)
            let back = alice.receive(timeoutMilliseconds: 2000)
            let backIntact = back == .channelData(channel: 0x4001, payload: payload.reversed())
            #expect(backIntact, "\(length) bytes back to the client")
        }
        #expect(server.metric("relay_drops_total{reason=\"oversize\"}") == 0)
    }

    /// An allocation made over a connection belongs to the connection's 5-tuple; when the
    /// connection closes nothing can reach the client any more, so the allocation ends with it.
    @Test(.timeLimit(.minutes(2))) func anAllocationEndsWithItsConnection() async throws {
        let server = try await Server()
        var alice: TestStreamTURNClient? = try server.client()
        #expect(alice?.allocate()?.errorCode == nil)
        let bob = try server.client("bob")
        #expect(bob.allocate()?.errorCode == nil)
        await server.expectMetric("relay_allocations_active{family=\"ipv4\"}", 2)
        alice = nil  // closes the socket
        await server.expectMetric("relay_allocations_active{family=\"ipv4\"}", 1)
        await server.expectMetric("relay_allocations_ended_total{reason=\"connection_closed\"}", 1)
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tcp\",reason=\"client_closed\"}", 1)
        // Bob's is untouched.
        #expect(bob.refresh(lifetime: 600)?.errorCode == nil)
        _ = alice
    }

    // MARK: Hostile input

    @Test(.timeLimit(.minutes(2))) func garbageBeforeTheFirstMessageClosesThatConnectionOnly() async throws {
        let server = try await Server()
        let good = try TestStreamConnection(to: server.address)
        let bad = try TestStreamConnection(to: server.address)
        // A TLS ClientHello's first bytes on the plain TCP port.
        bad.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])
        #expect(bad.waitForClose(timeoutMilliseconds: 3000))
        #expect(server.binds(over: good))
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tcp\",reason=\"framing\"}", 1)
    }

    /// coturn's CVE-2026-68552 was a 16-bit truncation of a length that desynchronised the
    /// stream. Here a STUN length that is not a multiple of 4 closes the connection (RFC 8489 §5:
    /// its "last 2 bits ... are always zero"), and a declared length larger than any buffer is read
    /// past, not buffered: the next message on the same connection is answered.
    @Test(.timeLimit(.minutes(2))) func lengthsThatLieAreNeverTrusted() async throws {
        let server = try await Server()
        let huge = try TestStreamConnection(to: server.address)
        var header: [UInt8] = [0x00, 0x01, 0xFF, 0xFC, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 1, count: 12)
        #expect(huge.send(header + [UInt8](repeating: 0x5A, count: 0xFFFC)))
        #expect(server.binds(over: huge), "the message after an oversize one was not answered")
        await server.expectMetric("relay_drops_total{reason=\"stream_oversize_message\"}", 1)

        let odd = try TestStreamConnection(to: server.address)
        header[2] = 0x00
        header[3] = 0x06
        odd.send(header + [0, 0, 0, 0, 0, 0])
        #expect(odd.waitForClose(timeoutMilliseconds: 3000))
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tcp\",reason=\"framing\"}", 1)
        #expect(server.binds(over: huge))
    }

    @Test(.timeLimit(.minutes(2))) func aMessageThatNeverCompletesIsClosedAfterTheMessageTimeout() async throws {
        let server = try await Server(["--stream-message-timeout", "1"])
        let slow = try TestStreamConnection(to: server.address)
        slow.send([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42, 9, 9])
        let quiet = try TestStreamConnection(to: server.address)
        #expect(slow.waitForClose(timeoutMilliseconds: 5000), "a slowloris connection was kept")
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tcp\",reason=\"message_timeout\"}", 1)
        // A connection with nothing begun is not a slowloris.
        #expect(server.binds(over: quiet))
    }

    @Test(.timeLimit(.minutes(2))) func aConnectionWithoutMessagesIsClosedAfterTheIdleTimeout() async throws {
        let server = try await Server(["--stream-idle-timeout", "1"])
        let idle = try TestStreamConnection(to: server.address)
        #expect(idle.waitForClose(timeoutMilliseconds: 5000))
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tcp\",reason=\"idle_timeout\"}", 1)
    }

    // MARK: Limits

    @Test(.timeLimit(.minutes(2))) func connectionsPerSourceAndInTotalAreBounded() async throws {
        let server = try await Server(["--max-connections-per-source", "3", "--max-connections", "5"])
        let first = try (0..<3).map { _ in try TestStreamConnection(to: server.address) }
        for c in first { #expect(server.binds(over: c)) }
        let fourth = try TestStreamConnection(to: server.address)
        #expect(fourth.waitForClose(timeoutMilliseconds: 3000), "a fourth connection from 127.0.0.1 was kept")
        await server.expectMetric("relay_stream_connections_rejected_total{reason=\"per_source_limit\"}", 1)
        // Another source address (127.0.0.0/8 is all loopback) still gets in, up to the total.
        var others: [TestStreamConnection] = []
        for octet in 2...4 {
            let c = try TestStreamConnection(to: server.address, from: TransportAddress(ip: .v4(IPv4Address(127, 0, 0, UInt8(octet))), port: 0))
            others.append(c)
        }
        #expect(server.binds(over: others[0]) && server.binds(over: others[1]))
        #expect(others[2].waitForClose(timeoutMilliseconds: 3000), "a sixth connection was kept")
        await server.expectMetric("relay_stream_connections_rejected_total{reason=\"total_limit\"}", 1)
        for c in first { #expect(server.binds(over: c), "a connection within the limits was disturbed") }
        await server.expectMetric("relay_stream_connections_open{transport=\"tcp\"}", 5)
    }

    /// The kernel spreads one address's connections over every worker's listener; the limit per
    /// source is counted across the workers, so two workers still keep exactly the limit.
    @Test(.timeLimit(.minutes(2))) func connectionsPerSourceAreCountedAcrossWorkers() async throws {
        let server = try await Server(["--workers", "2", "--max-connections-per-source", "3"])
        let connections = try (0..<8).map { _ in try TestStreamConnection(to: server.address) }
        let kept = connections.filter { server.binds(over: $0) }
        #expect(kept.count == 3, "\(kept.count) connections from one address kept with a limit of 3 on 2 workers")
        await server.expectMetric("relay_stream_connections_rejected_total{reason=\"per_source_limit\"}", 5)
        // Closing one makes room for one more, whichever worker takes it.
        kept[0].shutdownWrite()
        #expect(kept[0].waitForClose(timeoutMilliseconds: 3000))
        await server.expectMetric("relay_stream_connections_open{transport=\"tcp\"}", 2)
        let again = try TestStreamConnection(to: server.address)
        #expect(server.binds(over: again), "no room after a connection from the address closed")
    }

    // MARK: TLS

    /// A certificate and key for CN `name` in a new temporary directory, made by `openssl req`.
    static func certificate(_ name: String) throws -> (certificate: String, key: String) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("stream-tests-\(getpid())-\(name)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificate = directory.appendingPathComponent("cert.pem").path
        let key = directory.appendingPathComponent("key.pem").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                             "-days", "1", "-subj", "/CN=\(name)", "-keyout", key, "-out", certificate]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return (certificate, key)
    }

    static let hasOpenSSL = FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")

    /// Relaying over TLS, then a certificate swapped on disk and SIGHUP: the connection already
    /// open keeps working on the old certificate, a new one gets the new certificate.
    @Test(.timeLimit(.minutes(2)), .enabled(if: hasOpenSSL, "openssl is not installed (scripts/install-deps installs it)"))
    func tlsRelaysAndACertificateReloadDropsNoConnection() async throws {
        let first = try Self.certificate("turn-a.test")
        let second = try Self.certificate("turn-b.test")
        // The files the relay reads are copies, replaced before the SIGHUP.
        let live = try Self.certificate("turn-live.test")
        for (from, to) in [(first.certificate, live.certificate), (first.key, live.key)] {
            try FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        let server = try await Server(certificate: live)
        let peer = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        let before = try TestTLSConnection(to: server.tlsAddress)
        #expect(before.serverCommonName == "turn-a.test")
        #expect(before.session.negotiatedALPN == "stun.turn")
        let alice = TestStreamTURNClient(over: before, username: "alice", password: "alice-pw")
        let relayed = try #require(alice.allocate()?.xorRelayedAddresses.first)
        #expect(alice.channelBind(0x4005, peer: peer.localAddress)?.errorCode == nil)
        alice.sendChannelData(0x4005, payload: [1, 2, 3])
        #expect(peer.receive(timeoutMilliseconds: 2000)?.0 == [1, 2, 3])

        for (from, to) in [(second.certificate, live.certificate), (second.key, live.key)] {
            try FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        kill(server.relay.process.processIdentifier, SIGHUP)
        let reloaded = await eventually(.seconds(5)) { server.relay.log.contains("reloaded the TLS certificate") }
        #expect(reloaded, "\(server.relay.log)")
        let after = try TestTLSConnection(to: server.tlsAddress)
        #expect(after.serverCommonName == "turn-b.test")
        // The old connection still relays, both ways.
        peer.send([9, 8, 7, 6, 5], to: relayed)
        #expect(alice.receive() == .channelData(channel: 0x4005, payload: [9, 8, 7, 6, 5]))
        #expect(alice.refresh(lifetime: 600)?.errorCode == nil)
        await server.expectMetric("relay_tls_handshakes_total{result=\"completed\"}", 2)
        await server.expectMetric("relay_stream_connections_open{transport=\"tls\"}", 2)
    }

    /// A connection that never finishes its handshake is closed after --tls-handshake-timeout;
    /// beyond --max-tls-handshakes in progress, new ones are closed at once.
    @Test(.timeLimit(.minutes(2)), .enabled(if: hasOpenSSL, "openssl is not installed (scripts/install-deps installs it)"))
    func handshakesAreBoundedInTimeAndNumber() async throws {
        let server = try await Server(["--tls-handshake-timeout", "2", "--max-tls-handshakes", "2"],
                                      certificate: try Self.certificate("turn-h.test"))
        let stalled = try (0..<2).map { _ in try TestStreamConnection(to: server.tlsAddress) }
        await server.expectMetric("relay_tls_handshakes_in_progress", 2)
        let third = try TestStreamConnection(to: server.tlsAddress)
        #expect(third.waitForClose(timeoutMilliseconds: 1500), "a third handshake was let in")
        await server.expectMetric("relay_stream_connections_rejected_total{reason=\"handshake_limit\"}", 1)
        for c in stalled { #expect(c.waitForClose(timeoutMilliseconds: 5000), "a stalled handshake was kept") }
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tls\",reason=\"handshake_timeout\"}", 2)
        await server.expectMetric("relay_tls_handshakes_in_progress", 0)
        // Room again: a real client gets through.
        #expect(try TestTLSConnection(to: server.tlsAddress).serverCommonName == "turn-h.test")
    }

    /// A TLS record begun and never finished (a slowloris inside TLS) is closed after the message
    /// timeout like a partial message; a TLS connection that is merely quiet after its handshake
    /// is not.
    @Test(.timeLimit(.minutes(2)), .enabled(if: hasOpenSSL, "openssl is not installed (scripts/install-deps installs it)"))
    func aTLSRecordThatNeverCompletesIsClosedAfterTheMessageTimeout() async throws {
        let server = try await Server(["--stream-message-timeout", "1"], certificate: try Self.certificate("turn-s.test"))
        let quiet = try TestTLSConnection(to: server.tlsAddress)
        let slow = try TestTLSConnection(to: server.tlsAddress)
        slow.tcp.sendRaw([0x17, 0x03, 0x03, 0x00, 0x40, 0x01])  // an application-data record, 6 of its 69 bytes
        #expect(slow.tcp.waitForClose(timeoutMilliseconds: 5000), "a trickled TLS record was kept")
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tls\",reason=\"message_timeout\"}", 1)
        #expect(server.binds(over: quiet), "a quiet TLS connection was closed")
    }

    /// A renegotiation attempt (a TLS 1.2 client's new ClientHello on an established connection)
    /// is refused and ends that connection; TLS 1.2 itself is served.
    @Test(.timeLimit(.minutes(2)), .enabled(if: hasOpenSSL, "openssl is not installed (scripts/install-deps installs it)"))
    func renegotiationIsRefused() async throws {
        let server = try await Server(certificate: try Self.certificate("turn-r.test"))
        let other = try TestTLSConnection(to: server.tlsAddress)
        let tls12 = try TestTLSConnection(to: server.tlsAddress, maximumVersion: .tls12)
        #expect(tls12.session.protocolVersion == "TLSv1.2")
        #expect(server.binds(over: tls12))
        #expect(tls12.startRenegotiation())
        #expect(tls12.tcp.waitForClose(timeoutMilliseconds: 3000), "a renegotiating connection was kept")
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tls\",reason=\"tls_error\"}", 1)
        #expect(server.binds(over: other))
    }

    /// Plain STUN, an old protocol version, or garbage on the TLS port: that connection fails
    /// (with an alert where TLS allows one), the others do not notice.
    @Test(.timeLimit(.minutes(2)), .enabled(if: hasOpenSSL, "openssl is not installed (scripts/install-deps installs it)"))
    func whatIsNotTLSOnTheTLSPortFailsAlone() async throws {
        let server = try await Server(certificate: try Self.certificate("turn-g.test"))
        let good = try TestTLSConnection(to: server.tlsAddress)
        let plain = try TestStreamConnection(to: server.tlsAddress)
        plain.send([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42] + [UInt8](repeating: 3, count: 12))
        #expect(plain.waitForClose(timeoutMilliseconds: 3000))
        let garbage = try TestStreamConnection(to: server.tlsAddress)
        garbage.send([0x16, 0x03, 0x03, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(garbage.waitForClose(timeoutMilliseconds: 3000))
        await server.expectMetric("relay_stream_connections_closed_total{transport=\"tls\",reason=\"tls_error\"}", 2)
        await server.expectMetric("relay_tls_handshakes_total{result=\"failed\"}", 2)
        #expect(server.binds(over: good))
    }

    /// A client that stops reading: what the relay has for it piles up to --stream-write-buffer,
    /// the rest is dropped and counted, and another client's relaying goes on meanwhile.
    @Test(.timeLimit(.minutes(2))) func aClientThatStopsReadingLosesItsOwnTrafficOnly() async throws {
        let server = try await Server(["--stream-write-buffer", "65536"])
        let peer = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        let silent = try server.client()
        // A small receive buffer, so the kernel's buffers fill soon too.
        var small: Int32 = 4096
        setsockopt(try #require(silent.fd), SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let silentRelay = try #require(silent.allocate()?.xorRelayedAddresses.first)
        #expect(silent.channelBind(0x4002, peer: peer.localAddress)?.errorCode == nil)
        let busy = try server.client("bob")
        let busyRelay = try #require(busy.allocate()?.xorRelayedAddresses.first)
        #expect(busy.channelBind(0x4003, peer: peer.localAddress)?.errorCode == nil)
        let payload = [UInt8](repeating: 0xAB, count: 1000)
        for _ in 0..<3000 { peer.send(payload, to: silentRelay) }
        let dropped = await eventually(.seconds(5)) { server.metric("relay_drops_total{reason=\"stream_write_buffer_full\"}") > 0 }
        #expect(dropped, "3 MB for a client that reads nothing were not dropped at the write buffer")
        for i in 0..<20 {
            peer.send([UInt8(i)], to: busyRelay)
            #expect(busy.receive() == .channelData(channel: 0x4003, payload: [UInt8(i)]))
        }
        #expect(server.metric("relay_stream_buffered_bytes") <= 65536 + 70_000)
    }
}
