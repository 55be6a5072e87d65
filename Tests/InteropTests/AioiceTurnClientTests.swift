import Foundation
import Testing
@testable import InteropTestSupport

/// The Python `aioice` TURN client (InteropTestSupport/aioice_turn_client.py): allocate with REST
/// credentials, bind a channel to a UDP peer, send payloads through it and get every echo
/// back as ChannelData.
extension RealClientTests {
    @Test("aioice allocates, binds a channel and exchanges data with a peer both ways")
    func aioiceChannelExchange() throws {
        let server = try TurnServerUnderTest()
        let python = try ExternalTool.python()
        let script = ExternalTool.aioiceClientScript
        let messages = 10
        let arguments = [
            script.path, "--server-host", "127.0.0.1", "--server-port", "\(server.port)",
            "--secret", server.secret, "--peer-host", LoopbackPorts.peerIPv4, "--messages", "\(messages)", "--timeout", "15",
        ]
        let run = try ChildProcess.run(python, arguments, name: "aioice", timeout: .seconds(60))
        let lines = run.output.split(whereSeparator: \.isNewline).map(String.init)
        let summary = lines.first { $0.hasPrefix("summary:") } ?? "no summary"
        print("interop[\(server.implementation)]: python3 aioice_turn_client.py --messages \(messages) -> "
            + "exit \(run.status.map(String.init) ?? "killed at timeout"), \(summary)")

        #expect(run.status == 0, "the aioice client failed (is aioice installed? `make test` installs it):\n\(run.output)")
        #expect(lines.contains { $0.hasPrefix("allocated: relayed=127.0.0.1:") })
        let echoed = Set(lines.filter { $0.hasPrefix("echoed: ") })
        let expected = Set((0..<messages).map { "echoed: echo:payload-" + String(format: "%03d", $0) })
        #expect(echoed == expected)
        #expect(
            summary
                == "summary: sent=\(messages) peer_received=\(messages) echoed=\(messages) "
                + "channel_data=\(messages) data_indications=0")
        #expect(server.isRunning, "\(server.implementation) exited:\n\(server.output)")
        let stopped = server.stop()
        #expect(stopped.isClean, "\(server.implementation) \(stopped)")
    }
}
