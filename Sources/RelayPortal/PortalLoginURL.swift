import Foundation

/// The portal's relay WebSocket address (study §4, `LoginUrl::relay`):
/// `<api>/relay/websocket?name=<name>&ipv4=<public v4>&ipv6=<public v6>&port=<listen port>`,
/// plus `vsn=2.0.0`, which asks a Phoenix endpoint for the v2 JSON array serializer this
/// client speaks. The relay endpoint has no API version.
public struct PortalLoginURL: Sendable, Equatable {
    public var apiURL: String
    public var name: String
    public var publicIPv4: String?
    public var publicIPv6: String?
    public var listenPort: UInt16

    public init(apiURL: String, name: String, publicIPv4: String?, publicIPv6: String?, listenPort: UInt16) {
        self.apiURL = apiURL
        self.name = name
        self.publicIPv4 = publicIPv4
        self.publicIPv6 = publicIPv6
        self.listenPort = listenPort
    }

    public enum Failure: Error, Equatable {
        case invalidAPIURL(String)
        case noPublicAddress
    }

    /// The full URL string. `http`/`https` API URLs become `ws`/`wss`.
    public func build() throws(Failure) -> String {
        guard publicIPv4 != nil || publicIPv6 != nil else { throw .noPublicAddress }
        guard var components = URLComponents(string: apiURL), let scheme = components.scheme?.lowercased(),
              components.host != nil
        else { throw .invalidAPIURL(apiURL) }
        switch scheme {
        case "ws", "wss": break
        case "http": components.scheme = "ws"
        case "https": components.scheme = "wss"
        default: throw .invalidAPIURL(apiURL)
        }
        var path = components.path
        while path.hasSuffix("/") { path.removeLast() }
        components.path = path + "/relay/websocket"
        var items = [URLQueryItem(name: "name", value: name)]
        if let publicIPv4 { items.append(URLQueryItem(name: "ipv4", value: publicIPv4)) }
        if let publicIPv6 { items.append(URLQueryItem(name: "ipv6", value: publicIPv6)) }
        items.append(URLQueryItem(name: "port", value: String(listenPort)))
        items.append(URLQueryItem(name: "vsn", value: "2.0.0"))
        components.queryItems = items
        guard let url = components.string else { throw .invalidAPIURL(apiURL) }
        return url
    }
}

/// A random stamp secret generated at start: 32 bytes from the system generator, hex.
public func makeStampSecret() -> String {
    var generator = SystemRandomNumberGenerator()
    var text = ""
    for _ in 0..<32 {
        let byte = UInt8.random(in: 0...255, using: &generator)
        text += String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
    }
    return text
}
