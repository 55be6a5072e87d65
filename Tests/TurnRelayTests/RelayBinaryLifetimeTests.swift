import Foundation
import TestSupport
import Glibc
import Testing
@testable import OperationsTestSupport

/// `--permission-lifetime` and `--channel-lifetime` (env PERMISSION_LIFETIME, CHANNEL_LIFETIME),
/// as coturn's options of the same names. RFC 8656 §9: "The Permission Lifetime MUST be 300
/// seconds (= 5 minutes)"; §12: "A channel binding lasts for 10 minutes unless refreshed". Other
/// values are accepted within bounds, for tests and special deployments, and said to be
/// non-standard at start; zero and absurd values are refused with the option's name.
@Suite(.serialized) struct RelayBinaryLifetimeTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    @Test(.timeLimit(.minutes(2)), arguments: [
        (["--permission-lifetime", "0"], [:], "--permission-lifetime 0 must be between 1 and 3600 seconds"),
        (["--channel-lifetime", "0"], [:], "--channel-lifetime 0 must be between 1 and 3600 seconds"),
        (["--channel-lifetime", "86400"], [:], "--channel-lifetime 86400 must be between 1 and 3600 seconds"),
        ([], ["PERMISSION_LIFETIME": "3601"], "--permission-lifetime 3601 must be between 1 and 3600 seconds"),
        ([], ["CHANNEL_LIFETIME": "-5"], "CHANNEL_LIFETIME=-5 is not a valid"),
    ] as [([String], [String: String], String)])
    func outOfBoundsIsRefused(arguments: [String], environment: [String: String], message: String) async throws {
        try await RelayBinaryFirezoneTests.expectRefusedStart(arguments, environment: environment, message: message)
    }

    @Test(.timeLimit(.minutes(2))) func nonStandardValuesAreSaidAtStartAndTheRFCsAreNot() async throws {
        func start(_ extra: [String], environment: [String: String] = [:]) async throws -> String {
            let port = try ListenPortClaims.freePort()
            let relay = try Relay(port: port, arguments: [
                "serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
                "--min-port", "50460", "--max-port", "50470", "--workers", "1", "--health-check-addr", "none",
                "--metrics-addr", "none", "--drain-seconds", "0"] + extra, environment: environment)
            #expect(await eventually(.seconds(20)) { relay.log.contains("generated a REST secret") }, "\(relay.log)")
            return relay.log
        }
        let shortened = try await start(["--permission-lifetime", "4"], environment: ["CHANNEL_LIFETIME": "6"])
        #expect(shortened.contains("non-standard lifetimes: permissions 4 s (RFC 8656 §9: 300 s), channels 6 s "
            + "(RFC 8656 §12: 600 s), an expired channel reserved 3 s"), "\(shortened)")
        let standard = try await start(["--permission-lifetime", "300", "--channel-lifetime", "600"])
        #expect(!standard.contains("non-standard lifetimes"), "\(standard)")
    }
}
