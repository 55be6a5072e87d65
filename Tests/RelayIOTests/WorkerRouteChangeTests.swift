import Glibc
import RelayCore
@testable import RelayIO
import STUN
import Testing
import TestSupport

/// The worker hands a batch's route changes to its route sink before it carries out the batch's
/// socket requests (ChannelRoute: "The shell applies route changes, in order, before anything
/// else in the batch (before socket requests, so a closed allocation port never keeps a route)").
@Suite(.dedicatedThread) struct WorkerRouteChangeTests {
    /// Records each change and whether the route's allocation port was still bound when it came.
    final class RecordingSink: ChannelRouteSink {
        let events = EventLog()

        func apply(_ change: RouteChange) {
            guard case .down(let route) = change else { return events.append("up") }
            let free = (try? BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: route.relayPort))) != nil
            events.append("down \(route.relayPort) \(free ? "after close" : "while open")")
        }
    }

    @Test(arguments: IOBackendKind.allCases)
    func routeChangesComeBeforeSocketRequests(backend: IOBackendKind) throws {
        let sink = RecordingSink()
        let fixture = try WorkerFixture(backend: backend) { $0.routeSink = sink }
        // A free port for the allocation socket.
        let port = try ListenPortClaims.freePort()
        fixture.client.send([0x0E, UInt8(port >> 8), UInt8(port & 0xFF)], to: fixture.listener)
        #expect(within(seconds: 5) { fixture.events.all.contains("opened 2 opened") }, "\(fixture.events.all)")
        fixture.client.send([0x0D, UInt8(port >> 8), UInt8(port & 0xFF)], to: fixture.listener)
        #expect(within(seconds: 5) { !sink.events.all.isEmpty })
        #expect(sink.events.all == ["down \(port) while open"])
        // And the close did follow: the port is free again.
        #expect(within(seconds: 5) {
            (try? BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: port))) != nil
        })
    }
}

/// Retries `condition` every 20 ms until it holds or `seconds` pass.
private func within(seconds: Int, _ condition: () -> Bool) -> Bool {
    for _ in 0..<(seconds * 50) {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
