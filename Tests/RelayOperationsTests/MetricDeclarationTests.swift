import CXDP
import Foundation
import RelayCore
import RelayIO
import RelayOperations
import Testing
@testable import OperationsTestSupport

/// The declarations next to the counters (`ServerReport.metrics`, `WorkerStatistics.metrics`)
/// are the one list of exported series: these tests hold them to what operators' dashboards use
/// and to the README's table.
@Suite struct MetricDeclarationTests {
    /// Every series exported before the declarations moved next to the counters, by name and
    /// labels: dashboards depend on them. (New series may be added at the end of a source's list.)
    static let exportedBefore: [String] = [
        #"relay_allocations_active{family="ipv4"}"#,
        #"relay_allocations_active{family="ipv6"}"#,
        #"relay_allocations_created_total"#,
        #"relay_allocations_ended_total{reason="expired"}"#,
        #"relay_allocations_ended_total{reason="deleted"}"#,
        #"relay_allocation_bind_failures_total"#,
        #"relay_responses_total{class="success",code="none"}"#,
        #"relay_responses_total{class="error",code="300"}"#,
        #"relay_responses_total{class="error",code="400"}"#,
        #"relay_responses_total{class="error",code="401"}"#,
        #"relay_responses_total{class="error",code="403"}"#,
        #"relay_responses_total{class="error",code="420"}"#,
        #"relay_responses_total{class="error",code="437"}"#,
        #"relay_responses_total{class="error",code="438"}"#,
        #"relay_responses_total{class="error",code="440"}"#,
        #"relay_responses_total{class="error",code="441"}"#,
        #"relay_responses_total{class="error",code="442"}"#,
        #"relay_responses_total{class="error",code="443"}"#,
        #"relay_responses_total{class="error",code="486"}"#,
        #"relay_responses_total{class="error",code="500"}"#,
        #"relay_responses_total{class="error",code="508"}"#,
        #"relay_responses_retransmitted_total"#,
        #"relay_challenges_bare_total"#,
        #"relay_responses_by_method_total{method="binding",class="success"}"#,
        #"relay_responses_by_method_total{method="binding",class="error"}"#,
        #"relay_responses_by_method_total{method="allocate",class="success"}"#,
        #"relay_responses_by_method_total{method="allocate",class="error"}"#,
        #"relay_responses_by_method_total{method="refresh",class="success"}"#,
        #"relay_responses_by_method_total{method="refresh",class="error"}"#,
        #"relay_responses_by_method_total{method="create_permission",class="success"}"#,
        #"relay_responses_by_method_total{method="create_permission",class="error"}"#,
        #"relay_responses_by_method_total{method="channel_bind",class="success"}"#,
        #"relay_responses_by_method_total{method="channel_bind",class="error"}"#,
        #"relay_responses_by_method_total{method="other",class="success"}"#,
        #"relay_responses_by_method_total{method="other",class="error"}"#,
        #"relay_nonce_challenges_total{code="401"}"#,
        #"relay_nonce_challenges_total{code="438"}"#,
        #"relay_challenges_rate_limited_total"#,
        #"relay_relayed_packets_total{direction="client_to_peer",datapath="userspace"}"#,
        #"relay_relayed_packets_total{direction="peer_to_client",datapath="userspace"}"#,
        #"relay_relayed_bytes_total{direction="client_to_peer",datapath="userspace"}"#,
        #"relay_relayed_bytes_total{direction="peer_to_client",datapath="userspace"}"#,
        #"relay_data_indications_sent_total"#,
        #"relay_send_indications_relayed_total"#,
        #"relay_drops_total{reason="source_port_zero"}"#,
        #"relay_drops_total{reason="unknown_first_byte"}"#,
        #"relay_drops_total{reason="malformed"}"#,
        #"relay_drops_total{reason="ignored_message"}"#,
        #"relay_drops_total{reason="no_allocation"}"#,
        #"relay_drops_total{reason="no_channel"}"#,
        #"relay_drops_total{reason="no_permission"}"#,
        #"relay_drops_total{reason="peer_denied"}"#,
        #"relay_drops_total{reason="challenge_rate_limited"}"#,
        #"relay_drops_total{reason="pending_retransmission"}"#,
        #"relay_drops_total{reason="output_full"}"#,
        #"relay_drops_total{reason="send_queue_full"}"#,
        #"relay_drops_total{reason="transmit_buffers_full"}"#,
        #"relay_drops_total{reason="socket_buffer_full"}"#,
        #"relay_drops_total{reason="truncated"}"#,
        #"relay_drops_total{reason="malformed_receive"}"#,
        #"relay_drops_total{reason="gro_segments"}"#,
        #"relay_drops_total{reason="batch_full"}"#,
        #"relay_drops_total{reason="oversize"}"#,
        #"relay_drops_total{reason="unknown_socket"}"#,
        #"relay_drops_total{reason="invalid_outbound"}"#,
        #"relay_io_datagrams_received_total"#,
        #"relay_io_bytes_received_total"#,
        #"relay_io_datagrams_sent_total"#,
        #"relay_io_bytes_sent_total"#,
        #"relay_io_send_calls_total"#,
        #"relay_io_segmented_sends_total"#,
        #"relay_io_coalesced_receives_total"#,
        #"relay_io_receive_rearms_total"#,
        #"relay_io_receive_buffers_exhausted_total"#,
        #"relay_io_receive_errors_total"#,
        #"relay_io_completion_queue_overflows_total"#,
        #"relay_io_completions_lost_total"#,
        #"relay_io_send_errors_total"#,
        #"relay_io_segmentation_fallbacks_total"#,
        #"relay_io_gso_fallbacks_total{cause="gso_refused"}"#,
        #"relay_io_gso_fallbacks_total{cause="segment_too_large"}"#,
        #"relay_io_gso_fallbacks_total{cause="destination_refused"}"#,
        #"relay_io_allocation_sockets_open"#,
        #"relay_io_allocation_sockets_opened_total"#,
        #"relay_io_allocation_sockets_failed_total"#,
    ]

    @Test func exportedNamesAndLabelsDoNotChange() {
        let exported = RelaySeries.allCases.map(\.description)
        #expect(Set(exported).isSuperset(of: Self.exportedBefore), "missing: \(Set(Self.exportedBefore).subtracting(exported).sorted())")
        #expect(exported.count == Set(exported).count, "a series is declared twice")
        #expect(RelaySeries.families.first { $0.name == "relay_allocations_active" }?.kind == .gauge)
        #expect(RelaySeries.families.first { $0.name == "relay_io_allocation_sockets_open" }?.kind == .gauge)
        // Allocations active, allocation sockets open, stream connections open, TLS handshakes in
        // progress, bytes buffered for stream connections, TCP allocations' peer data connections
        // open, and the process's own: workers not publishing, portal configured and connected;
        // the XDP fast path's routes installed, route capacity, interfaces attached and configured.
        #expect(RelaySeries.families.filter { $0.kind == .gauge }.count == 13)
        #expect(RelaySeries.families.first { $0.name == "relay_xdp_interfaces_configured" }?.kind == .gauge)
        #expect(RelaySeries.families.first { $0.name == "relay_xdp_route_capacity" }?.kind == .gauge)
        #expect(RelaySeries.families.first { $0.name == "relay_tcp_peer_connections_open" }?.kind == .gauge)
    }

    /// The relayed packets and bytes keep their `direction` and gain `datapath`: the core's
    /// counters are `userspace`, the XDP program's `xdp`, so `sum by (direction)` is both paths.
    @Test func relayedSeriesCarryTheirDatapath() {
        let exported = Set(RelaySeries.allCases.map(\.description))
        for name in ["relay_relayed_packets_total", "relay_relayed_bytes_total"] {
            for direction in ["client_to_peer", "peer_to_client"] {
                for datapath in ["userspace", "xdp"] {
                    #expect(exported.contains("\(name){direction=\"\(direction)\",datapath=\"\(datapath)\"}"))
                }
            }
        }
        var x = XDPCounters()
        x[TR_RELAYED_PACKETS_CLIENT_TO_PEER] = 7
        x[TR_RELAYED_BYTES_PEER_TO_CLIENT] = 700
        x[TR_PASS_MAP_MISS] = 3
        x.routeMapFull = 2
        x.routesInstalled = 5
        x.interfacesAttached = 1
        let s = RelaySnapshot(x)
        #expect(s[series("relay_relayed_packets_total", ["direction": "client_to_peer", "datapath": "xdp"])] == 7)
        #expect(s[series("relay_relayed_packets_total", ["direction": "client_to_peer", "datapath": "userspace"])] == 0)
        #expect(s[series("relay_relayed_bytes_total", ["direction": "peer_to_client", "datapath": "xdp"])] == 700)
        #expect(s[series("relay_xdp_passed_packets_total", ["reason": "map_miss"])] == 3)
        #expect(s[series("relay_xdp_route_map_full_total")] == 2)
        #expect(s[series("relay_xdp_routes_installed")] == 5)
        #expect(s[series("relay_xdp_interfaces_attached")] == 1)
        let total: Int = s.values.reduce(0, +)
        #expect(total == 718)
    }

    /// Each `WorkerStatistics` series reads its own field: a snapshot of counters set to distinct
    /// values shows each value under its declared name.
    @Test func workerSeriesReadTheirFields() {
        var w = WorkerStatistics()
        w.droppedTruncated = 11
        w.droppedBatchFull = 12
        w.datagramsReceived = 13
        w.allocationSocketsOpen = 14
        w.gsoFallbackSegmentLowered = 15
        let s = RelaySnapshot(w)
        #expect(s[series("relay_drops_total", ["reason": "truncated"])] == 11)
        #expect(s[series("relay_drops_total", ["reason": "batch_full"])] == 12)
        #expect(s[series("relay_io_datagrams_received_total")] == 13)
        #expect(s[series("relay_io_allocation_sockets_open")] == 14)
        #expect(s[series("relay_io_gso_fallbacks_total", ["cause": "segment_too_large"])] == 15)
        let total: Int = s.values.reduce(0, +)
        #expect(total == 65)
        #expect(WorkerStatistics.total(.drops, over: [w, w]) == 2 * (11 + 12))
        #expect(WorkerStatistics.nonZero(.drops, over: [w, w]) == "truncated=22 batch_full=24")
        #expect(WorkerStatistics.nonZero(.drops, over: [WorkerStatistics()]) == "none")
    }

    /// README's metrics table is the declarations printed (`RelaySeries.markdownTable()`): every
    /// declared family is in it, and nothing in it is undeclared.
    @Test func readmeTableIsTheDeclarations() throws {
        let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        let begin = try #require(text.range(of: RelaySeries.markdownTableBegin))
        let end = try #require(text.range(of: RelaySeries.markdownTableEnd, range: begin.upperBound..<text.endIndex))
        let inReadme = text[begin.upperBound..<end.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
        let expected = RelaySeries.markdownTable().trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(inReadme == expected, "README.md's metrics table differs from the declarations; replace it with:\n\(expected)")
    }
}
