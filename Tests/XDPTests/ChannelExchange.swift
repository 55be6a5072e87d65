import RelayIO
import STUN
import TURNTestClient
import Testing

/// One ChannelData datagram from `client` to `peer` and one datagram back from `peer` per round,
/// each checked intact: at the peer from the relayed address, at the client on `channel`.
func exchangeChannelData(_ client: TestTURNClient, channel: UInt16, peer: BlockingUDPSocket, relayed: TransportAddress,
                         rounds: Range<Int>) {
    for i in rounds {
        let out = Array("to-peer-\(i)".utf8)
        client.sendChannelData(channel, payload: out)
        let received = peer.receive(timeoutMilliseconds: 2000)
        #expect(received?.bytes == out && received?.from == relayed, "datagram \(i) at the peer: \(String(describing: received))")
        let back = Array("to-client-\(i)".utf8)
        _ = peer.send(back, to: relayed)
        #expect(client.receive() == .channelData(channel: channel, payload: back), "datagram \(i) back at the client")
    }
}
