import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A process started by a test. Its standard output and standard error go to one log file,
/// every wait is bounded by a deadline, and a process still running at the deadline (or when
/// the object goes away) is killed by its PID.
final class ChildProcess: @unchecked Sendable {
    let name: String
    let logURL: URL
    private let process: Process

    init(
        executable: URL,
        arguments: [String],
        name: String,
        environment: [String: String]? = nil
    ) throws {
        self.name = name
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("interop-\(getpid())", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        logURL = directory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8)).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let log = try FileHandle(forWritingTo: logURL)

        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()
    }

    deinit {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: logURL)
    }

    var pid: pid_t { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Everything the process wrote so far.
    var output: String {
        (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
    }

    /// The exit status once the process has exited by itself within `timeout`; nil when it had
    /// to be killed at the deadline.
    func waitForExit(timeout: Duration) -> Int32? {
        if waitUntilExited(deadline: .now + timeout) {
            return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
        }
        Glibc.kill(pid, SIGKILL)
        _ = waitUntilExited(deadline: .now + .seconds(5))
        return nil
    }

    /// SIGKILL, and wait for the process to be gone.
    func kill() {
        guard process.isRunning else { return }
        Glibc.kill(pid, SIGKILL)
        _ = waitUntilExited(deadline: .now + .seconds(5))
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns the exit status when it
    /// exited by itself within `grace` (nil when it had to be killed or had already exited).
    @discardableResult
    func stop(grace: Duration = .seconds(5)) -> Int32? {
        guard process.isRunning else { return nil }
        Glibc.kill(pid, SIGTERM)
        if waitUntilExited(deadline: .now + grace) {
            return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
        }
        Glibc.kill(pid, SIGKILL)
        _ = waitUntilExited(deadline: .now + .seconds(5))
        return nil
    }

    private func waitUntilExited(deadline: ContinuousClock.Instant) -> Bool {
        while process.isRunning {
            if ContinuousClock.now >= deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// Runs a program to completion within `timeout` and returns its exit status (nil when it
    /// was killed at the deadline) and its combined output.
    static func run(
        _ executable: URL,
        _ arguments: [String],
        name: String,
        timeout: Duration
    ) throws -> (status: Int32?, output: String) {
        let child = try ChildProcess(executable: executable, arguments: arguments, name: name)
        let status = child.waitForExit(timeout: timeout)
        return (status, child.output)
    }
}

extension ContinuousClock.Instant {
    static var now: ContinuousClock.Instant { ContinuousClock.now }
}
