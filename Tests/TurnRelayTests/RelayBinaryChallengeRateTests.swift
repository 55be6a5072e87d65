import Foundation
import TestSupport
import Glibc
import RelayCore
import RelayIO
import STUN
import Testing
@testable import OperationsTestSupport

/// `--challenge-rate-per-source` and `--challenge-burst-per-source` (env CHALLENGE_RATE_PER_SOURCE,
/// CHALLENGE_BURST_PER_SOURCE): how many unauthenticated error answers (401) one source address
/// gets per second, and in one burst. The sustained 10 a second, as coturn, keeps a spoofed-source
/// flood from turning the relay into a reflector (hardening notes §4.1); the burst of 1,000 lets
/// many clients behind one NAT address join at once (`turn-bench flood nat`). One worker, so one
/// limiter sees every request.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryChallengeRateTests {
    typealias Relay = RelayBinaryPortalTests.Relay
    static let requests = 40

    /// Sends `requests` unauthenticated Allocate requests from one socket as fast as it can and
    /// counts the 401 answers that arrive within 2 s of the last one.
    static func challengesAnswered(extra: [String]) async throws -> (answered: Int, log: String) {
        let port = try ListenPortClaims.freePort()
        let relay = try Relay(port: port, arguments: [
            "serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
            "--min-port", "50480", "--max-port", "50490", "--workers", "1", "--health-check-addr", "none",
            "--metrics-addr", "none", "--drain-seconds", "0", "--auth-secret", "challenge-rate-secret"] + extra,
            environment: [:])
        #expect(await eventually(.seconds(20)) { relay.log.contains("turn-relay listening") }, "\(relay.log)")
        let socket = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        let server = TransportAddress(ip: .v4(.loopback), port: port)
        for index in 0..<requests {
            // Allocate (0x0003), length 8, magic cookie, transaction ID, REQUESTED-TRANSPORT UDP.
            var request: [UInt8] = [0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42]
            request += [0x63, 0x72, 0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x00, 0x00, 0x00, UInt8(index)]
            request += [0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]
            _ = socket.send(request, to: server)
        }
        var answered = 0
        while let (bytes, _) = socket.receive(timeoutMilliseconds: 2000) {
            if bytes.count >= 20 && bytes[0] == 0x01 && bytes[1] == 0x13 { answered += 1 }  // Allocate error response
        }
        return (answered, relay.log)
    }

    @Test(.timeLimit(.minutes(2))) func theBurstLimitsOneSourceAndTheOptionsSetIt() async throws {
        // Default: a burst of 1,000: all 40 requests are answered.
        let defaults = try await Self.challengesAnswered(extra: [])
        #expect(defaults.answered == Self.requests, "answered \(defaults.answered)\n\(defaults.log)")
        // A burst of 10, then 10 per second; the 40 requests leave in far less than 3 s.
        let limited = try await Self.challengesAnswered(extra: ["--challenge-burst-per-source", "10"])
        #expect(limited.answered >= 10 && limited.answered < Self.requests, "answered \(limited.answered)\n\(limited.log)")
        // Rate and burst raised above the requests: every request is answered.
        let raised = try await Self.challengesAnswered(extra: ["--challenge-rate-per-source", "100", "--challenge-burst-per-source", "100"])
        #expect(raised.answered == Self.requests, "answered \(raised.answered)\n\(raised.log)")
    }

    @Test(.timeLimit(.minutes(2)), arguments: [
        (["--challenge-rate-per-source", "0"], [:], "--challenge-rate-per-source 0 must be between 1 and 1000000"),
        ([], ["CHALLENGE_RATE_PER_SOURCE": "2000000"], "--challenge-rate-per-source 2000000 must be between 1 and 1000000"),
        (["--challenge-burst-per-source", "0"], [:], "--challenge-burst-per-source 0 must be between 1 and 1000000"),
        ([], ["CHALLENGE_BURST_PER_SOURCE": "2000000"], "--challenge-burst-per-source 2000000 must be between 1 and 1000000"),
    ] as [([String], [String: String], String)])
    func outOfBoundsIsRefused(arguments: [String], environment: [String: String], message: String) async throws {
        try await RelayBinaryFirezoneTests.expectRefusedStart(arguments, environment: environment, message: message)
    }
}
