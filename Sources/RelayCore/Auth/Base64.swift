/// RFC 4648 §4 base64 (standard alphabet), encode only: credentials are compared as the text
/// a client would type, never decoded.
enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: some Collection<UInt8>, padded: Bool = true) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var it = bytes.makeIterator()
        while let b0 = it.next() {
            let b1 = it.next(), b2 = it.next()
            let n = UInt32(b0) << 16 | UInt32(b1 ?? 0) << 8 | UInt32(b2 ?? 0)
            out.append(alphabet[Int(n >> 18 & 0x3F)])
            out.append(alphabet[Int(n >> 12 & 0x3F)])
            if b1 != nil { out.append(alphabet[Int(n >> 6 & 0x3F)]) } else if padded { out.append(UInt8(ascii: "=")) }
            if b2 != nil { out.append(alphabet[Int(n & 0x3F)]) } else if padded { out.append(UInt8(ascii: "=")) }
            if b2 == nil { break }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
