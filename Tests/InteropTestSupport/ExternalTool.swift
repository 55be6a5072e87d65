import Foundation

/// A program the interop tests need from the machine. A missing one is a test failure that
/// says how to install it, never a skipped test.
enum ExternalTool {
    struct Missing: Error, CustomStringConvertible {
        let name: String
        let hint: String
        var description: String {
            "\(name) was not found on PATH. \(hint) Run `make test` (or `.ci/run`), which installs what the interop tests need."
        }
    }

    static let coturnHint = "It comes with Debian's coturn package."

    /// The absolute path of `name` found on PATH (or in /usr/bin, /usr/local/bin).
    static func locate(_ name: String, hint: String = coturnHint) throws -> URL {
        if name.contains("/") {
            if FileManager.default.isExecutableFile(atPath: name) { return URL(fileURLWithPath: name) }
            throw Missing(name: name, hint: hint)
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let directories = path.split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
        for directory in directories where !directory.isEmpty {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw Missing(name: name, hint: hint)
    }

    /// The Python interpreter: $PYTHON (the Makefile exports the one it installed aioice for),
    /// else python3 on PATH.
    static func python() throws -> URL {
        let name = ProcessInfo.processInfo.environment["PYTHON"].flatMap { $0.isEmpty ? nil : $0 } ?? "python3"
        return try locate(name, hint: "The aioice client needs Python 3 with the aioice package.")
    }

    /// The aioice TURN client script (aioice_turn_client.py, beside this file), run with `python()`.
    static var aioiceClientScript: URL { supportFile("aioice_turn_client.py") }

    /// A file under Tests/InteropTestSupport, found from this source file's location.
    static func supportFile(_ name: String) -> URL {
        let thisFile: String = #filePath  // .../Tests/InteropTestSupport/ExternalTool.swift
        return URL(fileURLWithPath: thisFile).deletingLastPathComponent().appendingPathComponent(name)
    }
}
