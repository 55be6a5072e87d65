import Foundation
import Testing
import TestSupport
@testable import InteropTestSupport

/// coturn's `turnutils_stunclient`: a plain STUN Binding request, answered with the client's
/// reflexive (XOR-MAPPED-ADDRESS) address.
extension RealClientTests {
    @Test("turnutils_stunclient gets its reflexive address over IPv4")
    func stunclientBindingIPv4() throws {
        try runStunclient(serverHost: "127.0.0.1", expectedLinePrefix: "IPv4. UDP reflexive addr: 127.0.0.1:")
    }

    @Test(
        "turnutils_stunclient gets its reflexive address over IPv6",
        .enabled(if: IPv6Loopback.isAvailable, IPv6Loopback.missing))
    func stunclientBindingIPv6() throws {
        try runStunclient(serverHost: "::1", expectedLinePrefix: "IPv6. UDP reflexive addr: ::1:")
    }

    private func runStunclient(serverHost: String, expectedLinePrefix: String) throws {
        let server = try TurnServerUnderTest()
        let stunclient = try ExternalTool.locate("turnutils_stunclient")
        let arguments = ["-p", "\(server.port)", serverHost]
        let run = try ChildProcess.run(stunclient, arguments, name: "turnutils_stunclient", timeout: .seconds(30))

        // e.g. "0: : IPv4. UDP reflexive addr: 127.0.0.1:47140"
        let ports = run.output.split(whereSeparator: \.isNewline).compactMap { line -> Int? in
            guard let range = line.range(of: expectedLinePrefix) else { return nil }
            return Int(line[range.upperBound...].prefix(while: \.isNumber))
        }
        print("interop[\(server.implementation)]: turnutils_stunclient \(arguments.joined(separator: " ")) -> "
            + "exit \(run.status.map(String.init) ?? "killed at timeout"), reflexive ports \(ports)")
        #expect(run.status == 0, "turnutils_stunclient failed:\n\(run.output)")
        #expect(!ports.isEmpty, "no '\(expectedLinePrefix)<port>' line in:\n\(run.output)")
        #expect(ports.allSatisfy { (1...65535).contains($0) })
        #expect(server.isRunning, "\(server.implementation) exited:\n\(server.output)")
        let stopped = server.stop()
        #expect(stopped.isClean, "\(server.implementation) \(stopped)")
    }
}
