// TEMPORARY: a minimal STUN encoder/decoder for the few TURN messages the load generator needs,
// used until the project's STUN module (STUNMessageWriter / STUNMessage) is on main. Replace the
// bodies of `ControlCodec.encode`/`decode` with calls into STUN then, and delete this note.
import Crypto
import STUN

public enum ControlCodec {
    static let magicCookie: UInt32 = 0x2112_A442

    /// Encodes `request` into `buffer`; returns its length, nil if it does not fit.
    public static func encode(_ request: ControlRequest, transactionID: [UInt8], auth: ControlAuth?,
                              into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        var w = ByteWriter()
        w.u16(request.method) // class request = 0b00
        w.u16(0)
        w.u32(magicCookie)
        w.bytes(transactionID)
        switch request {
        case .allocate:
            w.attribute(0x0019, [17, 0, 0, 0]) // REQUESTED-TRANSPORT: UDP
        case .refresh(let lifetime):
            w.attribute(0x000D, be32(lifetime))
        case .channelBind(let channel, let peer):
            w.attribute(0x000C, [UInt8(channel >> 8), UInt8(channel & 0xFF), 0, 0])
            w.attribute(0x0012, xorAddress(peer, transactionID: transactionID))
        case .createPermission(let peer):
            w.attribute(0x0012, xorAddress(peer, transactionID: transactionID))
        }
        if let auth {
            w.attribute(0x0006, Array(auth.username.utf8))
            w.attribute(0x0014, Array(auth.realm.utf8))
            w.attribute(0x0015, Array(auth.nonce.utf8))
            // RFC 8489 §14.5: the length field covers everything up to and including MESSAGE-INTEGRITY.
            w.setLength(w.data.count - 20 + 24)
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: w.data, using: SymmetricKey(data: auth.key))
            w.attribute(0x0008, Array(mac))
        }
        w.setLength(w.data.count - 20)
        guard w.data.count <= buffer.count else { return nil }
        buffer.copyBytes(from: w.data)
        return w.data.count
    }

    /// Decodes a STUN response; nil when the bytes are not one.
    public static func decode(_ b: UnsafeRawBufferPointer) -> ControlResponse? {
        guard b.count >= 20, b[0] & 0xC0 == 0 else { return nil }
        let type = UInt16(b[0]) << 8 | UInt16(b[1])
        let length = Int(UInt16(b[2]) << 8 | UInt16(b[3]))
        guard 20 + length <= b.count, read32(b, 4) == magicCookie else { return nil }
        let cls = (type & 0x0100) >> 7 | (type & 0x0010) >> 4
        guard cls == 2 || cls == 3 else { return nil }
        let method = (type & 0x000F) | (type & 0x00E0) >> 1 | (type & 0x3E00) >> 2
        let tid = Array(b[8..<20])
        var r = ControlResponse(transactionID: tid, method: method, isSuccess: cls == 2)
        var off = 20
        while off + 4 <= 20 + length {
            let t = UInt16(b[off]) << 8 | UInt16(b[off + 1])
            let l = Int(UInt16(b[off + 2]) << 8 | UInt16(b[off + 3]))
            let v = off + 4
            guard v + l <= 20 + length else { return nil }
            let value = UnsafeRawBufferPointer(rebasing: b[v..<(v + l)])
            switch t {
            case 0x0009 where l >= 4: r.errorCode = Int(value[2] & 0x07) * 100 + Int(value[3])
            case 0x0014: r.realm = String(decoding: value, as: UTF8.self)
            case 0x0015: r.nonce = String(decoding: value, as: UTF8.self)
            case 0x0016: r.relayedAddress = r.relayedAddress ?? parseXorAddress(value, transactionID: tid)
            case 0x0020: r.mappedAddress = parseXorAddress(value, transactionID: tid)
            case 0x000D where l == 4: r.lifetime = read32(value, 0)
            default: break
            }
            off = v + ((l + 3) & ~3)
        }
        return r
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func read32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
    }

    static func xorAddress(_ a: TransportAddress, transactionID: [UInt8]) -> [UInt8] {
        let port = a.port ^ 0x2112
        switch a.ip {
        case .v4(let v4):
            return [0, 1, UInt8(port >> 8), UInt8(port & 0xFF)] + be32(v4.value ^ magicCookie)
        case .v6(let v6):
            var bytes: [UInt8] = []
            for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v6.high >> UInt64(s)) & 0xFF)) }
            for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v6.low >> UInt64(s)) & 0xFF)) }
            let mask = be32(magicCookie) + transactionID
            for i in 0..<16 { bytes[i] ^= mask[i] }
            return [0, 2, UInt8(port >> 8), UInt8(port & 0xFF)] + bytes
        }
    }

    static func parseXorAddress(_ v: UnsafeRawBufferPointer, transactionID: [UInt8]) -> TransportAddress? {
        guard v.count >= 8 else { return nil }
        let port = (UInt16(v[2]) << 8 | UInt16(v[3])) ^ 0x2112
        if v[1] == 1 {
            return TransportAddress(ip: .v4(IPv4Address(read32(v, 4) ^ magicCookie)), port: port)
        }
        guard v[1] == 2, v.count >= 20 else { return nil }
        let mask = be32(magicCookie) + transactionID
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<8 { hi = hi << 8 | UInt64(v[4 + i] ^ mask[i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(v[4 + i] ^ mask[i]) }
        return TransportAddress(ip: .v6(IPv6Address(high: hi, low: lo)), port: port)
    }

    /// RFC 8489 §9.2.2: key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password)).
    public static func longTermKey(username: String, realm: String, password: String) -> [UInt8] {
        Array(Insecure.MD5.hash(data: Array("\(username):\(realm):\(password)".utf8)))
    }
}

struct ByteWriter {
    var data: [UInt8] = []
    mutating func u16(_ v: UInt16) { data += [UInt8(v >> 8), UInt8(v & 0xFF)] }
    mutating func u32(_ v: UInt32) { data += ControlCodec.be32(v) }
    mutating func bytes(_ b: [UInt8]) { data += b }
    mutating func attribute(_ type: UInt16, _ value: [UInt8]) {
        u16(type)
        u16(UInt16(value.count))
        data += value
        while data.count % 4 != 0 { data.append(0) }
    }
    mutating func setLength(_ n: Int) {
        data[2] = UInt8((n >> 8) & 0xFF)
        data[3] = UInt8(n & 0xFF)
    }
}
