import Foundation
import Glibc

/// Runs the lab's helper commands (ip, bpftool, nsenter, sysctl, scripts/netns-lab) and collects
/// their output. Every command is waited for with a time limit.
public enum LabShell {
    public struct Output: Sendable {
        public var status: Int32
        public var output: String
    }

    public struct Failure: Error, CustomStringConvertible {
        public var command: String
        public var output: String
        public var description: String { "\(command): \(output.trimmingCharacters(in: .whitespacesAndNewlines))" }
    }

    /// Runs `executable` with `arguments`; stdout and stderr together. Killed (SIGKILL, by its
    /// PID) after `seconds`.
    public static func run(_ executable: String, _ arguments: [String], seconds: Double = 30) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let pid = p.processIdentifier
        let timer = DispatchWorkItem { if p.isRunning { kill(pid, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: timer)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        timer.cancel()
        return Output(status: p.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }

    /// Runs and throws unless the status is 0; returns the output.
    @discardableResult
    public static func check(_ executable: String, _ arguments: [String], seconds: Double = 30) throws -> String {
        let o = try run(executable, arguments, seconds: seconds)
        guard o.status == 0 else { throw Failure(command: ([executable] + arguments).joined(separator: " "), output: o.output) }
        return o.output
    }

    /// `executable` on PATH or in the usual system directories.
    public static func which(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
