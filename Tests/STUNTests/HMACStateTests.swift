import Crypto
import Testing
@testable import STUN

@Suite struct HMACStateTests {
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    // RFC 2202 §3, test case 6: a key longer than the 64-byte block is hashed first.
    @Test func sha1LongKeyVector() {
        let key = [UInt8](repeating: 0xAA, count: 80)
        let data = Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)
        let mac = data.withUnsafeBytes { HMACState<Insecure.SHA1>(key: key).authenticationCode(for: $0) }
        #expect(Self.hex(mac) == "aa4ae5e15272d00e95705637ce8a3b55ed402112")
    }

    // RFC 4231 §4.3, test case 2.
    @Test func sha256ShortKeyVector() {
        let data = Array("what do ya want for nothing?".utf8)
        let mac = data.withUnsafeBytes { HMACState<SHA256>(key: Array("Jefe".utf8)).authenticationCode(for: $0) }
        #expect(Self.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    // Same as swift-crypto's HMAC for keys of 0...130 bytes (around the block size), and one
    // state reused for several messages gives each message its own HMAC.
    @Test func matchesCryptoHMACAndReuses() {
        for keyLength in [0, 1, 16, 20, 63, 64, 65, 130] {
            let key = (0 ..< keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
            let sha1 = HMACState<Insecure.SHA1>(key: key)
            let sha256 = HMACState<SHA256>(key: key)
            for messageLength in [0, 5, 64, 100] {
                let message = (0 ..< messageLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ keyLength) }
                let expected1 = HMAC<Insecure.SHA1>.authenticationCode(for: message, using: SymmetricKey(data: key))
                let expected256 = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key))
                let got1 = message.withUnsafeBytes { sha1.authenticationCode(for: $0) }
                let got256 = message.withUnsafeBytes { sha256.authenticationCode(for: $0) }
                #expect(Array(got1) == Array(expected1), "SHA-1 key \(keyLength) message \(messageLength)")
                #expect(Array(got256) == Array(expected256), "SHA-256 key \(keyLength) message \(messageLength)")
            }
        }
    }
}
