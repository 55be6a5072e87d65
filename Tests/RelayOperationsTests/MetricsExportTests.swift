import CoreMetrics
import RelayCore
import RelayOperations
import STUN
import Testing
@testable import OperationsTestSupport

private let loopbackAnyPort = TransportAddress(ip: .v4(.loopback), port: 0)

@Suite struct MetricsExportTests {
    /// Two workers publish into their slots; a scrape over HTTP shows the sums, a later scrape the
    /// new sums, and counters never go backwards.
    @Test func scrapeSumsWorkerSnapshotsOverHTTP() throws {
        let board = SnapshotSlots(count: 2)
        let metrics = RelayMetrics()
        metrics.addSource { board.snapshots() }
        let server = try OperationsServer(healthAddress: loopbackAnyPort, metricsAddress: nil,
                                          metrics: metrics, readiness: Readiness())
        defer { server.stop() }

        var a = RelaySnapshot(), b = RelaySnapshot()
        a[series("relay_drops_total", ["reason": "no_permission"])] = 3
        b[series("relay_drops_total", ["reason": "no_permission"])] = 4
        a[series("relay_relayed_bytes_total", ["direction": "client_to_peer", "datapath": "userspace"])] = 1000
        a[series("relay_allocations_active", ["family": "ipv4"])] = 2
        b[series("relay_allocations_active", ["family": "ipv4"])] = 5
        b[series("relay_allocations_active", ["family": "ipv6"])] = 1
        a[series("relay_responses_total", ["class": "error", "code": "401"])] = 9
        a[series("relay_responses_total", ["class": "success", "code": "none"])] = 11
        var sizes = a[.packetSize]
        for length in [50, 100, 101, 1499, 9000] { sizes.record(length) }
        a[.packetSize] = sizes
        board.publish(0, a)
        board.publish(1, b)

        var scrape = try scrapeMetrics(try #require(server.metricsAddress))
        #expect(scrape.types["relay_drops_total"] == "counter")
        #expect(scrape.types["relay_allocations_active"] == "gauge")
        #expect(scrape.types["relay_packet_size_bytes"] == "histogram")
        #expect(scrape[#"relay_drops_total{reason="no_permission"}"#] == 7)
        #expect(scrape[#"relay_drops_total{reason="no_channel"}"#] == 0)
        #expect(scrape[#"relay_relayed_bytes_total{direction="client_to_peer",datapath="userspace"}"#] == 1000)
        #expect(scrape[#"relay_allocations_active{family="ipv4"}"#] == 7)
        #expect(scrape[#"relay_allocations_active{family="ipv6"}"#] == 1)
        #expect(scrape[#"relay_responses_total{class="error",code="401"}"#] == 9)
        #expect(scrape[#"relay_responses_total{class="success",code="none"}"#] == 11)
        #expect(scrape[#"relay_packet_size_bytes_bucket{le="100"}"#] == 2)
        #expect(scrape[#"relay_packet_size_bytes_bucket{le="200"}"#] == 3)
        #expect(scrape[#"relay_packet_size_bytes_bucket{le="1500"}"#] == 4)
        #expect(scrape[#"relay_packet_size_bytes_bucket{le="+Inf"}"#] == 5)
        #expect(scrape["relay_packet_size_bytes_count"] == 5)
        #expect(scrape["relay_packet_size_bytes_sum"] == 10750)  // 50 + 100 + 101 + 1499 + 9000

        a[series("relay_drops_total", ["reason": "no_permission"])] = 10
        a[series("relay_allocations_active", ["family": "ipv4"])] = 0
        board.publish(0, a)
        scrape = try scrapeMetrics(try #require(server.metricsAddress))
        #expect(scrape[#"relay_drops_total{reason="no_permission"}"#] == 14)
        #expect(scrape[#"relay_allocations_active{family="ipv4"}"#] == 5)
        // Scraping twice without new snapshots changes nothing.
        #expect(try scrapeMetrics(try #require(server.metricsAddress)).samples == scrape.samples)
    }

    /// Every series is in the exposition from the first scrape, each name with one TYPE.
    @Test func everySeriesIsExported() throws {
        let metrics = RelayMetrics()
        let text = metrics.prometheusText()
        let scrape = try Exposition(text)
        for series in RelaySeries.allCases {
            let (name, labels) = series.metric
            let key = labels.isEmpty ? name : name + "{" + labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
            #expect(scrape[key] == 0, "\(key)")
            #expect(scrape.types[name] != nil, "\(name)")
        }
        for histogram in RelayHistogram.allCases {
            #expect(scrape.types[histogram.name] == "histogram")
        }
    }

    @Test func bucketCountsUseInclusiveUpperBounds() {
        var counts = BucketCounts(upperBounds: [1, 2, 4])
        for value in [0, 1, 2, 3, 4, 5, Int.max] { counts.record(value) }
        #expect(counts.counts == [2, 1, 2, 2])
        #expect(counts.count == 7)
        var other = BucketCounts(upperBounds: [1, 2, 4])
        other.record(2)
        counts.add(other)
        #expect(counts.counts == [2, 2, 2, 2])
        // Different bounds are not mixed in.
        counts.add(BucketCounts(upperBounds: [10]))
        #expect(counts.count == 8)
    }

    /// The same totals reach another swift-metrics backend (OTLP in production) as counter
    /// increments that add up to the workers' totals.
    @Test func additionalFactoriesReceiveTheSameTotals() {
        let recorder = RecordingFactory()
        let board = SnapshotSlots(count: 1)
        let metrics = RelayMetrics(additionalFactories: [recorder])
        metrics.addSource { board.snapshots() }
        var s = RelaySnapshot()
        s[series("relay_relayed_packets_total", ["direction": "peer_to_client", "datapath": "userspace"])] = 40
        var sizes = s[.packetSize]
        sizes.record(120)
        sizes.record(120)
        s[.packetSize] = sizes
        board.publish(0, s)
        metrics.update()
        s[series("relay_relayed_packets_total", ["direction": "peer_to_client", "datapath": "userspace"])] = 45
        board.publish(0, s)
        metrics.update()
        #expect(recorder.total("relay_relayed_packets_total", ["direction": "peer_to_client", "datapath": "userspace"]) == 45)
        #expect(recorder.total("relay_packet_size_bytes_bucket", ["le": "200"]) == 2)
        #expect(recorder.total("relay_packet_size_bytes_bucket", ["le": "100"]) == 0)
        #expect(recorder.total("relay_packet_size_bytes_count", [:]) == 2)
        #expect(recorder.total("relay_packet_size_bytes_sum", [:]) == 240)
    }
}
