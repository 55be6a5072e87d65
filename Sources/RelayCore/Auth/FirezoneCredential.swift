import Crypto

/// Firezone's relay credentials (firezone-relay-study §4): the portal issues
/// `username = "<expiry>:<salt>"` and `password = base64_nopad(sha256("<expiry>:<secret>:<salt>"))`,
/// and the relay recomputes the password from the username and its secret.
public enum FirezoneCredential {
    public static func password(expiry: UInt64, secret: String, salt: String) -> String {
        let digest = SHA256.hash(data: Array("\(expiry):\(secret):\(salt)".utf8))
        return Base64.encode(Array(digest), padded: false)
    }
}
