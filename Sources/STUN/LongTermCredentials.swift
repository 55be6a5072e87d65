import Crypto

/// The long-term credential key (RFC 8489 §9.2.2):
///
///     key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))
///     key = SHA-256(username ":" OpaqueString(realm) ":" OpaqueString(password))
///
/// The OpaqueString profile (RFC 8265, the successor of SASLprep) is NOT applied: the strings' UTF-8
/// bytes are used exactly as given, so callers must pass credentials already in their prepared
/// form (for ASCII credentials the two are the same).
public func longTermKey(username: String, realm: String, password: String, algorithm: PasswordAlgorithm) -> [UInt8] {
    let input = Array("\(username):\(realm):\(password)".utf8)
    switch algorithm {
    case .md5: return Array(Insecure.MD5.hash(data: input))
    case .sha256: return Array(SHA256.hash(data: input))
    }
}

/// USERHASH (RFC 8489 §14.4): "userhash = SHA-256(OpaqueString(username) ":" OpaqueString(realm))".
/// As with `longTermKey`, the strings are used as given, without OpaqueString processing.
public func userhash(username: String, realm: String) -> [UInt8] {
    Array(SHA256.hash(data: Array("\(username):\(realm)".utf8)))
}
