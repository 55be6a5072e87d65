import Testing
import STUN

/// Each attribute's wire format pinned to bytes written by hand from the RFC's figure, not produced
/// by this package's writer: the writer must produce exactly these bytes, and the parser must read
/// them. (Round trips alone would pass with a writer and a parser that agree on a wrong layout.)
/// Every message: a Binding request, magic cookie 0x2112A442, transaction ID 01 02 ... 0c.
@Suite struct AttributeVectorTests {
    static let id = TransactionID(hex("01 02 03 04 05 06 07 08 09 0a 0b 0c"))
    static let request = STUNMessageType(method: .binding, messageClass: .request)

    /// A Binding request header with `attributes` (already padded) after it.
    static func message(_ attributes: [UInt8]) -> [UInt8] {
        [0x00, 0x01, UInt8(attributes.count >> 8), UInt8(attributes.count & 0xFF), 0x21, 0x12, 0xA4, 0x42]
            + Array(1...12) + attributes
    }

    static func written(_ build: (inout STUNMessageWriter) -> Void) -> [UInt8]? {
        encode(request, id, build)
    }

    /// RFC 8656 §18.6 REQUESTED-ADDRESS-FAMILY (0x0017), its figure:
    ///     |     Family    |            Reserved                           |
    /// "0x01 IPv4, 0x02 IPv6"; and §18.11 ADDITIONAL-ADDRESS-FAMILY (0x8000), "the same format as
    /// REQUESTED-ADDRESS-FAMILY" (IPv6 is the only value it allows).
    @Test func addressFamilyAttributes() throws {
        let v4 = Self.message(hex("00 17 00 04  01 00 00 00"))
        let v6 = Self.message(hex("00 17 00 04  02 00 00 00"))
        let additional = Self.message(hex("80 00 00 04  02 00 00 00"))
        #expect(Self.written { $0.appendAddressFamily(.requestedAddressFamily, .ipv4) } == v4)
        #expect(Self.written { $0.appendAddressFamily(.requestedAddressFamily, .ipv6) } == v6)
        #expect(Self.written { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) } == additional)
        #expect(try parsed(v4) { try $0.requestedAddressFamily() } == .ipv4)
        #expect(try parsed(v6) { try $0.requestedAddressFamily() } == .ipv6)
        #expect(try parsed(additional) { try $0.additionalAddressFamily() } == .ipv6)
        // 0x03 is no family: malformed.
        #expect(throws: STUNAttributeError.self) {
            try parsed(Self.message(hex("00 17 00 04  03 00 00 00"))) { try $0.requestedAddressFamily() }
        }
    }

    /// RFC 8656 §18.7 EVEN-PORT (0x0018), its figure: one byte,
    ///     |R|    RFFU     |
    /// "R: If 1, the server is requested to reserve the next-higher port number"; the value is one
    /// byte, so the attribute is followed by 3 bytes of padding (RFC 8489 §14).
    @Test func evenPort() throws {
        let reserve = Self.message(hex("00 18 00 01  80 00 00 00"))
        let noReserve = Self.message(hex("00 18 00 01  00 00 00 00"))
        #expect(Self.written { $0.appendEvenPort(reserveNext: true) } == reserve)
        #expect(Self.written { $0.appendEvenPort(reserveNext: false) } == noReserve)
        #expect(try parsed(reserve) { try $0.evenPort()?.reserveNext } == true)
        #expect(try parsed(noReserve) { try $0.evenPort()?.reserveNext } == false)
    }

    /// RFC 8656 §18.10 RESERVATION-TOKEN (0x0022): "The RESERVATION-TOKEN attribute contains a token
    /// that uniquely identifies a relayed transport address being held in reserve by the server.
    /// ... The attribute value is 8 bytes".
    @Test func reservationToken() throws {
        let bytes = Self.message(hex("00 22 00 08  01 02 03 04 05 06 07 08"))
        #expect(Self.written { $0.appendUInt64(.reservationToken, 0x0102_0304_0506_0708) } == bytes)
        #expect(try parsed(bytes) { try $0.reservationToken() } == 0x0102_0304_0506_0708)
    }

    /// RFC 8656 §18.13 ICMP (0x8004), its figure:
    ///     |  Reserved                     |  ICMP Type  |  ICMP Code      |
    ///     |                          Error Data                           |
    @Test func icmp() throws {
        let bytes = Self.message(hex("80 04 00 08  00 00 03 01  00 00 ca fe"))
        #expect(Self.written { $0.appendICMP(type: 3, code: 1, errorData: 0xCAFE) } == bytes)
        let icmp = try parsed(bytes) { try $0.icmp() }
        #expect(icmp?.type == 3 && icmp?.code == 1 && icmp?.errorData == 0xCAFE)
    }

    /// RFC 8656 §18.12 ADDRESS-ERROR-CODE (0x8001), its figure:
    ///     |  Family       |    Reserved             |Class|     Number    |
    ///     |      Reason Phrase (variable)                                ..
    /// Class and Number as in ERROR-CODE (RFC 8489 §14.8): 440 is class 4, number 40 (0x28).
    /// "Address Family not Supported" is 28 bytes: no padding.
    @Test func addressErrorCode() throws {
        let reason = "Address Family not Supported"
        let bytes = Self.message(hex("80 01 00 20  02 00 04 28") + Array(reason.utf8))
        #expect(Self.written { $0.appendAddressErrorCode(family: .ipv6, code: 440, reason: reason) } == bytes)
        let error = try parsed(bytes) { try $0.addressErrorCode() }
        #expect(error?.family == .ipv6 && error?.code == 440 && error?.reason == reason)
        // An odd-length reason is padded with zeros: "Bad" (3 bytes) + 1.
        let odd = Self.message(hex("80 01 00 07  01 00 04 28") + Array("Bad".utf8) + [0])
        #expect(Self.written { $0.appendAddressErrorCode(family: .ipv4, code: 440, reason: "Bad") } == odd)
    }

    /// RFC 8489 §14.11 PASSWORD-ALGORITHMS (0x8002), its figure:
    ///     |         Algorithm 1           | Algorithm 1 Parameters Length |
    ///     |                    Algorithm 1 Parameters (variable)
    ///     |         Algorithm 2           | Algorithm 2 Parameters Length |
    /// and §14.12 PASSWORD-ALGORITHM (0x001D), one such entry. RFC 8489's registry: 0x0001
    /// MD5, 0x0002 SHA-256, both without parameters.
    @Test func passwordAlgorithms() throws {
        let list = Self.message(hex("80 02 00 08  00 01 00 00  00 02 00 00"))
        let one = Self.message(hex("00 1d 00 04  00 02 00 00"))
        #expect(Self.written { $0.appendPasswordAlgorithms([.md5, .sha256]) } == list)
        #expect(Self.written { $0.appendPasswordAlgorithm(.sha256) } == one)
        #expect(try parsed(list) { try $0.passwordAlgorithms() } == [1, 2])
        #expect(try parsed(one) { try $0.passwordAlgorithm()?.algorithm } == 2)
        // An entry with 3 bytes of parameters padded to 4, then SHA-256: the parser skips the padding.
        let withParameters = Self.message(hex("80 02 00 0c  00 07 00 03  aa bb cc 00  00 02 00 00"))
        #expect(try parsed(withParameters) { try $0.passwordAlgorithms() } == [7, 2])
    }

    /// RFC 8489 §14.6 MESSAGE-INTEGRITY-SHA256 (0x001C), truncated: "The value will be at least 16
    /// bytes and MUST be a multiple of 4 bytes", the leading bytes of HMAC-SHA256 over "the STUN
    /// message, up to and including the attribute preceding the MESSAGE-INTEGRITY-SHA256 attribute"
    /// with the header's length "adjusted to point to the end of the MESSAGE-INTEGRITY-SHA256
    /// attribute". The HMAC was computed independently:
    ///   python3 -c "import hmac,hashlib; print(hmac.new(b'0123456789abcdef', bytes.fromhex(
    ///     '00010020' '2112a442' '0102030405060708090a0b0c' '00060005616c696365000000'),
    ///     hashlib.sha256).digest()[:16].hex())"
    @Test func truncatedMessageIntegritySHA256() throws {
        let key = Array("0123456789abcdef".utf8)
        // USERNAME "alice" (5 bytes, 3 of padding), then the 16-byte MESSAGE-INTEGRITY-SHA256.
        let bytes = Self.message(hex("00 06 00 05  61 6c 69 63 65 00 00 00")
            + hex("00 1c 00 10  80 5c e1 8f df 81 95 f1 1d 59 3d 20 95 93 e8 50"))
        #expect(Self.written { w in
            w.append(.username, string: "alice")
            w.appendMessageIntegritySHA256(key: key, truncatedTo: 16)
        } == bytes)
        #expect(try parsed(bytes) { $0.verifyMessageIntegritySHA256(key: key) })
        #expect(try !parsed(bytes) { $0.verifyMessageIntegritySHA256(key: Array("0123456789abcdeF".utf8)) })
        // The same message untruncated: the whole 32-byte HMAC (length field 0x30).
        //   ... the same command with '00010030' and without [:16]
        let full = Self.message(hex("00 06 00 05  61 6c 69 63 65 00 00 00")
            + hex("00 1c 00 20  f5 c0 76 7e 1c 43 28 73 71 91 76 18 ce 00 19 b1 f0 eb 6f 08 b9 d8 46 d6 5d d4 d3 2e 4c 46 a4 6a"))
        #expect(Self.written { w in
            w.append(.username, string: "alice")
            w.appendMessageIntegritySHA256(key: key)
        } == full)
        #expect(try parsed(full) { $0.verifyMessageIntegritySHA256(key: key) })
    }
}
