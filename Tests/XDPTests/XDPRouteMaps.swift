import Foundation
import Glibc
@testable import InteropTestSupport

/// The route maps of the XDP program attached to the lab's relay interface, read with bpftool:
/// `bpftool net show dev NAMEr` (in the relay's namespace) names the program, `bpftool prog show`
/// its maps, `bpftool map dump` their entries. Decoded by BPF/turn_router.h's layout:
/// tr_client_routes (key 24 bytes: client_ip[16], client_port, listener_port, channel; value
/// 40 bytes: relay_ip[16], peer_ip[16], relay_port, peer_port, ...) and tr_peer_routes (key
/// 40 bytes: peer_ip[16], relay_ip[16], peer_port, relay_port; value 40 bytes: listener_ip[16],
/// client_ip[16], listener_port, client_port, channel). Addresses are IPv4-mapped for IPv4,
/// ports and channel numbers in network order.
struct XDPRouteMaps {
    struct ClientRoute: CustomStringConvertible {
        var client: String
        var channel: UInt16
        var peer: String
        var description: String { "\(client) channel 0x\(String(channel, radix: 16)) → \(peer)" }
    }

    struct PeerRoute: CustomStringConvertible {
        var peer: String
        var relay: String
        var client: String
        var channel: UInt16
        var description: String { "\(peer) → \(relay) ⇒ \(client) channel 0x\(String(channel, radix: 16))" }
    }

    var clientRoutes: [ClientRoute] = []
    var peerRoutes: [PeerRoute] = []

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Whether any route (either map) leads to or comes from `peerIP` (textual, as in the lab).
    func mentions(peerIP: String) -> Bool {
        clientRoutes.contains { Self.ip(of: $0.peer) == peerIP } || peerRoutes.contains { Self.ip(of: $0.peer) == peerIP }
    }

    static func ip(of endpoint: String) -> String {
        if endpoint.hasPrefix("["), let close = endpoint.firstIndex(of: "]") {
            return String(endpoint[endpoint.index(after: endpoint.startIndex)..<close])
        }
        return String(endpoint.split(separator: ":").first ?? "")
    }

    /// Reads both maps of the program attached to `lab.relayInterface`.
    static func read(_ lab: NetnsLab) throws -> XDPRouteMaps {
        let bpftool = try ExternalTool.locate("bpftool", hint: "It comes with Debian's bpftool package.")
        let net = try lab.run(in: lab.relayNamespace, bpftool, ["-j", "net", "show", "dev", lab.relayInterface],
                              name: "bpftool", timeout: .seconds(20))
        guard net.status == 0, let programID = attachedProgramID(json(net.output)) else {
            throw Failure(description: "no XDP program on \(lab.relayInterface): bpftool net show said:\n\(net.output)")
        }
        let program = try ChildProcess.run(bpftool, ["-j", "prog", "show", "id", "\(programID)"], name: "bpftool",
                                           timeout: .seconds(20))
        guard let mapIDs = (json(program.output) as? [String: Any])?["map_ids"] as? [Int] else {
            throw Failure(description: "bpftool prog show id \(programID) named no maps:\n\(program.output)")
        }
        var maps = XDPRouteMaps()
        var found = Set<String>()
        for mapID in mapIDs {
            let show = try ChildProcess.run(bpftool, ["-j", "map", "show", "id", "\(mapID)"], name: "bpftool",
                                            timeout: .seconds(20))
            // Kernel map names are cut to 15 characters: "tr_client_route", "tr_peer_routes".
            guard let name = (json(show.output) as? [String: Any])?["name"] as? String,
                  name.hasPrefix("tr_client_rout") || name.hasPrefix("tr_peer_routes") else { continue }
            let dump = try ChildProcess.run(bpftool, ["-j", "map", "dump", "id", "\(mapID)"], name: "bpftool",
                                            timeout: .seconds(20))
            guard dump.status == 0, let entries = json(dump.output) as? [[String: Any]] else {
                throw Failure(description: "bpftool map dump id \(mapID) (\(name)) failed:\n\(dump.output)")
            }
            found.insert(name)
            for entry in entries {
                // bpftool walks the keys, then looks each one up: a route the relay deletes in
                // between (the expiry these tests wait for) comes back as its key with
                // `"value": {"error": "No such file or directory"}`. It is gone: skip it.
                if let failed = entry["value"] as? [String: Any], let error = failed["error"] as? String,
                   error.contains("No such file or directory") { continue }
                guard let key = bytes(entry["key"]), let value = bytes(entry["value"]) else {
                    throw Failure(description: "unreadable entry in \(name): \(entry)")
                }
                if name.hasPrefix("tr_client_rout") {
                    guard key.count == 24, value.count == 40 else { throw Failure(description: "\(name): sizes \(key.count)/\(value.count)") }
                    maps.clientRoutes.append(ClientRoute(
                        client: endpoint(key[0..<16], port: key[16..<18]), channel: be16(key[20..<22]),
                        peer: endpoint(value[16..<32], port: value[34..<36])))
                } else {
                    guard key.count == 40, value.count == 40 else { throw Failure(description: "\(name): sizes \(key.count)/\(value.count)") }
                    maps.peerRoutes.append(PeerRoute(
                        peer: endpoint(key[0..<16], port: key[32..<34]), relay: endpoint(key[16..<32], port: key[34..<36]),
                        client: endpoint(value[16..<32], port: value[34..<36]), channel: be16(value[36..<38])))
                }
            }
        }
        guard found.count == 2 else {
            throw Failure(description: "program \(programID) has maps \(mapIDs), found only \(found.sorted())")
        }
        return maps
    }

    /// The program ID in `bpftool -j net show dev IF`'s answer: `[{"xdp": [{"devname": ...,
    /// "id": N}]}]`, or with `"multi_attachments": [{"mode": ..., "id": N}]`.
    private static func attachedProgramID(_ value: Any?) -> Int? {
        guard let top = value as? [[String: Any]] else { return nil }
        for section in top {
            for attachment in section["xdp"] as? [[String: Any]] ?? [] {
                if let id = attachment["id"] as? Int { return id }
                if let multi = attachment["multi_attachments"] as? [[String: Any]], let id = multi.first?["id"] as? Int {
                    return id
                }
            }
        }
        return nil
    }

    private static func json(_ text: String) -> Any? {
        // bpftool may print warnings before the JSON on stderr (same log): start at the JSON.
        guard let start = text.firstIndex(where: { $0 == "[" || $0 == "{" }) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(text[start...].utf8))
    }

    private static func bytes(_ value: Any?) -> [UInt8]? {
        guard let strings = value as? [String] else { return nil }
        let decoded = strings.compactMap { UInt8($0.hasPrefix("0x") ? String($0.dropFirst(2)) : $0, radix: 16) }
        return decoded.count == strings.count ? decoded : nil
    }

    private static func be16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        UInt16(bytes[bytes.startIndex]) << 8 | UInt16(bytes[bytes.startIndex + 1])
    }

    /// "a.b.c.d:port" for an IPv4-mapped address, "[v6]:port" otherwise.
    private static func endpoint(_ address: ArraySlice<UInt8>, port: ArraySlice<UInt8>) -> String {
        let a = Array(address)
        let port = be16(port)
        if a[0..<10].allSatisfy({ $0 == 0 }), a[10] == 0xFF, a[11] == 0xFF {
            return "\(a[12]).\(a[13]).\(a[14]).\(a[15]):\(port)"
        }
        var storage = in6_addr()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: a) }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        inet_ntop(AF_INET6, &storage, &text, socklen_t(text.count))
        return "[\(String(cString: text))]:\(port)"
    }
}
