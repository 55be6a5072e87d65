import Glibc
import ArgumentParser
import RelayPortal

/// The portal connection (study §4): on when a token is given. The relay then generates a random
/// stamp secret, joins the portal's `relay` topic with it, and accepts Firezone credentials made
/// with that secret — but only once the portal has sent `init`: until then the workers run with
/// no credentials at all, so every Allocate is refused (401) and nothing is relayed.
struct PortalSettings {
    var token: String
    var url: String
    var stampSecret: String
    var configuration: PortalConfiguration

    /// The portal token from `--token` or FIREZONE_TOKEN, with surrounding whitespace (a trailing
    /// newline from a secrets file, say) removed; nil when none is set.
    static func token(_ o: ServeCommand) throws -> String? {
        guard let raw = o.token ?? Environment.string("FIREZONE_TOKEN") else { return nil }
        let token = raw.trimmingWhitespaceAndNewlines()
        guard !token.isEmpty else { throw ValidationError("--token (FIREZONE_TOKEN) is empty") }
        return token
    }

    /// The longest heartbeat interval accepted. The portal closes a relay socket that has sent
    /// nothing for 41 s (`elixir/lib/portal_api/endpoint.ex`: `socket "/relay"`,
    /// `timeout: :timer.seconds(41)`); heartbeats at most 30 s apart leave room for one that is late.
    static let maxHeartbeatMilliseconds = 30_000

    /// nil when no token is configured.
    init?(_ o: ServeCommand, publicIPv4: String?, publicIPv6: String?, listenPort: UInt16) throws {
        guard let token = try Self.token(o) else { return nil }
        guard let api = o.apiUrl ?? Environment.string("FIREZONE_API_URL") else {
            throw ValidationError("--token (FIREZONE_TOKEN) needs --api-url (FIREZONE_API_URL)")
        }
        let name = o.name ?? Environment.string("FIREZONE_NAME") ?? Self.hostname()
        do throws(PortalLoginURL.Failure) {
            url = try PortalLoginURL(apiURL: api, name: name, publicIPv4: publicIPv4, publicIPv6: publicIPv6,
                                     listenPort: listenPort).build()
        } catch {
            throw ValidationError("--api-url \(api): \(error)")
        }
        self.token = token
        stampSecret = makeStampSecret()
        configuration = PortalConfiguration()
        if let ms = try o.portalHeartbeatMs ?? Environment.value("PORTAL_HEARTBEAT_MS", as: Int.self) {
            guard ms >= 10, ms <= Self.maxHeartbeatMilliseconds else {
                throw ValidationError("--portal-heartbeat-ms must be between 10 and \(Self.maxHeartbeatMilliseconds): the portal drops a relay socket idle for 41 s")
            }
            configuration.heartbeatInterval = .milliseconds(ms)
        }
        if let seconds = try o.portalMaxElapsed ?? Environment.value("PORTAL_MAX_ELAPSED", as: Int.self) {
            guard seconds >= 1 else { throw ValidationError("--portal-max-elapsed must be at least 1") }
            configuration.maxElapsed = .seconds(seconds)
        }
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "turn-relay" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "turn-relay" : name
    }
}

extension StringProtocol {
    func trimmingWhitespaceAndNewlines() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
