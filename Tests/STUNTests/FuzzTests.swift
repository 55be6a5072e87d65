import Testing
import TestSupport
import STUN

/// Bounded, seeded mutation fuzzing: parsing and every accessor must return values or errors,
/// never trap, on arbitrary bytes derived from valid messages. Tens of thousands of rounds: on a
/// thread of its own, not the cooperative pool the async suites share.
@Suite(.dedicatedThread) struct FuzzTests {
    static let seeds: [[UInt8]] = [
        RFC5769Tests.sampleRequest, RFC5769Tests.sampleIPv4Response, RFC5769Tests.sampleIPv6Response,
        RFC5769Tests.sampleLongTermRequest, RFC8489Tests.sampleRequest,
        encode(STUNMessageType(method: .allocate, messageClass: .request), TransactionID(Array(1...12) as [UInt8])) { w in
            w.appendRequestedTransport(17)
            w.appendAddressFamily(.requestedAddressFamily, .ipv4)
            w.appendXorAddress(.xorPeerAddress, TransportAddress("[2001:db8::1]:9")!)
            w.appendEvenPort(reserveNext: false)
            w.appendErrorCode(.badRequest)
            w.appendAddressErrorCode(family: .ipv6, code: 440, reason: "x")
            w.appendPasswordAlgorithms([.sha256, .md5])
            w.appendPasswordAlgorithm(.sha256)
            w.appendUnknownAttributes([.icmp])
            w.appendICMP(type: 1, code: 2, errorData: 3)
            w.appendMessageIntegrity(key: [1, 2, 3])
            w.appendFingerprint()
        }!,
    ]

    /// Touches everything a server would read.
    static func exercise(_ m: STUNMessage) -> Int {
        var n = 0
        func count<T>(_ f: () throws -> T?) { if (try? f()) != nil { n += 1 } }
        count { try m.username() }; count { try m.realm() }; count { try m.nonce() }; count { try m.software() }
        count { try m.userhash() }; count { try m.xorMappedAddress() }; count { try m.mappedAddress() }
        count { try m.xorPeerAddresses() }; count { try m.xorRelayedAddresses() }; count { try m.lifetime() }
        count { try m.channelNumber() }; count { try m.requestedTransport() }; count { try m.requestedAddressFamily() }
        count { try m.additionalAddressFamily() }; count { try m.evenPort() }; count { try m.reservationToken() }
        count { try m.errorCode() }; count { try m.passwordAlgorithm() }; count { try m.passwordAlgorithms() }
        count { try m.addressErrorCode() }; count { try m.unknownAttributes() }; count { try m.icmp() }
        count { m.data() }
        if m.hasDontFragment { n += 1 }
        if m.verifyMessageIntegrity(key: [1, 2, 3]) { n += 1 }
        if m.verifyMessageIntegritySHA256(key: [1, 2, 3]) { n += 1 }
        if m.verifyFingerprint() { n += 1 }
        n += m.unknownComprehensionRequired(known: { _ in false }).count
        m.forEachAttribute { _, v in n &+= v.count }
        return n
    }

    @Test func mutatedMessagesNeverTrap() {
        var rng = SplitMix64(seed: 0x5EED_2026)
        var parsedCount = 0, rejected = 0
        for i in 0..<20_000 {
            var bytes = Self.seeds[i % Self.seeds.count]
            switch rng.next() % 6 {
            case 0:  // flip a few random bits
                for _ in 0..<(1 + rng.next() % 4) where !bytes.isEmpty {
                    bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8))
                }
            case 1:  // truncate
                bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count + 1))))
            case 2:  // random attribute length field, keeping the header length consistent
                if bytes.count > 24 {
                    let at = 20 + 4 * Int(rng.next() % UInt64((bytes.count - 20) / 4))
                    bytes[at + 2] = UInt8(truncatingIfNeeded: rng.next())
                    bytes[at + 3] = UInt8(truncatingIfNeeded: rng.next())
                }
            case 3:  // append random 4-byte words and fix the header length
                for _ in 0..<(1 + rng.next() % 8) {
                    for _ in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: rng.next())) }
                }
                let n = bytes.count - 20
                bytes[2] = UInt8(truncatingIfNeeded: n >> 8); bytes[3] = UInt8(truncatingIfNeeded: n)
            case 4:  // random attribute types at word boundaries
                if bytes.count > 24 {
                    let at = 20 + 4 * Int(rng.next() % UInt64((bytes.count - 20) / 4))
                    let types: [UInt16] = [0x0001, 0x0006, 0x0008, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013,
                                           0x0014, 0x0015, 0x0016, 0x0017, 0x0018, 0x0019, 0x001A, 0x001C, 0x001D,
                                           0x001E, 0x0020, 0x0022, 0x8000, 0x8001, 0x8002, 0x8004, 0x8022, 0x8028]
                    let t = types[Int(rng.next() % UInt64(types.count))]
                    bytes[at] = UInt8(t >> 8); bytes[at + 1] = UInt8(t & 0xFF)
                }
            default:  // pure noise with a valid-looking header
                let n = 4 * Int(rng.next() % 40)
                bytes = [0x00, 0x01, UInt8(n >> 8), UInt8(n & 0xFF), 0x21, 0x12, 0xA4, 0x42]
                    + (0..<(12 + n)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
            bytes.withUnsafeBytes { raw in
                if let m = try? STUNMessage.parse(raw) {
                    parsedCount += 1
                    _ = Self.exercise(m)
                } else {
                    rejected += 1
                }
                _ = ChannelData.parse(raw)
            }
        }
        // Both outcomes occur, so the mutations reach past the header checks.
        #expect(parsedCount > 1_000)
        #expect(rejected > 1_000)
    }

    @Test func unalignedBuffersParse() throws {
        // The same message at every offset within a word parses identically.
        for shift in 0..<8 {
            let storage = Array(repeating: UInt8(0), count: shift) + RFC5769Tests.sampleIPv6Response
            try storage.withUnsafeBytes { all in
                let m = try STUNMessage.parse(UnsafeRawBufferPointer(rebasing: all[shift...]))
                #expect(try m.xorMappedAddress() == TransportAddress("[2001:db8:1234:5678:11:2233:4455:6677]:32853"))
                #expect(m.verifyFingerprint())
            }
        }
    }
}
