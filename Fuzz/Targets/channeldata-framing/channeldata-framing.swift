import FuzzSupport
import RelayCore
import STUN

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

/// ChannelData framing (RFC 8656 §12.4), in the parser and in the server's in-place relaying.
///
/// Parser: `ChannelData.parse` (both variants) agrees with the RFC's rule written here (at least
/// 4 bytes, channel in range, length field ≤ bytes after the header; padding allowed), agrees with
/// `DatagramKind`, and `writeHeader` round-trips.
///
/// Server (alice's allocation with channels 0x4000 → peer and 0x4001 → peerV6, `DeepState`), the
/// input choosing frames:
/// - a frame from alice on a bound channel reaches exactly that channel's peer, from the relay
///   socket of the peer's family, with exactly `length` payload bytes (padding never relayed);
///   anything else (unbound channel, bad length, another client) reaches no peer;
/// - a datagram from a peer with a channel reaches alice as ChannelData on that channel, the
///   length field equal to the payload, the payload unchanged, at most 3 bytes of padding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    if options & 0x80 == 0 {
        // Parser only (cheap, so most inputs are this).
        let bytes = input.rest()
        let highest = UInt16(options & 1 == 0 ? 0x4FFF : 0x7FFF)
        bytes.withUnsafeBytes { raw in
            let parsed = ChannelData.parse(raw)
            let expected = reference(bytes, highest: 0x4FFF)
            fuzzCheck(parsed?.channel == expected?.channel && parsed?.payloadLength == expected?.payloadLength,
                      "parse: \(String(describing: parsed)) vs \(String(describing: expected))")
            let parsedWide = ChannelData.parse(raw, highestChannel: highest)
            let expectedWide = reference(bytes, highest: highest)
            fuzzCheck(parsedWide?.channel == expectedWide?.channel && parsedWide?.payloadLength == expectedWide?.payloadLength,
                      "parse(highestChannel: \(highest)): \(String(describing: parsedWide)) vs \(String(describing: expectedWide))")
            if let first = bytes.first, parsed != nil {
                fuzzCheck(DatagramKind(firstByte: first) == .channelData, "ChannelData with kind \(DatagramKind(firstByte: first))")
            }
            if let first = bytes.first, parsedWide != nil {
                fuzzCheck(DatagramKind(firstByte: first, rfc5766Channels: highest == 0x7FFF) == .channelData,
                          "RFC 5766 ChannelData with another kind")
            }
            if let p = parsed {
                var header = [UInt8](repeating: 0, count: 4)
                header.withUnsafeMutableBytes { ChannelData.writeHeader(to: $0.baseAddress!, channel: p.channel, payloadLength: UInt16(p.payloadLength)) }
                fuzzCheck(header == Array(bytes.prefix(4)), "writeHeader does not round-trip")
            }
        }
        return 0
    }
    let rfc5766 = options & 1 != 0
    let state = DeepState { $0.rfc5766ChannelNumbers = rfc5766 }
    let driver = state.driver
    let bound: [UInt16: (peer: TransportAddress, relay: SocketHandle)] = [
        0x4000: (FuzzAddr.peer, state.aliceRelays[0]), 0x4001: (FuzzAddr.peerV6, state.aliceRelays[1]),
    ]
    for _ in 0..<8 where !input.isEmpty {
        let op = input.byte()
        if op & 1 == 0 {
            // Client → peer: a frame whose header the input writes, or not.
            let client = op & 2 == 0 ? FuzzAddr.client : FuzzAddr.client2
            let channel = op & 4 == 0 ? 0x4000 + UInt16(input.below(3)) : input.uint16()
            let payload = input.chunk()
            let length = op & 8 == 0 ? UInt16(payload.count) : UInt16(input.byte())
            let padding = input.take(input.below(4))
            let frame = [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(length >> 8), UInt8(length & 0xFF)] + payload + padding
            let sent = driver.process([FuzzDatagram(frame, from: client)])
            let toPeers = sent.filter { !$0.socket.isListener }
            if client == FuzzAddr.client, let target = bound[channel], Int(length) <= payload.count + padding.count {
                fuzzCheck(toPeers.count == 1, "a bound-channel frame relayed \(toPeers.count) times")
                if let s = toPeers.first {
                    fuzzCheck(s.destination == target.peer && s.socket == target.relay, "relayed to \(s.destination) on \(s.socket.raw)")
                    fuzzCheck(s.bytes == Array(frame[4..<(4 + Int(length))]), "relayed payload differs from the frame's \(length) bytes")
                }
            } else {
                fuzzCheck(toPeers.isEmpty, "a frame on channel \(channel) length \(length) from \(client) reached a peer")
            }
        } else {
            // Peer → client.
            let which = input.below(3)
            let peer = [FuzzAddr.peer, FuzzAddr.peerV6, FuzzAddr.peer2][which]
            let relay = which == 1 ? state.aliceRelays[1] : state.aliceRelays[0]
            let payload = input.chunk()
            let sent = driver.process([FuzzDatagram(payload, from: peer, on: relay)])
            if which == 2 {
                // No permission for peer2 on alice's allocation.
                fuzzCheck(sent.isEmpty, "a peer without permission reached the client")
                continue
            }
            fuzzCheck(sent.count == 1, "a peer datagram produced \(sent.count) datagrams")
            guard let s = sent.first else { continue }
            fuzzCheck(s.destination == FuzzAddr.client && s.socket == .listener(FuzzAddr.client.family), "sent to \(s.destination)")
            let channel: UInt16 = which == 0 ? 0x4000 : 0x4001
            fuzzCheck(s.bytes.count >= 4 + payload.count && s.bytes.count <= 4 + payload.count + 3, "frame of \(s.bytes.count) bytes for \(payload.count)")
            fuzzCheck(Array(s.bytes.prefix(4)) == [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)],
                      "header \(Array(s.bytes.prefix(4))) for channel \(channel), \(payload.count) bytes")
            fuzzCheck(Array(s.bytes[4..<(4 + payload.count)]) == payload, "payload changed")
        }
    }
    return 0
}

func reference(_ bytes: [UInt8], highest: UInt16) -> (channel: UInt16, payloadLength: Int)? {
    guard bytes.count >= 4 else { return nil }
    let channel = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
    let length = Int(bytes[2]) << 8 | Int(bytes[3])
    guard channel >= 0x4000, channel <= max(highest, 0x4FFF), length + 4 <= bytes.count else { return nil }
    return (channel, length)
}
