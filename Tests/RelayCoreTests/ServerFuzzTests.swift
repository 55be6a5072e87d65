import Testing
import TestSupport
@testable import RelayCore
import STUN

/// Untrusted bytes never trap: mutated requests, indications and frames, on every socket kind,
/// against a server with live allocations, permissions and channels. Half the requests are
/// mutated before they are signed (with alice's key and a fresh transaction ID), so
/// MESSAGE-INTEGRITY holds and the authenticated handlers parse the mutated attributes; the other
/// half are the seeds below mutated after signing (and garbage), which fail before the handlers.
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
        // Request templates to mutate BEFORE signing: the method's own attributes, which the
        // authenticated handlers parse once MESSAGE-INTEGRITY holds.
        let templates: [(STUNMethod, [(type: AttributeType, value: [UInt8])])] = [
            (.allocate, attributes { $0.appendRequestedTransport(17); $0.appendEvenPort(reserveNext: true) }),
            (.allocate, attributes { $0.appendRequestedTransport(17); $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }),
            (.refresh, attributes { $0.appendUInt32(.lifetime, 1200) }),
            (.refresh, attributes { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) }),
            (.createPermission, attributes { $0.appendXorAddress(.xorPeerAddress, Addr.peer2); $0.appendXorAddress(.xorPeerAddress, Addr.peerV6) }),
            (.channelBind, attributes { $0.appendChannelNumber(0x4001); $0.appendXorAddress(.xorPeerAddress, Addr.peer2) }),
            (.channelBind, attributes { $0.appendChannelNumber(0x4000); $0.appendXorAddress(.xorPeerAddress, Addr.peer) }),
        ]
        let attributeTypes: [AttributeType] = [.lifetime, .channelNumber, .xorPeerAddress, .requestedTransport,
                                               .requestedAddressFamily, .additionalAddressFamily, .evenPort,
                                               .reservationToken, .dontFragment, .data, .icmp, AttributeType(rawValue: 0x7FFF)]
        var random = SplitMix64(seed: 1234)
        let sockets: [SocketHandle] = [.listener(.ipv4), .listener(.ipv6)] + handles + [.allocation(index: 999)]
        let sources = [Addr.client, Addr.client2, Addr.clientV6, Addr.peer, Addr.peerV6]
        let before = h.server.statistics.responses
        var counter: UInt32 = 0
        for i in 0..<30_000 {
            if random.next() % 2 == 0 {
                // Mutated, then signed with alice's key and a fresh transaction ID.
                let (method, template) = templates[Int(random.next() % UInt64(templates.count))]
                var attrs = template
                for _ in 0..<(1 + random.next() % 3) {
                    let at = attrs.isEmpty ? 0 : Int(random.next() % UInt64(attrs.count))
                    switch random.next() % 5 {
                    case 0 where !attrs.isEmpty && !attrs[at].value.isEmpty:  // flip a byte of a value
                        attrs[at].value[Int(random.next() % UInt64(attrs[at].value.count))] ^= UInt8(truncatingIfNeeded: random.next() | 1)
                    case 1 where !attrs.isEmpty:  // truncate or extend a value
                        let n = Int(random.next() % 24)
                        attrs[at].value = n < attrs[at].value.count ? Array(attrs[at].value.prefix(n))
                            : attrs[at].value + (0..<(n - attrs[at].value.count)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    case 2 where !attrs.isEmpty:  // another type
                        attrs[at].type = attributeTypes[Int(random.next() % UInt64(attributeTypes.count))]
                    case 3 where !attrs.isEmpty:  // drop or duplicate
                        if random.next() % 2 == 0 { attrs.remove(at: at) } else { attrs.append(attrs[at]) }
                    default:  // insert one with a random value
                        attrs.insert((attributeTypes[Int(random.next() % UInt64(attributeTypes.count))],
                                      (0..<Int(random.next() % 24)).map { _ in UInt8(truncatingIfNeeded: random.next()) }),
                                     at: attrs.isEmpty ? 0 : Int(random.next() % UInt64(attrs.count + 1)))
                    }
                }
                counter += 1
                let id = TransactionID([0xC0, 0xC1, 0xC2, 0xC3, 0, 0, 0, 0, UInt8(counter >> 24), UInt8((counter >> 16) & 0xFF),
                                        UInt8((counter >> 8) & 0xFF), UInt8(counter & 0xFF)])
                let request = message(method, id: id, auth: try h.auth()) { w in
                    for a in attrs { a.value.withUnsafeBytes { w.append(a.type, bytes: $0) } }
                }
                let out = h.receive(request, from: Addr.client)
                // A request signed with valid credentials is never challenged.
                for sent in out.sent where sent.destination == Addr.client {
                    #expect(errorCode(sent.bytes) != 401 && errorCode(sent.bytes) != 438)
                }
                h.answer(out.opens)
            } else {
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
                }
            }
            if i % 1000 == 999 {
                h.advance(seconds: 7)
            }
            if i % 3000 == 1500 {
                h.reload(peerPolicy: i % 6000 == 1500 ? PeerPolicy(deny: [CIDR("8.8.8.0/24")!]) : PeerPolicy())
            }
        }
        // The authenticated handlers saw the mutations: successes and errors after authentication
        // (the methods' errors less the 401/438 challenges) both moved, by many (seed 1234: 3,327
        // successes, 11,919 errors of which 5,050 are 400s, from 15,000 or so signed requests).
        let after = h.server.statistics.responses
        func authenticated(_ r: ServerStatistics.Responses) -> (success: Int, error: Int) {
            let methods = [r.allocate, r.refresh, r.createPermission, r.channelBind]
            return (methods.map(\.success).reduce(0, +), methods.map(\.error).reduce(0, +) - r.unauthorized401 - r.staleNonce438)
        }
        #expect(authenticated(after).success - authenticated(before).success > 1000)
        #expect(authenticated(after).error - authenticated(before).error > 1000)
        #expect(after.badRequest400 - before.badRequest400 > 1000)
        let sizes = h.server.tableSizes
        #expect(sizes.permissions <= 8 * sizes.allocations)
        #expect(sizes.channels <= 8 * sizes.allocations)
        #expect(sizes.transactionCache <= 4096)
        #expect(h.server.invariantViolations() == [])
    }
}

/// The attributes a writer body produces, as (type, value) pairs to mutate.
private func attributes(_ body: (inout STUNMessageWriter) -> Void) -> [(type: AttributeType, value: [UInt8])] {
    let bytes = message(.binding) { body(&$0) }
    var out: [(type: AttributeType, value: [UInt8])] = []
    try? inspect(bytes) { m in m.forEachAttribute { t, v in out.append((t, Array(v))) } }
    return out
}
