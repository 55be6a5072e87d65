/// Where passwords come from (RFC 8489 §9.2 long-term credentials). All three sources may be
/// configured at once; the server derives the key `MD5(username ":" realm ":" password)` (or
/// SHA-256) from each candidate and accepts the request if one of them verifies its
/// MESSAGE-INTEGRITY.
public struct CredentialStore: Sendable {
    /// username → password.
    public var staticUsers: [String: String]
    /// TURN REST API shared secrets. Several are accepted at once so a secret can be rotated:
    /// add the new one, let credentials made with the old one expire, remove the old one.
    public var restSecrets: [String]
    /// Firezone stamp secrets.
    public var firezoneSecrets: [String]

    public init(staticUsers: [String: String] = [:], restSecrets: [String] = [], firezoneSecrets: [String] = []) {
        self.staticUsers = staticUsers
        self.restSecrets = restSecrets
        self.firezoneSecrets = firezoneSecrets
    }

    public enum Lookup: Equatable, Sendable {
        /// Candidate passwords to try in order: the static password, or one per REST secret
        /// (in `restSecrets` order) followed by one per Firezone secret.
        case passwords([String])
        /// A well-formed time-limited username whose expiry lies in the past: answer 401.
        case expired
        /// No source knows this username.
        case unknown
    }

    /// The candidate passwords for `username`.
    ///
    /// A static user wins over the time-limited schemes when its name matches. A time-limited
    /// username `<expiry>[:<id>]` is expired when `expiry < nowUnixSeconds`, so it is still valid
    /// during the second it names. Firezone needs the `:<salt>` part; a REST username may omit
    /// the id. Malformed usernames (non-numeric or overflowing expiry, leading zeros, empty) and
    /// usernames no configured source could have issued are `.unknown`.
    public func lookup(username: String, nowUnixSeconds: UInt64) -> Lookup {
        guard !username.isEmpty else { return .unknown }
        if let password = staticUsers[username] { return .passwords([password]) }
        guard !restSecrets.isEmpty || !firezoneSecrets.isEmpty,
              let parsed = TimeLimitedUsername(username) else { return .unknown }

        var candidates: [String] = []
        candidates.reserveCapacity(restSecrets.count + firezoneSecrets.count)
        for secret in restSecrets {
            candidates.append(RESTCredential.password(secret: secret, username: username))
        }
        if let salt = parsed.suffix {
            for secret in firezoneSecrets {
                candidates.append(FirezoneCredential.password(expiry: parsed.expiry, secret: secret, salt: String(salt)))
            }
        }
        guard !candidates.isEmpty else { return .unknown }
        if parsed.expiry < nowUnixSeconds { return .expired }
        return .passwords(candidates)
    }
}
