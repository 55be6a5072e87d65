import Glibc
import RelayCore
import RelayIO
import RelayOperations
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

private let loopbackAnyPort = TransportAddress(ip: .v4(.loopback), port: 0)

/// The seam between the workers and operations on real threads: each worker's report (its own
/// counters and its server's) is the one way its counters reach /metrics and /readyz.
@Suite(.dedicatedThread) struct WorkerMetricsTests {
    static func startTwoWorkers(_ backend: IOBackendKind) throws -> (RelayRuntime, RelayOperationsContext) {
        var worker = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: 0)
        worker.ioBackend = backend
        worker.receiveBuffers = 64
        worker.ringEntries = 256
        worker.statisticsIntervalNanoseconds = 20_000_000
        // Small receive buffers, no GRO: a 3000-byte datagram is truncated and dropped.
        worker.enableGRO = false
        worker.receivePayloadCapacity = 2048
        var server = ServerConfiguration(relayAddressIPv4: .loopback, relayAddressIPv6: nil)
        server.portRange = 50300...50340
        let operations = RelayOperationsContext(statisticsIntervalNanoseconds: worker.statisticsIntervalNanoseconds)
        // Port 0: each worker binds its own port, so the test chooses which worker gets what.
        let runtime = try RelayRuntime.startTURN(workers: 2, configuration: worker, server: server,
                                                 reloads: operations.reloads)
        return (runtime, operations)
    }

    /// A counter in `WorkerStatistics` (datagrams received, the truncated drop) and a counter of
    /// the core (Binding successes) show up in /metrics summed over both workers.
    @Test(arguments: IOBackendKind.allCases) func workerCountersAreSummedOverWorkersInMetrics(backend: IOBackendKind) throws {
        let (runtime, operations) = try Self.startTwoWorkers(backend)
        defer {
            runtime.stop()
            runtime.join()
        }
        operations.attach(runtime)
        let http = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: nil,
                                        metrics: operations.metrics, readiness: operations.readiness)
        defer { http.stop() }
        let listeners = try runtime.workers.map { try #require($0.listenerAddresses.first) }
        #expect(listeners.count == 2 && listeners[0] != listeners[1])

        let client = try BlockingUDPSocket(bindTo: loopbackAnyPort)
        for (worker, count) in [(0, 3), (1, 4)] {
            for id in 0..<count {
                client.send(CoreDriver.message(.binding, id: UInt8(10 * worker + id)), to: listeners[worker])
                let reply = try #require(client.receive(timeoutMilliseconds: 2000))
                #expect(CoreDriver.outcome(reply.bytes).success)
            }
            client.send([UInt8](repeating: 0x01, count: 3000), to: listeners[worker])
        }

        var scrape = try scrapeMetrics(try #require(http.metricsAddress))
        let summed = try poll(seconds: 5) {
            scrape = try scrapeMetrics(try #require(http.metricsAddress))
            return scrape["relay_io_datagrams_received_total"] == 7
                && scrape[#"relay_drops_total{reason="truncated"}"#] == 2
                && scrape[#"relay_responses_total{class="success",code="none"}"#] == 7
        }
        #expect(summed, "io_datagrams_received \(String(describing: scrape["relay_io_datagrams_received_total"])), truncated \(String(describing: scrape[#"relay_drops_total{reason="truncated"}"#]))")
        // Each worker counted its own share; the exporter added them.
        #expect(runtime.reports.map(\.statistics.datagramsReceived) == [3, 4])
        #expect(runtime.reports.map(\.statistics.droppedTruncated) == [1, 1])
        #expect(runtime.reports.map { ($0.processor as? ServerReport)?.statistics.responses.success } == [3, 4])
    }

    /// /readyz's "workers" check reads the same reports: not ready before a runtime is attached,
    /// ready while its workers publish, not ready once they stopped.
    @Test func readinessFollowsTheWorkersReports() throws {
        let (runtime, operations) = try Self.startTwoWorkers(.ioUring)
        defer {
            runtime.stop()
            runtime.join()
        }
        #expect(!operations.board.allWorkersAlive(maxAge: operations.stalenessLimit))
        operations.attach(runtime)
        #expect(poll(seconds: 3) { operations.board.allWorkersAlive(maxAge: operations.stalenessLimit) })
        // Reports keep coming while idle (the heartbeat): a limit of a few intervals still holds.
        // Polled, not read once: a loaded or instrumented (ThreadSanitizer) run can stall a worker
        // past 10 intervals for a moment; a worker that stopped publishing never passes.
        usleep(200_000)
        #expect(poll(seconds: 3) { operations.board.allWorkersAlive(maxAge: 200_000_000) })
        // The same judgement as a gauge (relay_workers_not_publishing, read by an alert).
        #expect(operations.board.workersNotPublishing(maxAge: operations.stalenessLimit) == 0)
        #expect(operations.metrics.update()[try #require(RelaySeries("relay_workers_not_publishing"))] == 0)
        runtime.stop()
        runtime.join()
        let stopped = runtime.reports.map { $0.stopped }
        #expect(stopped == [true, true])
        #expect(!operations.board.allWorkersAlive(maxAge: operations.stalenessLimit))
        #expect(operations.board.workersNotPublishing(maxAge: operations.stalenessLimit) == 2)
        #expect(operations.metrics.update()[try #require(RelaySeries("relay_workers_not_publishing"))] == 2)
        // No portal in this process: configured 0.
        #expect(operations.metrics.update()[try #require(RelaySeries("relay_portal_configured"))] == 0)
    }
}
