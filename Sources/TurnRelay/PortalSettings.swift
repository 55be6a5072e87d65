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

    /// nil when no token is configured.
    init?(_ o: ServeCommand, publicIPv4: String?, publicIPv6: String?, listenPort: UInt16) throws {
        guard let token = o.token ?? Environment.string("FIREZONE_TOKEN") else { return nil }
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
            guard ms >= 10 else { throw ValidationError("--portal-heartbeat-ms must be at least 10") }
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
