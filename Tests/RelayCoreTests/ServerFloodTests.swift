import Testing
import TestSupport
@testable import RelayCore
import STUN

/// Nothing an unauthenticated packet does makes the server remember anything (hardening notes
/// §4.2 item 3; coturn issue #1641: each spoofed packet cost 18,864 bytes of session state).
@Suite(.dedicatedThread) struct ServerFloodTests {
    @Test func aMillionSpoofedSourcesLeaveEveryTableEmpty() throws {
        let h = Harness()
        // Two kinds of request, from the same bytes for every source: no credentials at all, and
        // a full-looking one with a forged nonce and integrity.
        let plain = message(.allocate, id: transactionID(1)) { $0.appendRequestedTransport(17) }
        let forged = message(.allocate, id: transactionID(2),
                             auth: RequestAuth(credentials: .alice, nonce: "obMatJos2AAAB00000000000000000000000000000000000000000000000000")) {
            $0.appendRequestedTransport(17)
        }
        let batchSize = 128
        let out = OutboundBatch(capacity: batchSize, arenaBytes: batchSize * 1024)
        var random = SplitMix64(seed: 99)
        var batch = [InboundDatagram]()
        batch.reserveCapacity(batchSize)
        var responses = 0
        plain.withUnsafeBytes { plainBytes in
            forged.withUnsafeBytes { forgedBytes in
                let p = UnsafeMutableRawPointer(mutating: plainBytes.baseAddress!)
                let f = UnsafeMutableRawPointer(mutating: forgedBytes.baseAddress!)
                for round in 0..<(1_000_000 / batchSize + 1) {
                    batch.removeAll(keepingCapacity: true)
                    for i in 0..<batchSize {
                        let r = random.next()
                        let source = TransportAddress(ip: .v4(IPv4Address(UInt32(truncatingIfNeeded: r))), port: UInt16(truncatingIfNeeded: r >> 32) | 1)
                        let useForged = i & 1 == 1
                        batch.append(InboundDatagram(socket: .listener(.ipv4), source: source, bytes: useForged ? f : p,
                                                     length: useForged ? forged.count : plain.count, bufferID: UInt32(i)))
                    }
                    out.reset()
                    // 1 ms per batch: ~128k requests per simulated second.
                    let now = Harness.start.adding(nanoseconds: UInt64(round) * 1_000_000)
                    batch.withUnsafeBufferPointer { h.server.process($0, now: now, into: out) }
                    responses += out.count
                }
            }
        }
        #expect(h.server.tableSizes == ServerTableSizes())
        #expect(h.server.nextTimeout() == nil)
        #expect(h.server.allocationCount == 0)
        // Every request got a challenge or was rate-limited; none was left unaccounted.
        let s = h.server.statistics
        #expect(s.responses.unauthorized401 + s.responses.staleNonce438 + s.drops.challengeRateLimited == (1_000_000 / batchSize + 1) * batchSize)
        #expect(responses == s.responses.unauthorized401 + s.responses.staleNonce438)
        #expect(s.responses.staleNonce438 > 0)
    }
}
