import Foundation
@testable import InteropTestSupport

#if canImport(Glibc)
import Glibc
import Testing
#endif

/// One `scripts/netns-lab` lab for one test: namespace NAME-relay (interface NAMEr, 198.18.0.1,
/// 2001:db8::1) for the relay under test, namespace NAME-out (NAMEo, .2/.3, ::2/::3) for its
/// clients and peers. The name is unique to this test process and test, so parallel runs and
/// other helpers' labs do not collide. Deleted by `down()`, on deinit (a failed expectation or a
/// thrown error still releases the object), and at process exit for any lab still up (a test
/// that crashed the process does not leave namespaces behind).
final class NetnsLab: @unchecked Sendable {
    let name: String
    let relayNamespace: String
    let outNamespace: String
    let relayInterface: String
    let outInterface: String
    let relayIPv4: String
    let clientIPv4: String
    let peerIPv4: String
    let relayIPv6: String
    let clientIPv6: String
    let peerIPv6: String

    struct SetupFailed: Error, CustomStringConvertible {
        let output: String
        var description: String { "scripts/netns-lab up failed:\n\(output)" }
    }

    init() throws {
        // 1-8 letters/digits: "x", this process's PID in 5 base-36 digits (pid_max is at most
        // 2^22 < 36^5), a counter in 2: unique among the labs of every test process on the host.
        let serial = Self.serial.withLock { value -> Int in
            value += 1
            return value
        }
        name = "x" + Self.base36(Int(getpid()), width: 5) + Self.base36(serial % (36 * 36), width: 2)
        Self.register(name)
        let run = try ChildProcess.run(Self.script, ["up", name], name: "netns-lab", timeout: .seconds(60))
        guard run.status == 0 else {
            Self.deleteNamespaces(of: name)
            throw SetupFailed(output: run.output)
        }
        var variables: [String: String] = [:]
        for line in run.output.split(whereSeparator: \.isNewline) {
            guard line.hasPrefix("LAB_"), let equals = line.firstIndex(of: "=") else { continue }
            variables[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        func value(_ key: String) throws -> String {
            guard let value = variables[key] else { throw SetupFailed(output: "no \(key) in:\n\(run.output)") }
            return value
        }
        relayNamespace = try value("LAB_RELAY_NS")
        outNamespace = try value("LAB_OUT_NS")
        relayInterface = try value("LAB_RELAY_IF")
        outInterface = try value("LAB_OUT_IF")
        relayIPv4 = try value("LAB_RELAY_IP4")
        clientIPv4 = try value("LAB_CLIENT_IP4")
        peerIPv4 = try value("LAB_PEER_IP4")
        relayIPv6 = try value("LAB_RELAY_IP6")
        clientIPv6 = try value("LAB_CLIENT_IP6")
        peerIPv6 = try value("LAB_PEER_IP6")
    }

    deinit { down() }

    private static func base36(_ value: Int, width: Int) -> String {
        let digits = String(value, radix: 36)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    func down() {
        Self.deleteNamespaces(of: name)
        Self.labsUp.withLock { $0.remove(name) }
    }

    /// `body` with the calling thread in the clients' and peers' namespace (see NetworkNamespace).
    func inOut<T>(_ body: () throws -> T) throws -> T { try NetworkNamespace.run(in: outNamespace, body) }

    /// `body` with the calling thread in the relay's namespace.
    func inRelay<T>(_ body: () throws -> T) throws -> T { try NetworkNamespace.run(in: relayNamespace, body) }

    /// A program started with `ip netns exec NAMESPACE`: `ip` execs it after entering the
    /// namespace, so the child's PID is the program's own.
    /// `environment`: the child's whole environment (nil: the test's own).
    func process(in namespace: String, _ executable: URL, _ arguments: [String], name: String,
                 environment: [String: String]? = nil) throws -> ChildProcess {
        try ChildProcess(executable: try ExternalTool.locate("ip", hint: Self.iproute2Hint),
                         arguments: ["netns", "exec", namespace, executable.path] + arguments,
                         name: name, environment: environment)
    }

    /// Runs a program in `namespace` to completion within `timeout`.
    func run(in namespace: String, _ executable: URL, _ arguments: [String], name: String,
             timeout: Duration) throws -> (status: Int32?, output: String) {
        let child = try process(in: namespace, executable, arguments, name: name)
        let status = child.waitForExit(timeout: timeout)
        return (status, child.output)
    }

    static let iproute2Hint = "It comes with Debian's iproute2 package."

    /// Runs `ip` with `arguments` (from the host's namespace: `-n` names a lab's) and requires it
    /// to succeed.
    static func ip(_ arguments: [String]) throws {
        let ip = try ExternalTool.locate("ip", hint: iproute2Hint)
        let result = try ChildProcess.run(ip, arguments, name: "ip", timeout: .seconds(20))
        try #require(result.status == 0, "ip \(arguments.joined(separator: " ")): \(result.output)")
    }

    // MARK: - Clean-up of labs left up

    private static let serial = LockedValue(0)
    private static let labsUp = LockedValue(Set<String>())

    private static func register(_ name: String) {
        let first = labsUp.withLock { labs -> Bool in
            defer { labs.insert(name) }
            return !registeredExitHandler.withLock { registered in
                defer { registered = true }
                return registered
            }
        }
        if first {
            atexit {
                for name in NetnsLab.labsUp.withLock({ $0 }) { NetnsLab.deleteNamespaces(of: name) }
            }
        }
    }

    private static let registeredExitHandler = LockedValue(false)

    private static func deleteNamespaces(of name: String) {
        _ = try? ChildProcess.run(script, ["down", name], name: "netns-lab-down", timeout: .seconds(30))
    }

    /// scripts/netns-lab, found from this source file (Tests/XDPTests/NetnsLab.swift).
    static var script: URL {
        repositoryRoot.appendingPathComponent("scripts/netns-lab")
    }

    static var repositoryRoot: URL {
        let thisFile: String = #filePath
        return URL(fileURLWithPath: thisFile)
            .deletingLastPathComponent()  // XDPTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()
    }
}

extension Trait where Self == ConditionTrait {
    /// The lab's suites: root only, skipped with this reason otherwise.
    static var needsRootForLab: Self {
        .enabled(if: getuid() == 0, "needs root: it creates network namespaces and veth pairs (and attaches XDP)")
    }
}
