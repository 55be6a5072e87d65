import Glibc
import RelayCore
import RelayIO
import RelayOperations
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

private let loopbackAnyPort = TransportAddress(ip: .v4(.loopback), port: 0)

@Suite(.dedicatedThread) struct ServerMetricsTests {
    static let client = TransportAddress("198.51.100.7:40000")!
    static let client2 = TransportAddress("198.51.100.8:40001")!
    static let client3 = TransportAddress("198.51.100.9:40002")!

    /// One worker's board behind a `/metrics` endpoint on loopback, and a driver feeding its server.
    static func scrapedServer() throws -> (OperationsServer, CoreDriver) {
        let driver = CoreDriver()
        let metrics = RelayMetrics()
        // The driver runs on the test's thread; each scrape (on the HTTP thread) reads the report
        // the test published last, as a worker's would.
        let published = SnapshotSlots(count: 1)
        driver.afterEachDatagram = { [unowned driver] in published.publish(0, driver.snapshot()) }
        published.publish(0, driver.snapshot())
        metrics.addSource { published.snapshots() }
        let http = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: nil, metrics: metrics, readiness: Readiness())
        return (http, driver)
    }

    /// A real `Server` in an `InstrumentedServer`, scraped over HTTP: the exported counters move
    /// exactly as the traffic fed to it says they should.
    @Test func scrapeFollowsARealServer() throws {
        let (http, driver) = try Self.scrapedServer()
        defer { http.stop() }

        let before = try scrapeMetrics(try #require(http.metricsAddress))
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

        let scrape = try scrapeMetrics(try #require(http.metricsAddress))
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

    /// `relay_responses_by_method_total{method, class}`: every response the server sends counts
    /// once under its request's method, scraped over HTTP and parsed.
    @Test func responsesByMethodAndClass() throws {
        let (http, driver) = try Self.scrapedServer()
        defer { http.stop() }
        func send(_ bytes: [UInt8]) -> (success: Bool, code: Int) {
            let sent = driver.receive(bytes, from: Self.client)
            #expect(sent.count == 1)
            guard let last = sent.last else { return (false, -1) }
            let outcome = CoreDriver.outcome(last)
            return (outcome.success, outcome.code)
        }

        // Binding ×2: successes.
        #expect(send(CoreDriver.message(.binding, id: 1)).success)
        #expect(send(CoreDriver.message(.binding, id: 2)).success)
        // Allocate: the 401 challenge, then a success.
        let challenge = driver.receive(CoreDriver.message(.allocate, id: 3) { $0.appendRequestedTransport(17) }, from: Self.client)
        let nonce = try #require(challenge.first.flatMap { CoreDriver.outcome($0).nonce })
        let auth = (user: "alice", password: "alice-pw", nonce: nonce)
        #expect(send(CoreDriver.message(.allocate, id: 4, auth: auth) { $0.appendRequestedTransport(17) }).success)
        // A second Allocate on the same 5-tuple (new transaction): 437 (RFC 8656 §7.2).
        #expect(send(CoreDriver.message(.allocate, id: 5, auth: auth) { $0.appendRequestedTransport(17) }).code == 437)
        // Refresh: success.
        #expect(send(CoreDriver.message(.refresh, id: 6, auth: auth) { $0.appendUInt32(.lifetime, 600) }).success)
        // CreatePermission for the relay's own address: whatever the peer policy says, counted once.
        let permission = send(CoreDriver.message(.createPermission, id: 7, auth: auth) {
            $0.appendXorAddress(.xorPeerAddress, TransportAddress(ip: .v4(CoreDriver.relayAddress), port: 9))
        })
        // ChannelBind with a number outside 0x4000–0x4FFF: 400 (RFC 8656 §11.1).
        #expect(send(CoreDriver.message(.channelBind, id: 8, auth: auth) {
            $0.appendChannelNumber(0x3FFF)
            $0.appendXorAddress(.xorPeerAddress, TransportAddress(ip: .v4(CoreDriver.relayAddress), port: 9))
        }).code == 400)
        // A method the server does not know: 400.
        #expect(send(CoreDriver.message(STUNMethod(rawValue: 0x0FF), id: 9)).code == 400)

        let scrape = try scrapeMetrics(try #require(http.metricsAddress))
        func count(_ method: String, _ cls: String) -> Double? {
            scrape["relay_responses_by_method_total{method=\"\(method)\",class=\"\(cls)\"}"]
        }
        #expect(scrape.types["relay_responses_by_method_total"] == "counter")
        #expect(count("binding", "success") == 2)
        #expect(count("binding", "error") == 0)
        #expect(count("allocate", "success") == 1)
        #expect(count("allocate", "error") == 2)
        #expect(count("refresh", "success") == 1)
        #expect(count("refresh", "error") == 0)
        let permissionSuccesses: Double = permission.success ? 1 : 0
        #expect(count("create_permission", "success") == permissionSuccesses)
        #expect(count("create_permission", "error") == 1 - permissionSuccesses)
        #expect(count("channel_bind", "success") == 0)
        #expect(count("channel_bind", "error") == 1)
        #expect(count("other", "success") == 0)
        #expect(count("other", "error") == 1)
        // The same responses by class and code.
        let successes: Double = permission.success ? 5 : 4
        #expect(scrape[#"relay_responses_total{class="success",code="none"}"#] == successes)
        #expect(scrape[#"relay_responses_total{class="error",code="400"}"#] == 2)
        #expect(scrape[#"relay_responses_total{class="error",code="437"}"#] == 1)
    }

    /// SIGHUP's path without the signal: a posted reload reaches the worker's server on the worker's
    /// next loop; the allocation made under the old credentials stays, the new ones take effect.
    @Test func reloadKeepsAllocationsAndSwitchesCredentials() throws {
        let mailbox = ReloadMailbox<TURNReload>()
        var receiver = mailbox.receiver(worker: 0)
        let driver = CoreDriver()
        #expect(driver.allocate(from: Self.client, user: "alice", password: "alice-pw", id: 1).success)
        #expect(driver.allocate(from: Self.client2, user: "bob", password: "bob-pw", id: 3).code == 401)

        let generation = mailbox.post(credentials: CredentialStore(staticUsers: ["bob": "bob-pw"]), peerPolicy: PeerPolicy())
        #expect(mailbox.appliedGenerations()[0] == nil)
        // What the worker does at the top of its loop.
        let polled = receiver.poll()
        let update = try #require(polled)
        driver.processor.apply(update.value, now: driver.now, into: driver.out)
        receiver.acknowledge(update)
        let again = receiver.poll()
        #expect(again == nil)
        #expect(mailbox.appliedGenerations()[0] == generation)

        #expect(driver.processor.server.allocationCount == 1)
        #expect(driver.allocate(from: Self.client2, user: "bob", password: "bob-pw", id: 5).success)
        #expect(driver.allocate(from: Self.client3, user: "alice", password: "alice-pw", id: 7).code == 401)
        #expect(driver.processor.server.allocationCount == 2)
        #expect(driver.snapshot()[series("relay_allocations_active", ["family": "ipv4"])] == 2)
    }

    /// The whole path on real threads: io_uring worker → its slot → HTTP scrape, and a reload
    /// posted from this thread applied on the worker's.
    @Test func ioUringWorkersPublishAndApplyReloads() throws {
        let operations = RelayOperationsContext(statisticsIntervalNanoseconds: 100_000_000)
        var workerConfiguration = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: 0)
        workerConfiguration.statisticsIntervalNanoseconds = 100_000_000
        var configuration = ServerConfiguration(relayAddressIPv4: .loopback, relayAddressIPv6: nil)
        configuration.credentials = CredentialStore(staticUsers: ["alice": "alice-pw"])
        let server = configuration
        let runtime = try RelayRuntime.start(
            workers: 1, configuration: workerConfiguration, portRange: 50200...50220, reloads: operations.reloads
        ) { context, slice in
            var own = server
            own.portRange = slice
            return operations.makeProcessor(worker: context.index,
                                            server: Server(configuration: own, random: SplitMix64(seed: UInt64(context.index) &+ 0x5EED),
                                                           now: context.clock.now()))
        }
        defer {
            runtime.stop()
            runtime.join()
        }
        operations.attach(runtime)
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
            let scrape = try scrapeMetrics(try #require(http.metricsAddress))
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
