import RelayCore

/// How the load generator authenticates: a TURN REST shared secret (time-limited usernames,
/// password = base64(HMAC-SHA1(secret, username))) or one static user.
public enum CredentialSource: Sendable, Equatable {
    case restSecret(String)
    case user(name: String, password: String)

    /// Username and password for allocation `index`.
    public func credentials(index: Int, nowUnixSeconds: UInt64, ttlSeconds: UInt64 = 86_400) -> (username: String, password: String) {
        switch self {
        case .user(let name, let password):
            return (name, password)
        case .restSecret(let secret):
            return RESTCredential.make(secret: secret, ttlSeconds: ttlSeconds, id: "bench\(index)", nowUnixSeconds: nowUnixSeconds)
        }
    }

    /// Parses "name:password".
    public static func parseUser(_ text: String) -> CredentialSource? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let name = String(text[..<colon]), password = String(text[text.index(after: colon)...])
        guard !name.isEmpty else { return nil }
        return .user(name: name, password: password)
    }
}
