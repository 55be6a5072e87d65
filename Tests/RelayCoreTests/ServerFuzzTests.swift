import Testing
import TestSupport
@testable import RelayCore
import STUN

/// Untrusted bytes never trap: mutated requests, indications and frames, on every socket kind,
/// against a server with live allocations, permissions and channels.
@Suite(.dedicatedThread) struct ServerFuzzTests {
    /// With and without route bookkeeping (the harness checks the route changes after each call);
    /// the peer policy is reloaded now and then, denying and re-allowing the peers in use.
    @Test(arguments: [false, true])
    func mutatedTrafficNeverTrapsAndTablesStayBounded(emitsChannelRoutes: Bool) throws {
        let h = Harness {
            $0.emitsChannelRoutes = emitsChannelRoutes
            $0.relayAddressIPv6 = Addr.relayV6
            $0.maxPermissionsPerAllocation = 8
            $0.maxChannelsPerAllocation = 8
        }
        let (_, handles, _) = try h.allocate { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        try h.createPermission([Addr.peer])
        try h.channelBind(0x4000, to: Addr.peer)
        let auth = try h.auth()
        // Valid seeds to mutate.
        let seeds: [[UInt8]] = [
            message(.allocate, id: transactionID(50), auth: auth) { $0.appendRequestedTransport(17); $0.appendEvenPort(reserveNext: true) },
            message(.refresh, id: transactionID(51), auth: auth) { $0.appendUInt32(.lifetime, 1200) },
            message(.createPermission, id: transactionID(52), auth: auth) { $0.appendXorAddress(.xorPeerAddress, Addr.peer2) },
            message(.channelBind, id: transactionID(53), auth: auth) { $0.appendChannelNumber(0x4001); $0.appendXorAddress(.xorPeerAddress, Addr.peer2) },
            message(.send, .indication) { w in
                w.appendXorAddress(.xorPeerAddress, Addr.peer)
                [1, 2, 3].withUnsafeBytes { w.append(.data, bytes: $0) }
            },
            message(.binding, fingerprint: true),
            channelData(0x4000, [1, 2, 3, 4, 5]),
        ]
        var random = SplitMix64(seed: 1234)
        let sockets: [SocketHandle] = [.listener(.ipv4), .listener(.ipv6)] + handles + [.allocation(index: 999)]
        let sources = [Addr.client, Addr.client2, Addr.clientV6, Addr.peer, Addr.peerV6]
        for i in 0..<30_000 {
            var bytes = seeds[Int(random.next() % UInt64(seeds.count))]
            switch random.next() % 4 {
            case 0:  // flip a few bytes
                for _ in 0..<(1 + random.next() % 4) {
                    let at = Int(random.next() % UInt64(bytes.count))
                    bytes[at] ^= UInt8(truncatingIfNeeded: random.next() | 1)
                }
            case 1:  // truncate
                bytes = Array(bytes.prefix(Int(random.next() % UInt64(bytes.count + 1))))
            case 2:  // garbage
                bytes = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            default:  // extend with garbage (lengths no longer match)
                bytes += (0..<Int(random.next() % 40)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            }
            let source = sources[Int(random.next() % UInt64(sources.count))]
            let socket = sockets[Int(random.next() % UInt64(sockets.count))]
            let out = h.receive(bytes, from: source, on: socket)
            // Whatever came out points into the buffer's headroom..tailroom or the arena.
            for sent in out.sent where sent.origin != .arena {
                let lower = UnsafeRawPointer(h.buffer), upper = lower + Harness.bufferSize
                #expect(sent.pointer >= lower && sent.pointer + sent.bytes.count <= upper)
            }
            if i % 1000 == 999 {
                h.answer(out.opens)
                h.advance(seconds: 7)
            }
            if i % 3000 == 1500 {
                h.reload(peerPolicy: i % 6000 == 1500 ? PeerPolicy(deny: [CIDR("8.8.8.0/24")!]) : PeerPolicy())
            }
        }
        let sizes = h.server.tableSizes
        #expect(sizes.permissions <= 8 * sizes.allocations)
        #expect(sizes.channels <= 8 * sizes.allocations)
        #expect(sizes.transactionCache <= 4096)
        #expect(h.server.invariantViolations() == [])
    }
}
