import Testing
import TestSupport
import STUN

@Suite struct MessageTypeTests {
    @Test func knownTypesEncodeAsInTheRFCs() {
        // RFC 8489 §5 "a Binding request has class=0b00 (request) and method=0b000000000001, and is
        // encoded into the first 16 bits as 0x0001. A Binding response has class=0b10 (success
        // response) and method=0b000000000001, and is encoded into the first 16 bits as 0x0101."
        #expect(STUNMessageType(method: .binding, messageClass: .request).rawValue == 0x0001)
        #expect(STUNMessageType(method: .binding, messageClass: .successResponse).rawValue == 0x0101)
        #expect(STUNMessageType(method: .binding, messageClass: .errorResponse).rawValue == 0x0111)
        #expect(STUNMessageType(method: .allocate, messageClass: .request).rawValue == 0x0003)
        #expect(STUNMessageType(method: .allocate, messageClass: .errorResponse).rawValue == 0x0113)
        #expect(STUNMessageType(method: .send, messageClass: .indication).rawValue == 0x0016)
        #expect(STUNMessageType(method: .data, messageClass: .indication).rawValue == 0x0017)
        #expect(STUNMessageType(method: .channelBind, messageClass: .successResponse).rawValue == 0x0109)
    }

    @Test func everyValidRawValueRoundTrips() {
        for raw in UInt16(0)...0x3FFF {
            let t = STUNMessageType(rawValue: raw)
            #expect(t?.rawValue == raw)
        }
        #expect(STUNMessageType(rawValue: 0x4000) == nil)
        #expect(STUNMessageType(rawValue: 0x8001) == nil)
        #expect(STUNMessageType(rawValue: 0xC000) == nil)
        // The highest method, 0xFFF, in each class.
        for c in [STUNClass.request, .indication, .successResponse, .errorResponse] {
            let t = STUNMessageType(method: STUNMethod(rawValue: 0xFFF), messageClass: c)
            #expect(STUNMessageType(rawValue: t.rawValue) == t)
        }
    }

    @Test func transactionIDFromBytesAndRandom() {
        let id = TransactionID(Array(0..<12) as [UInt8])
        #expect(id.bytes == Array(0..<12))
        var g = SplitMix64(seed: 42)
        let a = TransactionID(using: &g), b = TransactionID(using: &g)
        #expect(a != b)
        #expect(TransactionID(a.bytes) == a)
    }

    @Test func comprehensionRange() {
        #expect(AttributeType.xorPeerAddress.isComprehensionRequired)
        #expect(AttributeType(rawValue: 0x7FFF).isComprehensionRequired)
        #expect(!AttributeType.software.isComprehensionRequired)
        #expect(!AttributeType(rawValue: 0x8000).isComprehensionRequired)
    }

    @Test func errorCodesAndReasonPhrases() {
        let expected: [Int: String] = [
            300: "Try Alternate", 400: "Bad Request", 401: "Unauthenticated", 403: "Forbidden",
            420: "Unknown Attribute", 437: "Allocation Mismatch", 438: "Stale Nonce",
            440: "Address Family not Supported", 441: "Wrong Credentials", 442: "Unsupported Transport Protocol",
            443: "Peer Address Family Mismatch", 446: "Connection Already Exists", 447: "Connection Timeout or Failure",
            486: "Allocation Quota Reached", 500: "Server Error", 508: "Insufficient Capacity",
        ]
        #expect(STUNErrorCode.all.count == expected.count)
        for (code, reason) in expected {
            #expect(STUNErrorCode(code: code)?.reason == reason)
        }
        #expect(STUNErrorCode(code: 499) == nil)
    }
}

