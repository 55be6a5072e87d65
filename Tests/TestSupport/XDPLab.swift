import Foundation
import Glibc

/// The compiled XDP program (.build-bpf/turn_router.bpf.o, built by scripts/build-bpf when
/// missing), or nil when it cannot be built here (no clang with the BPF target, no libbpf-dev).
public enum XDPTestObject {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    public static func path() -> String? {
        let object = root.appendingPathComponent(".build-bpf/turn_router.bpf.o").path
        if access(object, R_OK) == 0 && access(root.appendingPathComponent(".build-bpf/xdp_pass.bpf.o").path, R_OK) == 0 {
            return object
        }
        guard XDPLab.run(root.appendingPathComponent("scripts/build-bpf").path, []) == 0 else { return nil }
        return access(object, R_OK) == 0 ? object : nil
    }
}

/// The two-namespace lab of scripts/netns-lab (root only): the relay's namespace `NAME-relay`
/// with `NAMEr` (198.18.0.1, 2001:db8::1), the clients' and peers' `NAME-out` with `NAMEo`
/// (198.18.0.2/.3, 2001:db8::2/::3), a veth pair between them. Deleted by `down()`.
public final class XDPLab: Sendable {
    public let name: String
    public var relayNamespace: String { "\(name)-relay" }
    public var outNamespace: String { "\(name)-out" }
    public var relayInterface: String { "\(name)r" }
    public var outInterface: String { "\(name)o" }

    /// Creates the lab named `prefix` plus random digits (8 characters at most); nil when it
    /// cannot be made (the script's output is in `failure`).
    public init(prefix: String) throws {
        name = prefix + String(UInt32.random(in: 0...UInt32.max) % 10_000)
        let status = Self.run(XDPTestObject.root.appendingPathComponent("scripts/netns-lab").path, ["up", name])
        guard status == 0 else { throw LabError(text: "scripts/netns-lab up \(name) failed (status \(status))") }
    }

    public struct LabError: Error, CustomStringConvertible {
        public var text: String
        public var description: String { text }
        public init(text: String) { self.text = text }
    }

    public func down() {
        _ = Self.run(XDPTestObject.root.appendingPathComponent("scripts/netns-lab").path, ["down", name])
    }

    /// Runs `ip` with `arguments` (e.g. `-n`, a namespace of this lab, `link`, ...); its status.
    @discardableResult
    public func ip(_ arguments: String...) -> Int32 {
        Self.run("/usr/bin/env", ["ip"] + arguments)
    }

    /// Runs `body` on a thread of its own that has entered the namespace `namespace` (sockets it
    /// makes stay there; interface names and indexes are that namespace's).
    public func run<T: Sendable>(in namespace: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let result = Result<T, any Error>.Box()
        let thread = Thread {
            let fd = open("/var/run/netns/\(namespace)", O_RDONLY)
            guard fd >= 0, XDPLab.setns(fd, 0x4000_0000 /* CLONE_NEWNET */) == 0 else {
                result.set(.failure(LabError(text: "cannot enter namespace \(namespace): \(String(cString: strerror(errno)))")))
                return
            }
            close(fd)
            result.set(Result { try body() })
        }
        thread.start()
        return try result.wait().get()
    }

    /// glibc's setns(2), which Swift's Glibc module leaves out (it is a _GNU_SOURCE declaration).
    static let setns: @convention(c) (Int32, Int32) -> Int32 = {
        guard let symbol = dlsym(nil, "setns") else { fatalError("no setns in libc") }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()

    @discardableResult
    static func run(_ executable: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = XDPTestObject.root
        process.standardOutput = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

extension Result {
    /// One result handed from a thread to a waiter.
    final class Box: @unchecked Sendable {
        // @unchecked: `value` is only touched with `condition` locked.
        private let condition = NSCondition()
        private var value: Result?

        func set(_ v: Result) {
            condition.lock()
            value = v
            condition.signal()
            condition.unlock()
        }

        func wait() -> Result {
            condition.lock()
            defer { condition.unlock() }
            while value == nil { condition.wait() }
            return value!
        }
    }
}
