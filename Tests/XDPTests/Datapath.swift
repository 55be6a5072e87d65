import Foundation
@testable import InteropTestSupport

/// Which path the relay under test relays ChannelData on, from the environment:
///
/// - `XDP_E2E_DATAPATH=xdp` (the default): `--xdp-interface NAMEr` (`--xdp-mode` from
///   `XDP_E2E_MODE`, native unless it says `generic`); the `datapath="xdp"` counters must carry
///   the ChannelData, the `userspace` ones the rest (STUN, indications).
/// - `XDP_E2E_DATAPATH=userspace`: no --xdp flags; everything is relayed by the io_uring path and
///   the `datapath="userspace"` counters must carry all of it.
enum Datapath: Equatable, CustomStringConvertible, Sendable {
    case userspace
    case xdp(mode: String)

    var description: String {
        switch self {
        case .userspace: "userspace"
        case .xdp(let mode): "xdp \(mode)"
        }
    }

    var isXDP: Bool { if case .xdp = self { true } else { false } }

    struct Unsupported: Error, CustomStringConvertible {
        let description: String
    }

    /// The selected datapath, or an error naming what is wrong with the environment.
    static let selected: Result<Datapath, Unsupported> = {
        let environment = ProcessInfo.processInfo.environment
        let mode = environment["XDP_E2E_MODE"].flatMap { $0.isEmpty ? nil : $0 } ?? "native"
        guard mode == "native" || mode == "generic" else {
            return .failure(Unsupported(description: "XDP_E2E_MODE=\(mode): expected native or generic"))
        }
        switch environment["XDP_E2E_DATAPATH"] ?? "" {
        case "userspace":
            return .success(.userspace)
        case "xdp", "":
            guard binaryHasXDPFlags else {
                return .failure(Unsupported(description:
                    "this turn-relay's `serve --help` has no --xdp-interface (set XDP_E2E_DATAPATH=userspace to test without XDP)"))
            }
            return .success(.xdp(mode: mode))
        case let other:
            return .failure(Unsupported(description: "XDP_E2E_DATAPATH=\(other): expected userspace or xdp"))
        }
    }()

    /// `binaryHasXDPFlags`, printing that `suite` is skipped when it is false.
    static func hasXDPFlags(elseSkipping suite: String) -> Bool {
        if !binaryHasXDPFlags { print("\(suite): skipped: this turn-relay has no XDP flags") }
        return binaryHasXDPFlags
    }

    /// Whether the turn-relay binary under test knows --xdp-interface.
    static let binaryHasXDPFlags: Bool = {
        guard let binary = try? TurnServerUnderTest.turnRelayBinary(),
              let help = try? ChildProcess.run(binary, ["serve", "--help"], name: "turn-relay-help",
                                               timeout: .seconds(30))
        else { return false }
        return help.output.contains("--xdp-interface")
    }()
}
