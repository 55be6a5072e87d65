import Testing
@testable import RelayCore
import STUN

/// ChannelBind (RFC 8656 §12.2) and the ChannelData fast path both ways (§12.6, §12.7).
@Suite struct ServerChannelTests {
    @Test func channelBindThenChannelDataBothWaysZeroCopy() throws {
        let h = Harness()
        let (relays, handles, _) = try h.allocate()
        #expect(relays.count == 1)
        let bind = try h.channelBind(0x4000, to: Addr.peer)
        #expect(bind.only?.bytes == expectedResponse(.channelBind, .successResponse, id: transactionID(3), key: Credentials.alice.key) { _ in })

        // Client → peer: bytes[4...] of the same buffer, from the allocation socket.
        let payload: [UInt8] = Array(0..<100)
        let up = h.receive(channelData(0x4000, payload), from: Addr.client, bufferID: 42)
        let forward = try #require(up.only)
        #expect(forward.socket == handles[0])
        #expect(forward.destination == Addr.peer)
        #expect(forward.bytes == payload)
        #expect(forward.origin == .received(bufferID: 42))
        #expect(forward.pointer == UnsafeRawPointer(h.payloadStart + 4))

        // Peer → client: the 4-byte header written into the headroom, sent from the listener.
        let down = h.receive(payload, from: Addr.peer, on: handles[0], bufferID: 43)
        let back = try #require(down.only)
        #expect(back.socket == .listener(.ipv4))
        #expect(back.destination == Addr.client)
        #expect(back.bytes == channelData(0x4000, payload))
        #expect(back.origin == .received(bufferID: 43))
        #expect(back.pointer == UnsafeRawPointer(h.payloadStart - 4))

        #expect(h.server.statistics.clientToPeer == .init(packets: 1, bytes: 100))
        #expect(h.server.statistics.peerToClient == .init(packets: 1, bytes: 100))
    }

    @Test func channelDataPaddingAndLengthChecks() throws {
        let h = Harness()
        let (_, handles, _) = try h.allocate()
        try h.channelBind(0x4001, to: Addr.peer)
        // Padding after the payload is allowed over UDP and not forwarded.
        let padded = channelData(0x4001, [1, 2, 3]) + [0]
        #expect(h.receive(padded, from: Addr.client).only?.bytes == [1, 2, 3])
        // Zero-length payload still produces a datagram (RFC 8656 §12.6).
        #expect(h.receive(channelData(0x4001, []), from: Addr.client).only?.bytes == [])
        // Length claims more than the datagram holds: "silently discarded".
        #expect(h.receive([0x40, 0x01, 0x00, 0x08, 1, 2], from: Addr.client).sent.isEmpty)
        // Shorter than the header.
        #expect(h.receive([0x40, 0x01, 0x00], from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.malformed == 2)
        _ = handles
    }

    @Test func channelDataWithoutBindingOrAllocationIsDropped() throws {
        let h = Harness()
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noAllocation == 1)
        let (_, handles, _) = try h.allocate()
        #expect(h.receive(channelData(0x4000, [1]), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.noChannel == 1)
        // A peer datagram without a permission is dropped.
        #expect(h.receive([1, 2, 3], from: Addr.peer, on: handles[0]).sent.isEmpty)
        #expect(h.server.statistics.drops.noPermission == 1)
        // A datagram on a handle that was never handed out.
        #expect(h.receive([1, 2, 3], from: Addr.peer, on: .allocation(index: 77)).sent.isEmpty)
    }
}
