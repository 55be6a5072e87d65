import Crypto

/// Time-limited credentials of the TURN REST API (draft-uberti-behave-turn-rest-00 §2.2):
/// "username: the TURN username to use, which is a colon-delimited combination of the
/// expiration timestamp and the username parameter from the request", and
/// "password: the TURN password to use; this value is computed from the a secret key shared
/// with the TURN server and the returned username value, by performing
/// base64(hmac(secret key, username))" with HMAC-SHA1.
public enum RESTCredential {
    /// A credential valid until `nowUnixSeconds + ttlSeconds` (saturating), for the operator
    /// command `turn-relay credential`. An empty `id` is treated like nil.
    public static func make(secret: String, ttlSeconds: UInt64, id: String?, nowUnixSeconds: UInt64) -> (username: String, password: String) {
        let (sum, overflow) = nowUnixSeconds.addingReportingOverflow(ttlSeconds)
        let expiry = overflow ? UInt64.max : sum
        var username = String(expiry)
        if let id, !id.isEmpty { username += ":" + id }
        return (username, password(secret: secret, username: username))
    }

    /// base64(HMAC-SHA1(secret, username)), padded.
    public static func password(secret: String, username: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(username.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Base64.encode(Array(mac))
    }
}
