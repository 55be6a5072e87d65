import Testing
@testable import RelayCore
import STUN

/// Demultiplexing and Binding (RFC 8489 §6.3, RFC 8656 §12 Table 3).
@Suite struct ServerBindingTests {
    @Test func bindingRequestGetsXorMappedAddressAndNothingElse() {
        let h = Harness()
        let out = h.receive(message(.binding, id: transactionID(9)), from: Addr.client)
        let expected = expectedResponse(.binding, .successResponse, id: transactionID(9)) {
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        }
        #expect(out.sent.count == 1)
        #expect(out.only?.bytes == expected)
        #expect(out.only?.socket == .listener(.ipv4))
        #expect(out.only?.destination == Addr.client)
        #expect(out.only?.origin == .arena)
        #expect(h.server.statistics.responses.success == 1)
    }

    @Test func bindingOverIPv6AnswersFromTheIPv6Listener() {
        let h = Harness()
        let out = h.receive(message(.binding, id: transactionID(9)), from: Addr.clientV6)
        #expect(out.only?.socket == .listener(.ipv6))
        #expect(out.only?.bytes == expectedResponse(.binding, .successResponse, id: transactionID(9)) {
            $0.appendXorAddress(.xorMappedAddress, Addr.clientV6)
        })
    }

    @Test func fingerprintInRequestMeansFingerprintInResponse() {
        let h = Harness()
        let out = h.receive(message(.binding, id: transactionID(9), fingerprint: true), from: Addr.client)
        #expect(out.only?.bytes == expectedResponse(.binding, .successResponse, id: transactionID(9), fingerprint: true) {
            $0.appendXorAddress(.xorMappedAddress, Addr.client)
        })
    }

    @Test func softwareOnlyWhenConfiguredForUnauthenticatedResponses() {
        let quiet = Harness { $0.software = "turn-relay 1.0" }
        #expect(quiet.receive(message(.binding), from: Addr.client).only?.bytes
            == expectedResponse(.binding, .successResponse, id: transactionID(1)) { $0.appendXorAddress(.xorMappedAddress, Addr.client) })
        let chatty = Harness {
            $0.software = "turn-relay 1.0"
            $0.softwareInUnauthenticatedResponses = true
        }
        #expect(chatty.receive(message(.binding), from: Addr.client).only?.bytes
            == expectedResponse(.binding, .successResponse, id: transactionID(1)) {
                $0.appendXorAddress(.xorMappedAddress, Addr.client)
                $0.append(.software, string: "turn-relay 1.0")
            })
    }

    @Test func unknownComprehensionRequiredAttributeGets420() {
        let h = Harness()
        let request = message(.binding, id: transactionID(4)) { w in
            w.appendUInt32(AttributeType(rawValue: 0x0033), 7)
            // Comprehension-optional attributes are ignored.
            w.appendUInt32(AttributeType(rawValue: 0x8033), 7)
        }
        let out = h.receive(request, from: Addr.client)
        #expect(out.only?.bytes == expectedResponse(.binding, .errorResponse, id: transactionID(4)) {
            $0.appendErrorCode(.unknownAttribute)
            $0.appendUnknownAttributes([AttributeType(rawValue: 0x0033)])
        })
        #expect(h.server.statistics.responses.unknownAttribute420 == 1)
    }

    @Test func unknownMethodRequestGets400() {
        let h = Harness()
        let out = h.receive(message(STUNMethod(rawValue: 0x0AB), id: transactionID(5)), from: Addr.client)
        #expect(out.only?.bytes == expectedResponse(STUNMethod(rawValue: 0x0AB), .errorResponse, id: transactionID(5)) {
            $0.appendErrorCode(.badRequest)
        })
    }

    @Test func responsesAndUnknownIndicationsAreDropped() {
        let h = Harness()
        #expect(h.receive(message(.binding, .successResponse), from: Addr.client).sent.isEmpty)
        #expect(h.receive(message(.allocate, .errorResponse), from: Addr.client).sent.isEmpty)
        #expect(h.receive(message(.binding, .indication), from: Addr.client).sent.isEmpty)
        #expect(h.receive(message(.data, .indication), from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.ignoredMessage == 4)
    }

    @Test func sourcePortZeroIsDropped() {
        let h = Harness()
        let out = h.receive(message(.binding), from: TransportAddress(ip: Addr.client.ip, port: 0))
        #expect(out.sent.isEmpty)
        #expect(h.server.statistics.drops.sourcePortZero == 1)
    }

    @Test func reservedFirstBytesAndGarbageAreDropped() {
        let h = Harness()
        // RTP (0x80), DTLS (0x16), reserved ChannelData range 0x5000 (first byte 0x50).
        for first: UInt8 in [0x80, 0x16, 0x50, 0xFF] {
            #expect(h.receive([first, 0, 0, 4, 1, 2, 3, 4], from: Addr.client).sent.isEmpty)
        }
        #expect(h.server.statistics.drops.unknownFirstByte == 4)
        // STUN first byte but not STUN: bad cookie, truncated.
        #expect(h.receive([0, 1, 0, 0, 1, 2, 3, 4], from: Addr.client).sent.isEmpty)
        var bad = message(.binding)
        bad[4] ^= 0xFF
        #expect(h.receive(bad, from: Addr.client).sent.isEmpty)
        // A wrong FINGERPRINT means "not STUN" (RFC 8489 §7.3).
        var badFingerprint = message(.binding, fingerprint: true)
        badFingerprint[badFingerprint.count - 1] ^= 1
        #expect(h.receive(badFingerprint, from: Addr.client).sent.isEmpty)
        #expect(h.server.statistics.drops.malformed == 3)
    }
}
