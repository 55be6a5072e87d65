import Foundation
import Testing
@testable import InteropTestSupport

/// The Python `aioice` TURN client (InteropTestSupport/aioice_turn_client.py): allocate with REST
/// credentials, bind a channel to a UDP peer, send payloads through it and get every echo
/// back as ChannelData.
extension RealClientTests {
    @Test("aioice allocates, binds a channel and exchanges data with a peer both ways")
    func aioiceChannelExchange() throws {
        try exchange(transport: "udp")
    }

    /// aioice's `transport="tcp"` (TurnClientTcpProtocol: messages framed and padded on the
    /// stream) against the listen port's TCP side; relaying stays UDP.
    @Test("aioice over TCP allocates, binds a channel and exchanges data with a peer both ways")
    func aioiceChannelExchangeOverTCP() throws {
        try exchange(transport: "tcp")
    }

    /// aioice with `ssl=` (an SSLContext offering ALPN "stun.turn") against the TLS port.
    @Test("aioice over TLS allocates, binds a channel and exchanges data with a peer both ways",
          .enabled(if: TestCertificate.files != nil, TestCertificate.missing))
    func aioiceChannelExchangeOverTLS() throws {
        try exchange(transport: "tls")
    }

    func exchange(transport: String) throws {
        let server = try TurnServerUnderTest()
        let python = try ExternalTool.python()
        let script = ExternalTool.aioiceClientScript
        let messages = 10
        let port = transport == "tls" ? try #require(server.tlsPort) : server.port
        let arguments = [
            script.path, "--server-host", "127.0.0.1", "--server-port", "\(port)", "--transport", transport,
            "--secret", server.secret, "--peer-host", LoopbackPorts.peerIPv4, "--messages", "\(messages)", "--timeout", "15",
        ]
        let run = try ChildProcess.run(python, arguments, name: "aioice", timeout: .seconds(60))
        let lines = run.output.split(whereSeparator: \.isNewline).map(String.init)
        let summary = lines.first { $0.hasPrefix("summary:") } ?? "no summary"
        print("interop[\(server.implementation)]: python3 aioice_turn_client.py --transport \(transport) --messages \(messages) -> "
            + "exit \(run.status.map(String.init) ?? "killed at timeout"), \(summary)")

        #expect(run.status == 0, "the aioice client failed (is aioice installed? `make test` installs it):\n\(run.output)")
        #expect(lines.contains { $0.hasPrefix("allocated: relayed=127.0.0.1:") })
        if transport == "tls" {
            // RFC 7443: the relay selects "stun.turn" when the client offers it.
            #expect(lines.contains { $0.hasPrefix("tls: version=TLSv1.3 alpn=stun.turn") }, "\(run.output)")
        }
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
