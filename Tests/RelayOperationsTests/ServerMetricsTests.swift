import Glibc
import RelayCore
import RelayIO
import RelayOperations
import STUN
import Testing
import TestSupport

private let loopbackAnyPort = TransportAddress(ip: .v4(.loopback), port: 0)

@Suite(.dedicatedThread) struct ServerMetricsTests {
    static let client = TransportAddress("198.51.100.7:40000")!
    static let client2 = TransportAddress("198.51.100.8:40001")!
    static let client3 = TransportAddress("198.51.100.9:40002")!

    /// A real `Server` in an `InstrumentedServer`, scraped over HTTP: the exported counters move
    /// exactly as the traffic fed to it says they should.
    @Test func scrapeFollowsARealServer() throws {
        let board = MetricsBoard(workers: 1)
        let metrics = RelayMetrics()
        metrics.addSource(board)
        let http = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: nil, metrics: metrics, readiness: Readiness())
        defer { http.stop() }
        let driver = CoreDriver(slot: board.slots[0])

        let before = try scrapeMetrics(http.metricsAddress)
        #expect(before[#"relay_responses_total{class="success",code="none"}"#] == 0)

        // Three Binding requests: three successes.
        for id in 1...3 {
            let sent = driver.receive(CoreDriver.message(.binding, id: UInt8(id)), from: Self.client)
            #expect(sent.count == 1 && CoreDriver.outcome(sent[0]).success)
        }
        // RFC 8656 §12 Table 3: first byte 0x80 is reserved and dropped.
        driver.receive([0x80, 1, 2, 3, 4, 5, 6, 7], from: Self.client)
        // ChannelData from a client without an allocation.
        driver.receive([0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4], from: Self.client2)
        // Allocate: 401 (a nonce challenge), then success with alice's credentials.
        let allocation = driver.allocate(from: Self.client, user: "alice", password: "alice-pw", id: 10)
        #expect(allocation.success)
        // Wrong password: 401 again (RFC 8489 §9.2.4: integrity check fails → 401).
        let wrong = driver.allocate(from: Self.client3, user: "alice", password: "nope", id: 20)
        #expect(!wrong.success && wrong.code == 401)

        let scrape = try scrapeMetrics(http.metricsAddress)
        #expect(scrape[#"relay_responses_total{class="success",code="none"}"#] == 4)
        #expect(scrape[#"relay_responses_total{class="error",code="401"}"#] == 3)
        #expect(scrape[#"relay_nonce_challenges_total{code="401"}"#] == 3)
        #expect(scrape[#"relay_drops_total{reason="unknown_first_byte"}"#] == 1)
        #expect(scrape[#"relay_drops_total{reason="no_allocation"}"#] == 1)
        #expect(scrape[#"relay_allocations_created_total"#] == 1)
        #expect(scrape[#"relay_allocations_active{family="ipv4"}"#] == 1)
        #expect(scrape[#"relay_allocations_active{family="ipv6"}"#] == 0)
        // Every datagram fed counts once in the size histogram and once in an inbound batch of 1.
        #expect(scrape["relay_packet_size_bytes_count"] == 9)
        #expect(scrape[#"relay_batch_inbound_datagrams_bucket{le="1"}"#] == 9)
        // The two authenticated Allocates (USERNAME, REALM, NONCE, MESSAGE-INTEGRITY) exceed 100 bytes.
        #expect(scrape[#"relay_packet_size_bytes_bucket{le="100"}"#] == 7)
        #expect(scrape[#"relay_packet_size_bytes_bucket{le="200"}"#] == 9)
        // Responses per processed batch: Bindings and the three 401s one each; the garbage and
        // ChannelData none; the authenticated Allocate none (its success follows the socket opening).
        #expect(scrape[#"relay_batch_outbound_datagrams_bucket{le="1"}"#] == 9)
        #expect(scrape["relay_batch_outbound_datagrams_sum"] == 6)
    }

    /// SIGHUP's path without the signal: a posted reload reaches the worker's server on the worker's
    /// next loop; the allocation made under the old credentials stays, the new ones take effect.
    @Test func reloadKeepsAllocationsAndSwitchesCredentials() throws {
        let board = MetricsBoard(workers: 1)
        let mailbox = ReloadMailbox()
        let driver = CoreDriver(slot: board.slots[0], reloads: mailbox.receiver(worker: 0))
        #expect(driver.allocate(from: Self.client, user: "alice", password: "alice-pw", id: 1).success)
        #expect(driver.allocate(from: Self.client2, user: "bob", password: "bob-pw", id: 3).code == 401)

        let generation = mailbox.post(credentials: CredentialStore(staticUsers: ["bob": "bob-pw"]), peerPolicy: PeerPolicy())
        #expect(mailbox.appliedGenerations()[0] == nil)
        _ = driver.processor.nextTimeout()  // what the worker calls every loop
        #expect(mailbox.appliedGenerations()[0] == generation)

        #expect(driver.processor.server.allocationCount == 1)
        #expect(driver.allocate(from: Self.client2, user: "bob", password: "bob-pw", id: 5).success)
        #expect(driver.allocate(from: Self.client3, user: "alice", password: "alice-pw", id: 7).code == 401)
        #expect(driver.processor.server.allocationCount == 2)
        #expect(driver.processor.snapshot()[.allocationsActiveIPv4] == 2)
    }

    /// The whole path on real threads: io_uring worker → its slot → HTTP scrape, and a reload
    /// posted from this thread applied on the worker's.
    @Test func ioUringWorkersPublishAndApplyReloads() throws {
        let operations = RelayOperationsContext(workers: 1, publishIntervalNanoseconds: 10_000_000,
                                                heartbeatNanoseconds: 100_000_000)
        var configuration = ServerConfiguration(relayAddressIPv4: .loopback, relayAddressIPv6: nil)
        configuration.credentials = CredentialStore(staticUsers: ["alice": "alice-pw"])
        let server = configuration
        let runtime = try RelayRuntime.start(
            workers: 1, configuration: WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: 0),
            portRange: 50200...50220
        ) { context, slice in
            var own = server
            own.portRange = slice
            return operations.makeProcessor(worker: context.index,
                                            server: Server(configuration: own, random: SystemRandomNumberGenerator(),
                                                           now: context.clock.now()))
        }
        defer {
            runtime.stop()
            runtime.join()
        }
        let http = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: loopbackAnyPort,
                                        metrics: operations.metrics, readiness: operations.readiness)
        defer { http.stop() }
        let listener = try #require(runtime.workers.first?.listenerAddresses.first)

        // Ready once the worker has published (within its 100 ms heartbeat).
        #expect(try poll(seconds: 3) { try HTTPTestClient.get(http.health.boundAddress, "/readyz").status == 200 })

        let client = try BlockingUDPSocket(bindTo: loopbackAnyPort)
        for id in 1...5 {
            client.send(CoreDriver.message(.binding, id: UInt8(id)), to: listener)
            let reply = try #require(client.receive(timeoutMilliseconds: 2000))
            #expect(CoreDriver.outcome(reply.bytes).success)
        }
        #expect(try poll(seconds: 3) {
            let scrape = try scrapeMetrics(http.metricsAddress)
            return scrape[#"relay_responses_total{class="success",code="none"}"#] == 5
                && scrape["relay_io_datagrams_received_total"] == 5
                && scrape["relay_packet_size_bytes_count"] == 5
        })

        let generation = operations.reloads.post(credentials: CredentialStore(staticUsers: ["bob": "x"]), peerPolicy: PeerPolicy())
        #expect(try poll(seconds: 3) { operations.reloads.appliedGenerations()[0] == generation })

        operations.markDraining()
        let draining = try HTTPTestClient.get(http.health.boundAddress, "/readyz")
        #expect(draining.status == 503)
        #expect(draining.body.contains("not draining"))
    }
}

/// Retries `condition` every 20 ms until it holds or `seconds` pass.
func poll(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
    while true {
        if try condition() { return true }
        if MonotonicClock.nanoseconds() > deadline { return false }
        usleep(20_000)
    }
}
