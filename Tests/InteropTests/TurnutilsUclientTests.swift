import Foundation
import RelayCore
import STUN
import TURNTestClient
import Testing
import TestSupport
@testable import InteropTestSupport

/// coturn's `turnutils_uclient` with a TURN REST API secret (-W), echoing through
/// `turnutils_peer`. Each run sends a small number of messages, so it finishes in seconds.
extension RealClientTests {
    struct UclientScenario: CustomTestStringConvertible, Sendable {
        let name: String
        let flags: [String]
        let serverHost: String
        let peerHost: String
        /// Messages the client must report sent (and received back): -n times the number of
        /// clients, times 2 for client-to-client (-y), where each of the pair sends.
        let expectedMessages: Int
        /// Distinct relayed addresses of each family the client must report: a lower bound, or
        /// exactly zero for a family it must not get. (uclient makes an extra allocation of its
        /// own before the measured ones, so the counts are not exact.)
        let expectedIPv4Relays: RelayCount
        let expectedIPv6Relays: RelayCount
        /// -c: no RTCP companion allocation. Without it, each client allocates an RTP/RTCP port
        /// pair: EVEN-PORT with the reserve bit, then RESERVATION-TOKEN for the next port.
        var withoutRTCP = true
        /// TCP allocations (-T, RFC 6062): the data connection pairs uclient must report bound
        /// ("N connections are completed"; each Connect gives one to each of the two clients).
        var dataConnections: Int? = nil

        var testDescription: String { name }

        /// Without -s, turnutils_uclient binds channels, drawing each number at random from
        /// 0x4000-0x7FFF: RFC 5766 §11, "0x4000 through 0x7FFF: These values are the allowed
        /// channel numbers (16,383 possible values)". RFC 8656 §12 narrowed that to "0x4000
        /// through 0x4FFF: These values are the allowed channel numbers (4096 possible values)"
        /// and reserved 0x5000-0xFFFF, so turn-relay answers 400 above 0x4FFF unless started
        /// with --rfc5766-channel-numbers.
        var usesChannels: Bool { !flags.contains("-s") }
    }

    enum RelayCount: Sendable {
        case none
        case atLeast(Int)

        func admits(_ count: Int) -> Bool {
            switch self {
            case .none: count == 0
            case .atLeast(let minimum): count >= minimum
            }
        }
    }

    static let messagesPerSession = 10

    private static func scenario(
        _ name: String, _ flags: [String], server: String = "127.0.0.1", peer: String = LoopbackPorts.peerIPv4,
        messages: Int = messagesPerSession, ipv4: RelayCount = .atLeast(1), ipv6: RelayCount = .none,
        withoutRTCP: Bool = true
    ) -> UclientScenario {
        UclientScenario(
            name: name, flags: flags, serverHost: server, peerHost: peer, expectedMessages: messages,
            expectedIPv4Relays: ipv4, expectedIPv6Relays: ipv6, withoutRTCP: withoutRTCP)
    }

    /// Send indications from the client, Data indications back (no channels).
    static let indicationScenarios: [UclientScenario] = [
        scenario("Send and Data indications (-s)", ["-s"]),
        scenario("50 clients with Send indications (-m 50 -s)", ["-m", "50", "-s"], messages: 50 * messagesPerSession,
                 ipv4: .atLeast(50)),
    ]

    /// Without -c: an RTP allocation with EVEN-PORT (reserve the next port), then an RTCP
    /// allocation from another client socket with the RESERVATION-TOKEN it got. On turn-relay's
    /// default workers (one per core) the two sockets often reach different workers, which share
    /// the reservation registry (RFC 8656 §7.2: "the reservation is a server-wide reservation").
    static let portPairScenarios: [UclientScenario] = [
        scenario("RTP/RTCP port pairs with Send indications (no -c)", ["-s"],
                 messages: 2 * messagesPerSession, ipv4: .atLeast(2), withoutRTCP: false),
        // Many pairs in one run, so that with two workers some token is almost surely redeemed
        // on another worker than the one that issued it. uclient reports 10 sessions' messages
        // and 15 relayed addresses here, against coturn's turnserver as against turn-relay.
        scenario("RTP/RTCP port pairs of 10 clients over channels (-m 10, no -c)", ["-m", "10"],
                 messages: 10 * messagesPerSession, ipv4: .atLeast(10), withoutRTCP: false),
    ]

    /// Two clients of the relay sending to each other's relayed addresses (hairpin).
    static let clientToClientScenarios: [UclientScenario] = [
        scenario("client to client with Send indications (-y -s)", ["-y", "-s"], messages: 2 * messagesPerSession,
                 ipv4: .atLeast(2)),
    ]

    /// ChannelBind and ChannelData. turnutils_uclient draws its channel numbers at random from
    /// 0x4000–0x7FFF, RFC 5766's range (see `UclientScenario.usesChannels`).
    static let channelScenarios: [UclientScenario] = [
        scenario("channels", []),
        scenario("client to client over channels (-y)", ["-y"], messages: 2 * messagesPerSession, ipv4: .atLeast(2)),
        scenario("50 clients over channels (-m 50)", ["-m", "50"], messages: 50 * messagesPerSession,
                 ipv4: .atLeast(50)),
    ]

    /// TURN over TCP (-t): the client's messages as a stream, relaying still UDP (RFC 8656 §3.1),
    /// ChannelData padded to a multiple of 4 both ways (§12.5).
    static let tcpScenarios: [UclientScenario] = [
        scenario("over TCP: channels (-t)", ["-t"]),
        scenario("over TCP: Send and Data indications (-t -s)", ["-t", "-s"]),
        scenario("over TCP: client to client over channels (-t -y)", ["-t", "-y"], messages: 2 * messagesPerSession,
                 ipv4: .atLeast(2)),
        scenario("over TCP: 50 clients over channels (-t -m 50)", ["-t", "-m", "50"], messages: 50 * messagesPerSession,
                 ipv4: .atLeast(50)),
        scenario("over TCP: RTP/RTCP port pairs of 10 clients (-t -m 10, no -c)", ["-t", "-m", "10"],
                 messages: 10 * messagesPerSession, ipv4: .atLeast(10), withoutRTCP: false),
    ]

    /// TURN over TLS (-t -S; -S alone is DTLS): the same scenarios on the TLS port, the relay's
    /// certificate made by the test.
    static let tlsScenarios: [UclientScenario] = [
        scenario("over TLS: channels (-t -S)", ["-t", "-S"]),
        scenario("over TLS: Send and Data indications (-t -S -s)", ["-t", "-S", "-s"]),
        scenario("over TLS: client to client over channels (-t -S -y)", ["-t", "-S", "-y"], messages: 2 * messagesPerSession,
                 ipv4: .atLeast(2)),
        scenario("over TLS: 50 clients over channels (-t -S -m 50)", ["-t", "-S", "-m", "50"],
                 messages: 50 * messagesPerSession, ipv4: .atLeast(50)),
    ]

    /// TCP allocations (-T, RFC 6062): uclient's clients in pairs (-T implies -y), each Connects
    /// to every later client's relayed TCP address (relay to relay, on loopback), the other gets a
    /// ConnectionAttempt; both open a data connection, ConnectionBind it with the control
    /// connection's credentials, and exchange their messages over it as raw bytes.
    static let tcpAllocationScenarios: [UclientScenario] = [
        tcpAllocation("TCP allocation over TCP (-T -t)", ["-T", "-t"], clients: 2),
        tcpAllocation("TCP allocations of 4 clients over TCP (-T -t -m 4)", ["-T", "-t", "-m", "4"], clients: 4),
    ]

    static let tcpAllocationTLSScenarios: [UclientScenario] = [
        tcpAllocation("TCP allocation over TLS (-T -S)", ["-T", "-S"], clients: 2),
        tcpAllocation("TCP allocations of 4 clients over TLS (-T -S -m 4)", ["-T", "-S", "-m", "4"], clients: 4),
    ]

    private static func tcpAllocation(_ name: String, _ flags: [String], clients: Int) -> UclientScenario {
        var s = scenario(name, flags, messages: clients * messagesPerSession, ipv4: .atLeast(clients))
        s.dataConnections = clients * (clients - 1)
        return s
    }

    static let ipv6RelayScenarios: [UclientScenario] = [
        scenario("IPv6 relay (-x), client over IPv4, peer ::1", ["-x"], peer: "::1", ipv4: .none, ipv6: .atLeast(1)),
        scenario("IPv6 relay (-x), client over ::1, peer ::1", ["-x"], server: "::1", peer: "::1", ipv4: .none,
                 ipv6: .atLeast(1)),
        scenario("IPv6 relay with Send indications (-x -s), peer ::1", ["-x", "-s"], peer: "::1", ipv4: .none,
                 ipv6: .atLeast(1)),
    ]

    static let dualAllocationScenarios: [UclientScenario] = [
        scenario("dual allocation (-Z), peer ::1", ["-Z"], peer: "::1", ipv4: .atLeast(1), ipv6: .atLeast(1)),
        scenario("over TCP: IPv6 relay (-t -x), client over ::1, peer ::1", ["-t", "-x"], server: "::1", peer: "::1",
                 ipv4: .none, ipv6: .atLeast(1)),
    ]

    /// The one failure of uclient's own making that a scenario runs again: the tail of a real run
    /// (CI machine, 50 clients over TCP) where a client's second channel draw repeated its first.
    @Test func aRepeatedChannelDrawIsToldApartFromOtherFailures() {
        let repeated = """
          0: : channel bind sent
          0: : cb response received: 
          0: : success: 0x6504
          0: : channel bind sent
          0: : cb response received: 
          0: : success: 0x6504
          0: : channel bind sent
          0: : cb response received: 
          0: : channel bind: error 400 (Bad Request)
        """
        #expect(Self.drewABoundChannelNumber(repeated))
        // A first ChannelBind refused (no channel bound before it), and a run that went on after
        // a 400, are failures of the relay's to look at.
        #expect(!Self.drewABoundChannelNumber("""
          0: : allocate response received: 
          0: : success
          0: : channel bind sent
          0: : cb response received: 
          0: : channel bind: error 400 (Bad Request)
        """))
        #expect(!Self.drewABoundChannelNumber(repeated + "\n  0: : channel bind sent\n  0: : cb response received: \n  0: : success: 0x4001"))
        #expect(!Self.drewABoundChannelNumber("  0: : success: 0x4001\n  0: : Total transmit time is 2"))
    }

    /// Every IPv4 scenario: indications, EVEN-PORT/RESERVATION-TOKEN pairs, client to client, channels.
    @Test("turnutils_uclient relays every message with zero loss",
          arguments: indicationScenarios + portPairScenarios + clientToClientScenarios + channelScenarios + tcpScenarios
            + tcpAllocationScenarios)
    func uclientOverIPv4(_ scenario: UclientScenario) throws {
        try runUclientScenario(scenario)
    }

    /// IPv6 relays and dual allocations, where ::1 exists.
    @Test("turnutils_uclient with IPv6 relayed addresses relays every message with zero loss",
          .enabled(if: IPv6Loopback.isAvailable, IPv6Loopback.missing),
          arguments: ipv6RelayScenarios + dualAllocationScenarios)
    func uclientWithIPv6(_ scenario: UclientScenario) throws {
        try runUclientScenario(scenario)
    }

    @Test("turnutils_uclient over TLS relays every message with zero loss",
          .enabled(if: TestCertificate.files != nil, TestCertificate.missing), arguments: tlsScenarios + tcpAllocationTLSScenarios)
    func uclientOverTLS(_ scenario: UclientScenario) throws {
        try runUclientScenario(scenario)
    }

    @Test("turnutils_uclient with a wrong REST secret relays nothing")
    func uclientWrongSecretIsRefused() throws {
        let server = try TurnServerUnderTest()
        let peer = try TurnutilsPeer()
        let uclient = try ExternalTool.locate("turnutils_uclient")
        let arguments = [
            // -v: uclient logs each answer to its Allocates (it prints no error code).
            "-v", "-c", "-W", "not-the-\(server.secret)", "-p", "\(server.port)", "-e", LoopbackPorts.peerIPv4, "-r", "\(peer.port)",
            "-n", "\(Self.messagesPerSession)", "127.0.0.1",
        ]
        let run = try ChildProcess.run(uclient, arguments, name: "turnutils_uclient", timeout: .seconds(60))
        let report = UclientReport(output: run.output)
        print("interop[\(server.implementation)]: turnutils_uclient \(arguments.joined(separator: " ")) -> "
            + "exit \(run.status.map(String.init) ?? "killed"), received \(report?.receivedMessages ?? 0)")
        #expect(run.status != nil, "turnutils_uclient did not finish within 60 s")
        #expect(run.status != 0, "uclient succeeded with a wrong secret:\n\(run.output)")
        #expect((report?.receivedMessages ?? 0) == 0)
        // It was refused, not left unanswered: uclient prints no error code, but it logs each
        // Allocate answer it got (each a 401 challenge, re-sent with credentials) before giving up.
        let answers = run.output.components(separatedBy: "allocate response received").count - 1
        #expect(answers >= 2, "uclient got \(answers) answers to its Allocates:\n\(run.output)")
        #expect(run.output.contains("Cannot complete Allocation"), "\(run.output)")
        #expect(!run.output.contains("allocate response received: success"), "\(run.output)")
        // And the answer is 401: the same kind of credential (a REST username, its password made
        // with the wrong secret), Allocate sent with it after the first challenge.
        let wrong = RESTCredential.make(secret: "not-the-\(server.secret)", ttlSeconds: 3600, id: "uclient",
                                        nowUnixSeconds: UInt64(Date().timeIntervalSince1970))
        let client = try TestTURNClient(server: TransportAddress(ip: .v4(.loopback), port: server.port),
                                        username: wrong.username, password: wrong.password)
        let refused = try #require(client.allocate(), "no answer to an Allocate with a wrong-secret credential")
        #expect(refused.messageClass == .errorResponse)
        #expect(refused.errorCode == 401, "\(String(describing: refused.errorCode))")
        #expect(client.key != nil, "the 401 was the first challenge, not the answer to the credentials")
        #expect(server.isRunning, "\(server.implementation) exited:\n\(server.output)")
        let stopped = server.stop()
        #expect(stopped.isClean, "\(server.implementation) \(stopped)")
    }

    /// Whether uclient gave up on a ChannelBind 400 right after one of its clients had bound a
    /// channel (its "success: 0x..." lines), the one way its own random draws end a run.
    static func drewABoundChannelNumber(_ output: String) -> Bool {
        let lines = output.split(whereSeparator: \.isNewline).map(String.init)
        guard let refused = lines.lastIndex(where: { $0.hasSuffix("channel bind: error 400 (Bad Request)") }),
              !lines[(refused + 1)...].contains(where: { $0.contains("channel bind") || $0.contains("success: 0x") })
        else { return false }
        return lines[..<refused].suffix(12).contains { $0.contains(": success: 0x") }
    }

    private func runUclientScenario(_ scenario: UclientScenario) throws {
        let server = try TurnServerUnderTest(rfc5766ChannelNumbers: scenario.usesChannels)
        let peer = try TurnutilsPeer()
        let uclient = try ExternalTool.locate("turnutils_uclient")
        // -v: print the relayed address of every allocation.
        let arguments =
            ["-v"] + (scenario.withoutRTCP ? ["-c"] : []) + ["-W", server.secret,
             "-p", "\(scenario.flags.contains("-S") ? try #require(server.tlsPort) : server.port)",
             "-e", scenario.peerHost, "-r", "\(peer.port)",
             "-n", "\(Self.messagesPerSession)", "-l", "100"]
            + scenario.flags + [scenario.serverHost]

        var run = try ChildProcess.run(uclient, arguments, name: "turnutils_uclient", timeout: .seconds(90))
        if Self.drewABoundChannelNumber(run.output) {
            // Each uclient client binds a random channel number (coturn 4.6.1's
            // stun_set_channel_bind_request_str: 0x4000 + random % 16,384) to its RTCP peer, binds
            // it again, then draws another for its RTP peer; when the draw repeats the first (1 in
            // 16,384 clients), the channel is bound to a different transport address and RFC 8656
            // §12.2 makes that a 400, which uclient treats as fatal. Once, it runs again.
            print("interop[\(server.implementation)]: turnutils_uclient ended on a ChannelBind 400 after binding a channel: "
                + "one of its clients drew the channel number it had bound already (uclient draws them at random); running it again")
            run = try ChildProcess.run(uclient, arguments, name: "turnutils_uclient", timeout: .seconds(90))
        }
        let report = UclientReport(output: run.output)
        print("interop[\(server.implementation)]: turnutils_uclient \(arguments.joined(separator: " ")) -> "
            + "exit \(run.status.map(String.init) ?? "killed at timeout"), "
            + (report.map {
                "sent \($0.sentMessages), received \($0.receivedMessages), lost \($0.lostPackets), "
                    + "send dropped \($0.sendDropped), IPv4 relays \($0.relayedIPv4Allocations), "
                    + "IPv6 relays \($0.relayedIPv6Allocations)"
            } ?? "no final statistics"))

        let tail = run.output.split(whereSeparator: \.isNewline).suffix(30).joined(separator: "\n")
        #expect(run.status == 0, "turnutils_uclient exit status \(run.status.map(String.init) ?? "killed at timeout"):\n\(tail)")
        let finished = try #require(report, "turnutils_uclient printed no final statistics:\n\(tail)")
        #expect(finished.sentMessages == scenario.expectedMessages)
        #expect(finished.receivedMessages == finished.sentMessages,
                "turnutils_uclient:\n\(tail)\nturnutils_peer:\n\(peer.output.suffix(2000))\n\(server.implementation):\n\(server.output.suffix(4000))")
        #expect(finished.lostPackets == 0)
        #expect(finished.sendDropped == 0)
        #expect(scenario.expectedIPv4Relays.admits(finished.relayedIPv4Allocations), "IPv4 relayed addresses")
        #expect(scenario.expectedIPv6Relays.admits(finished.relayedIPv6Allocations), "IPv6 relayed addresses")
        if let pairs = scenario.dataConnections {
            #expect(run.output.contains(" \(pairs) connections are completed"), "RFC 6062 data connections:\n\(tail)")
        }
        if !scenario.withoutRTCP {
            #expect(finished.hasEvenOddPortPair, "no even/odd relayed port pair among \(finished.relayedPorts.sorted())")
        }
        #expect(server.isRunning, "\(server.implementation) exited:\n\(server.output)")
        #expect(peer.isRunning, "turnutils_peer exited:\n\(peer.output)")
        let stopped = server.stop()
        #expect(stopped.isClean, "\(server.implementation) \(stopped)")
    }
}
