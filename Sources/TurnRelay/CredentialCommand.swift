import ArgumentParser
import Glibc
import RelayCore

/// `turn-relay credential`: a TURN REST API (time-limited) username and password for a secret.
struct CredentialCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credential",
        abstract: "Print a time-limited TURN username and password (TURN REST API scheme)."
    )

    @Option(help: "The shared secret the relay was started with (--auth-secret). [env: AUTH_SECRET]")
    var secret: String?

    @Option(help: "Seconds the credential stays valid. [env: CREDENTIAL_TTL]")
    var ttl: UInt64?

    @Option(help: "An optional user id appended to the username. [env: CREDENTIAL_ID]")
    var id: String?

    func run() throws {
        guard let secret = secret ?? Environment.list("AUTH_SECRET").first else {
            throw ValidationError("--secret (or AUTH_SECRET) is required")
        }
        let ttl = try ttl ?? Environment.value("CREDENTIAL_TTL", as: UInt64.self) ?? 86400
        let id = id ?? Environment.string("CREDENTIAL_ID")
        let now = UInt64(max(0, time(nil)))
        let credential = RESTCredential.make(secret: secret, ttlSeconds: ttl, id: id, nowUnixSeconds: now)
        print("username: \(credential.username)")
        print("password: \(credential.password)")
    }
}
