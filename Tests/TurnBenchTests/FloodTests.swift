import Foundation
import STUN
import Testing
@testable import TurnBenchKit

// `turn-bench flood`: its arguments, its report, and a tiny bounded run of every scenario
// against the turn-relay binary, checking behaviour (never speed).

@Test func floodSettingsAndRelayArguments() {
    #expect(FloodRelay.settings([]) == [[]])
    #expect(FloodRelay.settings(["", "defaults", "--challenge-burst-per-source 10"]) == [[], [], ["--challenge-burst-per-source", "10"]])
    let common = ServerSpec.Common(secret: "s", realm: "r", threads: 1, logDirectory: "/tmp")
    let spec = ServerSpec.turnRelay(executable: "/bin/turn-relay", template: ServerSpec.defaultTurnRelayTemplate, port: 4000,
                                    ports: 45000...45010, common: common)
    let merged = FloodRelay.adding(["--min-port", "46000", "--challenge-burst-per-source", "10", "--verbose"], to: spec)
    // An option the template has is replaced, not repeated; new ones and bare flags are appended.
    #expect(merged.arguments.count { $0 == "--min-port" } == 1)
    #expect(merged.arguments[merged.arguments.firstIndex(of: "--min-port")! + 1] == "46000")
    #expect(merged.arguments.suffix(3) == ["--challenge-burst-per-source", "10", "--verbose"])
    #expect(FloodScenario(rawValue: "churn") == .churn && FloodScenario(rawValue: "flood") == nil)
    #expect(FloodScenario.allCases.map(\.rawValue) == ["unauth", "nat", "exhaust", "reload", "junk", "churn", "soak", "stream-soak"])
    #expect(FloodScenario.allCases.filter { $0.sampledActivity != nil } == [.churn, .soak, .streamSoak])
    // Both transports of the churn delete some allocations before closing (clients alternate TLS, TCP).
    let deleting = (0..<16).filter(StreamChurn.deletes)
    #expect(deleting == [6, 7, 14, 15], "one TLS and one TCP client in every eight")
}

@Test func floodReportRendersFiguresAndChurnSamples() throws {
    let s0 = FloodSample(seconds: 0, rssKiB: 20_000, fds: 12, metrics: ["allocations": 0, "created": 0, "drop_no_channel": 0])
    let s1 = FloodSample(seconds: 1, rssKiB: 21_000, fds: 40, metrics: ["allocations": 28, "created": 1_500, "drop_no_channel": 0])
    let s2 = FloodSample(seconds: 2, rssKiB: 20_100, fds: 12, metrics: ["allocations": 0, "created": 3_500, "drop_no_channel": 7])
    let r = FloodResult(scenario: .churn, setting: "--workers 1", figures: [FloodFigure("completed", "allocations set up and deleted", 1_234_567),
                                                                            FloodFigure("never", "seconds until all", .nan, digits: 1)],
                        before: s0, peak: s1, after: s2, samples: [s0, s1, s2])
    #expect(r["completed"] == 1_234_567 && r["nothing"] == nil)
    let md = r.render()
    #expect(md.contains("### churn (`--workers 1`)"))
    #expect(md.contains("| allocations set up and deleted | 1,234,567 |"))
    #expect(md.contains("| seconds until all | - |"))
    #expect(md.contains("| relay RSS before → peak → after, KiB | 20,000 → 21,000 → 20,100 |"))
    #expect(md.contains("| relay open fds before → peak → after | 12 → 40 → 12 |"))
    #expect(md.contains("no_channel 7"))
    #expect(r.csv().split(separator: "\n") == ["seconds,rss_kib,open_fds,allocations_active,allocations_created,allocation_sockets,stream_connections_open",
                                                "0.0,20000,12,0,0,0,0", "1.0,21000,40,28,1500,0,0", "2.0,20100,12,0,3500,0,0"])
    let svg = r.chart(title: "churn").render()
    #expect(svg.contains("Relay resident memory") && svg.contains("created per second"))
    #expect(!svg.contains("stream connections open"), "no stream connections: no such line")
    var streams = r
    streams.samples[1].metrics["streams_open"] = 17
    #expect(streams.csv().split(separator: "\n")[2] == "1.0,21000,40,28,1500,0,17")
    #expect(streams.chart(title: "stream-soak").render().contains("stream connections open"))
    let report = FloodReport(machine: Machine.current(), command: "turn-bench flood churn", results: [r], errors: [])
    let json = try JSONResults.encode(report)
    #expect(String(decoding: json, as: UTF8.self).contains("\"value\" : null"))
    let decoded = try JSONResults.decode(FloodReport.self, from: json)
    #expect(decoded == report)
    #expect(group(-1234.5, 1) == "-1,234.5" && group(999, 0) == "999" && group(.nan, 0) == "-")
}

/// Runs every tiny scenario one after another: each starts a relay and sends bursts.
@Suite(.serialized) struct FloodRunTests {
    static func configuration(_ name: String) throws -> FloodConfiguration {
        var c = FloodConfiguration(relayExecutable: try benchRelayBinary(), outputDirectory: try temporaryDirectory("flood-\(name)"))
        // Outside the relay port range below (a listen port inside it is refused at start-up).
        c.port = try freeBenchPorts(8, in: 30_100...32_000)
        let low = UInt16.random(in: 0...9) * 500 + 25_000
        c.relayPorts = low...(low + 499)
        c.seconds = 2
        c.legitAllocations = 2
        c.legitPPS = 500
        c.showProgress = false
        return c
    }

    @Test(.timeLimit(.minutes(1))) func unauthenticatedFloodsCreateNothingAndLegitimateClientsAllocate() throws {
        var c = try Self.configuration("unauth")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.sources = 2_000
        c.addresses = 1_000
        c.oneAddressRequests = 300
        let r = try FloodRunner.run(.unauth, c, setting: ["--challenge-burst-per-source", "10"])
        #expect(r.setting == "--challenge-burst-per-source 10")
        #expect(r["distinct_sent"] == 2_000 && r["one_sent"] == 300)
        #expect((r["distinct_401_received"] ?? 0) > 0, "\(r.render())")
        // One address, a burst of 10: far fewer answers than requests, the rest withheld.
        #expect((r["one_401_sent"] ?? 0) < 300 && (r["one_rate_limited"] ?? 0) > 0, "\(r.render())")
        #expect(r["flood_allocations"] == 0, "\(r.render())")
        #expect((r["legit_allocations_tried"] ?? 0) > 0 && r["legit_allocation_success_percent"] == 100, "\(r.render())")
        #expect((r["legit_sent"] ?? 0) > 0)
        #expect(r.before.rssKiB > 0 && r.after.fds > 0)
    }

    @Test(.timeLimit(.minutes(2))) func clientsBehindOneAddressAllAllocateWithEitherBurst() throws {
        var c = try Self.configuration("nat")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.clients = 30
        c.natDeadlineSeconds = 60
        let limited = try FloodRunner.run(.nat, c, setting: ["--challenge-burst-per-source", "10"])
        #expect(limited["allocated"] == 30, "\(limited.render())")
        #expect((limited["rate_limited"] ?? 0) > 0, "30 at once, a burst of 10: \(limited.render())")
        let defaults = try FloodRunner.run(.nat, c)
        #expect(defaults["allocated"] == 30, "\(defaults.render())")
        #expect(defaults["rate_limited"] == 0 && defaults["401_sent"] == 30, "\(defaults.render())")
        #expect(defaults["failed_transactions"] == 0)
    }

    @Test(.timeLimit(.minutes(1))) func portExhaustionAnswers508AndRecovers() throws {
        var c = try Self.configuration("exhaust")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.exhaustPorts = 5
        let r = try FloodRunner.run(.exhaust, c)
        let first = try #require(r["first_allocated"])
        #expect(first >= 1 && first <= 5, "\(r.render())")
        #expect((r["first_508"] ?? 0) > 0, "\(r.render())")
        #expect(r["allocations_freed"] == 0)
        #expect(r["second_allocated"] == first, "\(r.render())")
    }

    @Test(.timeLimit(.minutes(1))) func reloadsDuringRelayingKeepTheAllocations() throws {
        var c = try Self.configuration("reload")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.reloads = 5
        let r = try FloodRunner.run(.reload, c)
        #expect(r["sighups"] == 5)
        #expect((r["reloads_logged"] ?? 0) >= 1, "\(r.render())")
        #expect((r["quiet_sent"] ?? 0) > 0 && (r["loud_sent"] ?? 0) > 0)
        #expect(r["allocations_after"] == 2, "\(r.render())")
    }

    @Test(.timeLimit(.minutes(1))) func junkIsDroppedByReasonAndLegitimateTrafficFlows() throws {
        var c = try Self.configuration("junk")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.seconds = 1
        let r = try FloodRunner.run(.junk, c)
        for k in ["junk_unbound", "junk_stranger", "junk_oversize", "junk_stalled", "loud_sent"] {
            #expect((r[k] ?? 0) > 0, "\(k): \(r.render())")
        }
        #expect(r.after.metric("drop_no_channel") > r.before.metric("drop_no_channel"), "\(r.render())")
        #expect(r.after.metric("drop_no_permission") > r.before.metric("drop_no_permission"), "\(r.render())")
        #expect((r["loud_loss_percent"] ?? 100) < 100, "legitimate packets still arrive: \(r.render())")
    }

    @Test(.timeLimit(.minutes(1))) func churnIsSampledAndEndsWithNoAllocations() throws {
        var c = try Self.configuration("churn")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.settleSeconds = 1
        c.churnWindow = 4
        let r = try FloodRunner.run(.churn, c)
        #expect((r["completed"] ?? 0) > 0, "\(r.render())")
        #expect(r.samples.count >= 2)
        #expect(r.after.metric("allocations") == 0, "\(r.render())")
        #expect(r.csv().split(separator: "\n").count == r.samples.count + 1)
    }

    @Test(.timeLimit(.minutes(1))) func soakRelaysIsSampledAndKeepsRFCLifetimesWhenShort() throws {
        var c = try Self.configuration("soak")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.settleSeconds = 1
        let r = try FloodRunner.run(.soak, c)
        #expect((r["legit_sent"] ?? 0) > 0, "\(r.render())")
        #expect((r["legit_loss_percent"] ?? 100) < 100, "legitimate packets arrive: \(r.render())")
        #expect((r["legit_allocations_tried"] ?? 0) > 0, "\(r.render())")
        #expect(r.samples.count >= 2)
        // The generator's two allocations stay (it deletes them only when it is torn down).
        #expect((r["max_allocations"] ?? 0) >= 2, "\(r.render())")
        // 2 s: the RFC's lifetimes are kept, and nothing says otherwise.
        #expect(r.notes.isEmpty, "\(r.notes)")
    }

    @Test(.timeLimit(.minutes(1))) func streamSoakRelaysOverTLSAndEveryAllocationEndsWithItsConnection() throws {
        var c = try Self.configuration("stream-soak")
        defer { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
        c.settleSeconds = 1
        c.legitPPS = 1_000
        let r = try FloodRunner.run(.streamSoak, c)
        #expect((r["legit_sent"] ?? 0) > 0, "\(r.render())")
        #expect((r["legit_delivered"] ?? 0) > 0, "packets relayed over TLS: \(r.render())")
        #expect((r["churn_tried"] ?? 0) >= 8, "TLS and TCP clients came and went: \(r.render())")
        #expect(r["churn_success_percent"] == 100, "\(r.render())")
        #expect((r["churn_closed_without_delete"] ?? 0) > 0, "\(r.render())")
        #expect((r["churn_closed_without_delete"] ?? 0) < (r["churn_tried"] ?? 0), "some deleted first: \(r.render())")
        #expect((r["max_streams_open"] ?? 0) >= 2, "the two relaying TLS clients were sampled: \(r.render())")
        // TCP allocations (RFC 6062) over TCP and TLS: bytes intact both ways, both ways of getting
        // a peer connection, and the relay closing every peer connection once its client went.
        #expect((r["tcp_allocations_tried"] ?? 0) >= 4, "\(r.render())")
        #expect(r["tcp_allocations_success_percent"] == 100, "\(r.render())")
        #expect((r["tcp_allocations_peer_initiated"] ?? 0) > 0, "\(r.render())")
        #expect((r["tcp_allocations_closed_without_delete"] ?? 0) > 0, "\(r.render())")
        #expect((r["tcp_allocations_bytes_checked"] ?? 0) >= 4 * 2400, "\(r.render())")
        #expect(r["tcp_peers_open_after"] == 0, "\(r.render())")
        // An allocation belongs to its connection (its 5-tuple) and ends with it: none left once all closed.
        #expect(r["allocations_after"] == 0, "\(r.render())")
        #expect(r["streams_open_after"] == 0, "\(r.render())")
        #expect(r.samples.count >= 2)
        #expect(r.notes.isEmpty, "\(r.notes)")
    }
}
