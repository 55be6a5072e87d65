import Foundation
import Glibc

/// The in-test portal: `phoenix_portal.py` (Python `websockets`, installed by
/// `scripts/install-deps test` and `.ci/run`) on 127.0.0.1, speaking the Phoenix channel protocol
/// (v2 JSON frames). It writes every connect request and frame it sees to a JSON-lines log that
/// the tests read back. The process stops by itself after `--lifetime` seconds and is killed
/// when this object goes away.
final class PhoenixPortal: @unchecked Sendable {
    enum Failure: Error, CustomStringConvertible {
        case missingDependency(String)
        case didNotStart(String)

        var description: String {
            switch self {
            case .missingDependency(let text), .didNotStart(let text): return text
            }
        }
    }

    let process = Process()
    let logURL: URL
    /// The portal's stdin: commands (`init`, `disconnect REASON`, `drop`, `stall`, `garbage KIND`), one a line.
    private let commands = Pipe()
    private(set) var port = 0

    static var python: String { ProcessInfo.processInfo.environment["PYTHON"] ?? "python3" }

    /// Starts the portal and waits (asynchronously, at most 20 s) until it listens. Throws, with
    /// the reason, when Python's `websockets` is missing: the portal tests fail then, they never
    /// pass without a portal.
    static func start(_ arguments: [String] = []) async throws -> PhoenixPortal {
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = [python, "-c", "import websockets.asyncio.server"]
        check.standardOutput = FileHandle.nullDevice
        check.standardError = FileHandle.nullDevice
        try check.run()
        check.waitUntilExit()
        guard check.terminationStatus == 0 else {
            throw Failure.missingDependency(
                "\(python) cannot import websockets.asyncio.server (websockets >= 13): run `scripts/install-deps test`")
        }
        let portal = try PhoenixPortal(arguments)
        let deadline = ContinuousClock.now + .seconds(20)
        while portal.port == 0 && ContinuousClock.now < deadline && portal.process.isRunning {
            portal.port = portal.events(kind: "listening").first?["port"] as? Int ?? 0
            if portal.port == 0 { try await Task.sleep(for: .milliseconds(20)) }
        }
        guard portal.port != 0 else { throw Failure.didNotStart("phoenix_portal.py did not report a listening port") }
        return portal
    }

    private init(_ arguments: [String]) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("phoenix_portal.py")
        logURL = FileManager.default.temporaryDirectory
            .appendingPathComponent("phoenix-portal-\(getpid())-\(UUID().uuidString.prefix(8)).jsonl")
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [Self.python, script.path, logURL.path, "--lifetime", "90"] + arguments
        process.standardInput = commands
        try process.run()
    }

    /// Tells the portal to act now: `init` (push init to every joined connection that has not had
    /// one), `disconnect token_expired`, `drop`, `stall` (keep every open connection but read and
    /// answer nothing on it), `garbage malformed|ignored|binary|oversize` (see phoenix_portal.py).
    /// The portal logs what it did ("init-sent", "stalled", "garbage-sent", ...).
    func send(_ command: String) {
        commands.fileHandleForWriting.write(Data((command + "\n").utf8))
    }

    deinit {
        try? commands.fileHandleForWriting.close()
        stopChild(process, removing: logURL)
    }

    var events: [[String: Any]] {
        guard let text = try? String(contentsOf: logURL, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    func events(kind: String) -> [[String: Any]] { events.filter { $0["kind"] as? String == kind } }

    /// Frames the relay sent with this event, in order, with the portal's connection number (1, 2, ...).
    func frames(event: String) -> [(connection: Int, frame: [Any])] {
        events(kind: "frame").compactMap { entry in
            guard let frame = entry["frame"] as? [Any], frame.count == 5, frame[3] as? String == event,
                  let connection = entry["connection"] as? Int else { return nil }
            return (connection, frame)
        }
    }

    /// The payload object of a frame (its fifth element).
    static func payload(_ frame: [Any]) -> [String: Any]? { frame.count == 5 ? frame[4] as? [String: Any] : nil }
}

/// Re-checks `condition` every 20 ms, sleeping asynchronously, until it holds or `timeout` passes.
func eventually(_ timeout: Duration = .seconds(10), _ condition: () throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try condition()
}

/// Kills a child process the test started (by its pid) if it still runs, reaps it, and removes its log.
func stopChild(_ process: Process, removing log: URL) {
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    try? FileManager.default.removeItem(at: log)
}
