import Foundation
import RelayIO
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

/// A second turn-relay started on a port another one still holds (a relay left running by an
/// interrupted run or a botched upgrade) binds anyway, because the listeners use SO_REUSEPORT, and
/// the kernel then splits the port's datagrams between the two processes: clients see half their
/// requests answered by a relay that holds none of their allocations. The relay cannot refuse
/// (the kernel allows it), so it says so at start.
@Suite(.serialized, .dedicatedThread) struct RelayBinarySharedPortTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    static func arguments(port: UInt16, minPort: Int) -> [String] {
        ["serve", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1", "--bind-ip6", "none",
         "--min-port", "\(minPort)", "--max-port", "\(minPort + 10)", "--workers", "1", "--user", "alice:alice-pw",
         "--health-check-addr", "none", "--metrics-addr", "none", "--drain-seconds", "0"]
    }

    @Test(.timeLimit(.minutes(1))) func aSecondRelayOnAHeldPortWarnsAtStart() async throws {
        let port = try ListenPortClaims.freePort()
        let first = try Relay(port: port, arguments: Self.arguments(port: port, minPort: 50460), environment: [:])
        #expect(await eventually(.seconds(20)) { first.log.contains("turn-relay listening") }, "\(first.log)")
        let second = try Relay(port: port, arguments: Self.arguments(port: port, minPort: 50475), environment: [:])
        #expect(await eventually(.seconds(20)) { second.log.contains("turn-relay listening") }, "\(second.log)")
        #expect(second.log.contains("UDP 127.0.0.1:\(port) is already bound by another socket"), "no warning:\n\(second.log)")
        #expect(!first.log.contains("already bound by another socket"), "the first relay warned:\n\(first.log)")
    }
}
