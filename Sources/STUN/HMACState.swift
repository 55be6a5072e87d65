import Crypto
// `Digest.withUnsafeBytes` (ContiguousBytes) is Foundation API; inlinable code must import it.
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// HMAC (RFC 2104) over a swift-crypto hash function, with the key's padded inner and outer hash
/// states computed once and copied per message.
///
/// RFC 2104 §2: "H(K XOR opad, H(K XOR ipad, text))", where "ipad = the byte 0x36 repeated B times,
/// opad = the byte 0x5C repeated B times" and "Applications that use keys longer than B bytes will
/// first hash the key using H". B is 64 for SHA-1 and SHA-256.
///
/// Why not `Crypto.HMAC`: its `init(key:)` is generic code that is not specialized across the module
/// boundary, and instantiating its generic metadata plus padding the key was about a third of an
/// authenticated request's instructions. Here the methods are inlinable (specialized in the caller)
/// and a key's states can be kept and reused: copying a state is copy-on-write.
public struct HMACState<H: HashFunction>: @unchecked Sendable {
    // @unchecked: the two states are never mutated after `init`; every use mutates a copy, and
    // swift-crypto's copy-on-write then copies the digest context instead of sharing it.
    @usableFromInline let inner: H
    @usableFromInline let outer: H

    @inlinable public init(key: UnsafeRawBufferPointer) {
        let blockBytes = H.blockByteCount
        var padded = [UInt8](repeating: 0, count: blockBytes)
        if key.count > blockBytes {
            var h = H()
            h.update(bufferPointer: key)
            h.finalize().withUnsafeBytes { d in for i in 0 ..< min(d.count, blockBytes) { padded[i] = d[i] } }
        } else {
            for i in 0 ..< key.count { padded[i] = key[i] }
        }
        var i = H()
        var o = H()
        padded.withUnsafeMutableBytes { p in
            for j in 0 ..< blockBytes { p[j] ^= 0x36 }
            i.update(bufferPointer: UnsafeRawBufferPointer(p))
            for j in 0 ..< blockBytes { p[j] ^= 0x36 ^ 0x5C }
            o.update(bufferPointer: UnsafeRawBufferPointer(p))
        }
        inner = i
        outer = o
    }

    @inlinable public init(key: [UInt8]) {
        self = key.withUnsafeBytes { Self(key: $0) }
    }

    /// The HMAC of the bytes `feed` passes to the inner hash.
    @inlinable public func authenticationCode(_ feed: (inout H) -> Void) -> H.Digest {
        var i = inner
        feed(&i)
        var o = outer
        i.finalize().withUnsafeBytes { o.update(bufferPointer: $0) }
        return o.finalize()
    }

    @inlinable public func authenticationCode(for data: UnsafeRawBufferPointer) -> H.Digest {
        authenticationCode { $0.update(bufferPointer: data) }
    }
}
