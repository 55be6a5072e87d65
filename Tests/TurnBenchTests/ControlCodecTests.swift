import STUN
import Testing
@testable import TurnBenchKit

@Test func channelBindRequestCarriesAttributesAndVerifiableIntegrity() throws {
    let tid: [UInt8] = Array(1...12)
    let peer = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: 40000)
    let key = ControlCodec.longTermKey(username: "u", realm: "r", password: "p")
    let auth = ControlAuth(username: "u", realm: "r", nonce: "n0nce", key: key)
    var buf = [UInt8](repeating: 0, count: 512)
    let n = buf.withUnsafeMutableBytes { ControlCodec.encode(.channelBind(channel: 0x4001, peer: peer), transactionID: tid, auth: auth, into: $0) }
    let length = try #require(n)
    try buf.withUnsafeBytes { raw in
        let m = try STUNMessage.parse(UnsafeRawBufferPointer(rebasing: raw[0..<length]))
        #expect(m.type == STUNMessageType(method: .channelBind, messageClass: .request))
        #expect(m.transactionID.bytes == tid)
        #expect(try m.channelNumber() == 0x4001)
        #expect(try m.xorPeerAddresses() == [peer])
        #expect(try m.username() == "u")
        #expect(try m.realm() == "r")
        #expect(try m.nonce() == "n0nce")
        #expect(m.verifyMessageIntegrity(key: key))
        #expect(!m.verifyMessageIntegrity(key: ControlCodec.longTermKey(username: "u", realm: "r", password: "wrong")))
    }
}

@Test func encodeFailsWhenTheBufferIsTooSmall() {
    var buf = [UInt8](repeating: 0, count: 16)
    let n = buf.withUnsafeMutableBytes { ControlCodec.encode(.allocate(), transactionID: Array(repeating: 0, count: 12), auth: nil, into: $0) }
    #expect(n == nil)
}

@Test func decodesChallengeAndSuccess() throws {
    let tid = TransactionID(Array(repeating: 7, count: 12))
    var buf = [UInt8](repeating: 0, count: 512)
    let n = buf.withUnsafeMutableBytes { raw -> Int? in
        var w = STUNMessageWriter(into: raw, type: STUNMessageType(method: .allocate, messageClass: .errorResponse), transactionID: tid)
        w.appendErrorCode(401, reason: "Unauthorized")
        w.append(.realm, string: "bench")
        w.append(.nonce, string: "abc")
        return w.finish()
    }
    let length = try #require(n)
    let r = try #require(buf.withUnsafeBytes { ControlCodec.decode(UnsafeRawBufferPointer(rebasing: $0[0..<length])) })
    #expect(r == ControlResponse(transactionID: tid.bytes, method: 0x003, isSuccess: false, errorCode: 401, realm: "bench", nonce: "abc"))

    let relayed = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: 12345)
    let mapped = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 1)), port: 999)
    let m = buf.withUnsafeMutableBytes { raw -> Int? in
        var w = STUNMessageWriter(into: raw, type: STUNMessageType(method: .allocate, messageClass: .successResponse), transactionID: tid)
        w.appendXorAddress(.xorRelayedAddress, relayed)
        w.appendXorAddress(.xorMappedAddress, mapped)
        w.appendUInt32(.lifetime, 600)
        return w.finish()
    }
    let mlength = try #require(m)
    let ok = try #require(buf.withUnsafeBytes { ControlCodec.decode(UnsafeRawBufferPointer(rebasing: $0[0..<mlength])) })
    #expect(ok.isSuccess)
    #expect(ok.relayedAddress == relayed)
    #expect(ok.mappedAddress == mapped)
    #expect(ok.lifetime == 600)
    // A request, ChannelData or garbage is not a response.
    #expect(buf.withUnsafeBytes { ControlCodec.decode(UnsafeRawBufferPointer(rebasing: $0[0..<3])) } == nil)
    let channelData: [UInt8] = [0x40, 0x00, 0x00, 0x00]
    #expect(channelData.withUnsafeBytes { ControlCodec.decode($0) } == nil)
}

@Test func allocateAsksForIPv6OnlyWhenTold() throws {
    var buf = [UInt8](repeating: 0, count: 256)
    for family: AddressFamily? in [nil, .ipv6] {
        let n = buf.withUnsafeMutableBytes { ControlCodec.encode(.allocate(family: family), transactionID: Array(repeating: 1, count: 12), auth: nil, into: $0) }
        let length = try #require(n)
        try buf.withUnsafeBytes { raw in
            let m = try STUNMessage.parse(UnsafeRawBufferPointer(rebasing: raw[0..<length]))
            #expect(try m.requestedTransport() == 17)
            #expect(try m.requestedAddressFamily() == family)
        }
    }
}

/// The benchmark's long-term key against a vector computed independently of this code base:
///   python3 -c "import hashlib; print(hashlib.md5(b'<username>:<realm>:<password>').hexdigest())"
@Test func longTermKeyIsMD5OfUsernameRealmPassword() {
    // hashlib.md5(b'user:realm:pass')
    #expect(ControlCodec.longTermKey(username: "user", realm: "realm", password: "pass")
        == hexBytes("8493fbc53ba582fb4c044c456bdc40eb"))
    // hashlib.md5(b'bench:bench:bench-password'): the credentials `turn-bench core` uses.
    #expect(ControlCodec.longTermKey(username: "bench", realm: "bench", password: "bench-password")
        == hexBytes("7440892cee5eccbb0be5749893d312a9"))
}

private func hexBytes(_ text: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        out.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return out
}
