import Testing
import STUN

@Suite struct WriterTests {
    static let id = TransactionID(hex("01 02 03 04 05 06 07 08 09 0a 0b 0c"))
    static let allocate = STUNMessageType(method: .allocate, messageClass: .request)

    @Test func everyAttributeRoundTrips() throws {
        let peer4 = TransportAddress("198.51.100.7:49152")!
        let peer6 = TransportAddress("[2001:db8::7]:5000")!
        let bytes = try #require(encode(Self.allocate, Self.id) { w in
            w.append(.username, string: "alice")
            w.append(.realm, string: "example.org")
            w.append(.nonce, string: "n0nce")
            w.append(.software, string: "relay 1.0")
            w.appendUInt32(.lifetime, 600)
            w.appendChannelNumber(0x4001)
            w.appendRequestedTransport(17)
            w.appendAddressFamily(.requestedAddressFamily, .ipv6)
            w.appendAddressFamily(.additionalAddressFamily, .ipv6)
            w.appendEvenPort(reserveNext: true)
            w.appendUInt64(.reservationToken, 0x0102_0304_0506_0708)
            w.appendEmpty(.dontFragment)
            w.appendXorAddress(.xorPeerAddress, peer4)
            w.appendXorAddress(.xorPeerAddress, peer6)
            w.appendXorAddress(.xorRelayedAddress, peer6)
            w.appendXorAddress(.xorMappedAddress, peer4)
            w.appendMappedAddress(peer6)
            w.appendPlainAddress(.alternateServer, peer4)
            [UInt8](hex("de ad be ef 01")).withUnsafeBytes { w.append(.data, bytes: $0) }
            w.appendErrorCode(.allocationQuotaReached)
            w.appendAddressErrorCode(family: .ipv6, code: 440, reason: "Address Family not Supported")
            w.appendUnknownAttributes([AttributeType(rawValue: 0x0031), AttributeType(rawValue: 0x0032), AttributeType(rawValue: 0x0033)])
            w.appendPasswordAlgorithms([.md5, .sha256])
            w.appendPasswordAlgorithm(.md5)
            w.appendICMP(type: 3, code: 1, errorData: 0xCAFE)
            Array(repeating: UInt8(7), count: 32).withUnsafeBytes { w.append(.userhash, bytes: $0) }
        })
        #expect(bytes.count % 4 == 0)
        try parsed(bytes) { m throws in
            #expect(m.type == Self.allocate)
            #expect(m.transactionID == Self.id)
            #expect(m.transactionID.bytes == Array(1...12))
            #expect(try m.username() == "alice")
            #expect(try m.realm() == "example.org")
            #expect(try m.nonce() == "n0nce")
            #expect(try m.software() == "relay 1.0")
            #expect(try m.lifetime() == 600)
            #expect(try m.channelNumber() == 0x4001)
            #expect(try m.requestedTransport() == 17)
            #expect(try m.requestedAddressFamily() == .ipv6)
            #expect(try m.additionalAddressFamily() == .ipv6)
            #expect(try m.evenPort()?.reserveNext == true)
            #expect(try m.reservationToken() == 0x0102_0304_0506_0708)
            #expect(m.hasDontFragment)
            #expect(try m.xorPeerAddresses() == [peer4, peer6])
            #expect(try m.xorRelayedAddresses() == [peer6])
            #expect(try m.xorMappedAddress() == peer4)
            #expect(try m.mappedAddress() == peer6)
            #expect(try m.alternateServer() == peer4)
            #expect(m.data().map(Array.init) == hex("de ad be ef 01"))
            let error = try m.errorCode()
            #expect(error?.code == 486 && error?.reason == "Allocation Quota Reached")
            let addressError = try m.addressErrorCode()
            #expect(addressError?.family == .ipv6 && addressError?.code == 440)
            #expect(try m.unknownAttributes().map(\.rawValue) == [0x0031, 0x0032, 0x0033])
            #expect(try m.passwordAlgorithms() == [1, 2])
            #expect(try m.passwordAlgorithm()?.algorithm == 1)
            let icmp = try m.icmp()
            #expect(icmp?.type == 3 && icmp?.code == 1 && icmp?.errorData == 0xCAFE)
            #expect(try m.userhash()?.count == 32)
        }
    }

    @Test func accessorsReturnSlicesOfTheMessageWithoutCopying() throws {
        let bytes = message(attributes: tlv(0x0006, Array("bob".utf8)) + tlv(0x0013, [9, 8, 7, 6, 5]))
        try parsed(bytes) { m throws in
            let data = try #require(m.data())
            #expect(data.baseAddress == m.bytes.baseAddress.map { $0 + 20 + 8 + 4 })
            #expect(Array(data) == [9, 8, 7, 6, 5])
            #expect(m.attribute(.username)?.baseAddress == m.bytes.baseAddress.map { $0 + 24 })
        }
    }

    @Test func xorAddressBytesAreExact() {
        // RFC 8489 §14.2 worked by hand: port 0x1234 ^ 0x2112 = 0x3326; 10.0.0.1 ^ 0x2112A442 = 0x2B12A443.
        let bytes = encode(bindingSuccess, Self.id) { w in
            w.appendXorAddress(.xorMappedAddress, TransportAddress("10.0.0.1:4660")!)
        }
        #expect(bytes == hex("01 01 00 0c 21 12 a4 42 01 02 03 04 05 06 07 08 09 0a 0b 0c  00 20 00 08 00 01 33 26 2b 12 a4 43"))
    }

    @Test func errorCodeBytesAreExact() {
        let bytes = encode(STUNMessageType(method: .allocate, messageClass: .errorResponse), Self.id) { w in
            w.appendErrorCode(.unauthenticated)
        }
        // Class 4, number 1, "Unauthenticated" (15 bytes) plus one byte of zero padding.
        #expect(bytes == hex("01 13 00 18 21 12 a4 42 01 02 03 04 05 06 07 08 09 0a 0b 0c  00 09 00 13 00 00 04 01")
            + Array("Unauthenticated".utf8) + [0])
    }

    @Test func overflowReturnsNilAndStopsWriting() {
        // Too small for the header.
        #expect(encode(bindingRequest, Self.id, capacity: 19) { _ in } == nil)
        // Header fits exactly.
        #expect(encode(bindingRequest, Self.id, capacity: 20) { _ in }?.count == 20)
        // An attribute that does not fit, then one that would: both lost, result nil.
        var overflowedAfterFirst = false
        let lost = encode(bindingRequest, Self.id, capacity: 28) { w in
            w.append(.username, string: "alice")   // 4 + 8 = 12 > 8 left
            overflowedAfterFirst = w.overflowed
            w.appendUInt32(.lifetime, 1)           // would fit, but the writer has stopped
        }
        #expect(lost == nil && overflowedAfterFirst)
        // Integrity that does not fit.
        #expect(encode(bindingRequest, Self.id, capacity: 43) { w in w.appendMessageIntegrity(key: [1]) } == nil)
        #expect(encode(bindingRequest, Self.id, capacity: 44) { w in w.appendMessageIntegrity(key: [1]) }?.count == 44)
        #expect(encode(bindingRequest, Self.id, capacity: 27) { w in w.appendFingerprint() } == nil)
        // A value larger than the 16-bit length field allows.
        let huge = [UInt8](repeating: 1, count: 70_000)
        #expect(encode(bindingRequest, Self.id, capacity: 80_000) { w in
            huge.withUnsafeBytes { w.append(.data, bytes: $0) }
        } == nil)
        // Many attributes pushing the message length past 0xFFFF.
        var fineAfterFirstChunk = false
        let tooLong = encode(bindingRequest, Self.id, capacity: 80_000) { w in
            let chunk = [UInt8](repeating: 2, count: 60_000)
            chunk.withUnsafeBytes { w.append(.data, bytes: $0) }
            fineAfterFirstChunk = !w.overflowed
            chunk.withUnsafeBytes { w.append(.data, bytes: $0) }
        }
        #expect(tooLong == nil && fineAfterFirstChunk)
    }

    @Test func overflowDoesNotWritePastTheBuffer() {
        var storage = [UInt8](repeating: 0xEE, count: 64)
        storage.withUnsafeMutableBytes { all in
            let buffer = UnsafeMutableRawBufferPointer(rebasing: all[0..<32])
            var w = STUNMessageWriter(into: buffer, type: bindingRequest, transactionID: Self.id)
            w.append(.software, string: String(repeating: "x", count: 100))
            w.appendUInt32(.lifetime, 5)
            w.appendFingerprint()
            #expect(w.finish() == nil)
        }
        #expect(storage[32...].allSatisfy { $0 == 0xEE })
    }

    @Test func lengthFieldIsCorrectAfterEveryAppend() throws {
        var storage = [UInt8](repeating: 0, count: 200)
        try storage.withUnsafeMutableBytes { buffer in
            var w = STUNMessageWriter(into: buffer, type: bindingRequest, transactionID: Self.id)
            w.append(.username, string: "abc")
            let n = try #require(w.finish())
            #expect(n == 28)
            #expect(Int(buffer[2]) << 8 | Int(buffer[3]) == 8)
            #expect(throws: Never.self) { _ = try STUNMessage.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) }
        }
    }
}
