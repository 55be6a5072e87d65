import Glibc
import RelayCore

/// The reloadable part of the configuration, read from a small text file at start-up and again on
/// SIGHUP. One `key = value` per line; `#` starts a comment; keys may repeat:
///
/// ```
/// auth-secret = 3f9a...          # TURN REST API shared secret (newest first when rotating)
/// user = alice:correct-horse     # a static long-term user
/// firezone-secret = ...          # Firezone-style credential secret
/// allow-peer = 10.1.0.0/16       # peers allowed despite the default-deny ranges
/// deny-peer = 192.0.2.0/24       # peers refused in addition to them
/// ```
public struct CredentialsFile: Equatable, Sendable {
    public var restSecrets: [String] = []
    public var staticUsers: [String: String] = [:]
    public var firezoneSecrets: [String] = []
    public var allowPeers: [CIDR] = []
    public var denyPeers: [CIDR] = []

    public init() {}

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }

        public init(line: Int, message: String) {
            self.line = line
            self.message = message
        }
    }

    public static let maxBytes = 1 << 20

    public init(parsing text: String) throws(ParseError) {
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = raw
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.trimmingWhitespace()
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw ParseError(line: number + 1, message: "expected key = value")
            }
            let key = trimmed[..<equals].trimmingWhitespace()
            let value = trimmed[trimmed.index(after: equals)...].trimmingWhitespace()
            guard !value.isEmpty else { throw ParseError(line: number + 1, message: "\(key) has no value") }
            switch key {
            case "auth-secret": restSecrets.append(value)
            case "firezone-secret": firezoneSecrets.append(value)
            case "user":
                guard let colon = value.firstIndex(of: ":"), colon != value.startIndex else {
                    throw ParseError(line: number + 1, message: "user takes name:password")
                }
                staticUsers[String(value[..<colon])] = String(value[value.index(after: colon)...])
            case "allow-peer", "deny-peer":
                guard let cidr = CIDR(value) else {
                    throw ParseError(line: number + 1, message: "\(key) \(value) is not a CIDR")
                }
                if key == "allow-peer" { allowPeers.append(cidr) } else { denyPeers.append(cidr) }
            default:
                throw ParseError(line: number + 1, message: "unknown key \(key)")
            }
        }
    }

    /// Reads and parses `path` (at most `maxBytes`).
    public static func load(path: String) throws(ParseError) -> CredentialsFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ParseError(line: 0, message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ParseError(line: 0, message: "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            guard bytes.count <= maxBytes else { throw ParseError(line: 0, message: "\(path) is larger than 1 MiB") }
        }
        return try CredentialsFile(parsing: String(decoding: bytes, as: UTF8.self))
    }

    /// `base` with this file's entries added (file users override same-named base users).
    public func credentials(addingTo base: CredentialStore) -> CredentialStore {
        var users = base.staticUsers
        for (name, password) in staticUsers { users[name] = password }
        return CredentialStore(staticUsers: users, restSecrets: restSecrets + base.restSecrets,
                               firezoneSecrets: firezoneSecrets + base.firezoneSecrets)
    }

    public func peerPolicy(addingTo allow: [CIDR], deny: [CIDR]) -> PeerPolicy {
        PeerPolicy(allow: allow + allowPeers, deny: deny + denyPeers)
    }

    public var hasCredentials: Bool { !restSecrets.isEmpty || !staticUsers.isEmpty || !firezoneSecrets.isEmpty }
}

extension Substring {
    func trimmingWhitespace() -> String {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func trimmingWhitespace() -> String { self[...].trimmingWhitespace() }
}
