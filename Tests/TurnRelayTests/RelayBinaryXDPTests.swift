import Foundation
import Glibc
import RelayIO
import STUN
import Testing
import TestSupport
@testable import OperationsTestSupport

/// `--xdp-interface` never stops the relay: when the fast path cannot be attached the relay logs
/// exactly one warning naming the cause and the fix, and serves everything on the io_uring path.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryXDPTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    static var isRoot: Bool { geteuid() == 0 }

    /// Starts the binary with `extra` under `launcher`, waits for a Binding to be answered and for
    /// /readyz to report the fast path failed, and returns the log. Without a lab it listens on
    /// loopback; with one it runs in the lab's relay namespace (198.18.0.1) and is asked from the
    /// other namespace, so that nothing is ever attached to this host's own interfaces.
    static func serve(_ extra: [String], environment: [String: String] = [:], launcher: [String] = [],
                      in lab: XDPLab? = nil) throws -> String {
        let ip: IPAddress = lab == nil ? .v4(.loopback) : .v4(IPv4Address(198, 18, 0, 1))
        let port = lab == nil ? try ListenPortClaims.freePort() : 3478
        let health = TransportAddress(ip: ip, port: lab == nil ? port + 1 : 8080)
        let relay = try Relay(port: port, arguments: [
            "serve", "--listen-port", "\(port)", "--bind-ip4", "\(ip)", "--bind-ip6", "none",
            "--min-port", "50480", "--max-port", "50490", "--workers", "1",
            "--health-check-addr", "\(health)", "--metrics-addr", "none", "--drain-seconds", "0"] + extra,
            environment: environment,
            launcher: lab.map { ["/usr/sbin/ip", "netns", "exec", $0.relayNamespace] + (launcher.isEmpty ? [] : launcher) } ?? launcher)
        let listener = TransportAddress(ip: ip, port: port)
        let clientIP: IPAddress = lab == nil ? .v4(.loopback) : .v4(IPv4Address(198, 18, 0, 2))
        let ask = { @Sendable () throws -> (answered: Bool, ready: String) in
            let client = try BlockingUDPSocket(bindTo: TransportAddress(ip: clientIP, port: 0))
            // RFC 8489 §6.3.1: a Binding request is answered with a success response.
            let answered = poll(seconds: 10) {
                client.send(CoreDriver.message(.binding, id: 1), to: listener)
                guard let reply = client.receive(timeoutMilliseconds: 300) else { return false }
                return CoreDriver.outcome(reply.bytes).success
            }
            // The operations endpoints start just after the sockets, so a Binding can be answered
            // a moment before /readyz listens: ask until it does.
            var ready = ""
            _ = poll(seconds: 10) {
                ready = (try? HTTPTestClient.get(health, "/readyz").body) ?? ""
                return !ready.isEmpty
            }
            return (answered, ready)
        }
        let (answered, ready) = try lab.map { try $0.run(in: $0.outNamespace, ask) } ?? ask()
        #expect(answered, "no Binding answer:\n\(relay.log)")
        // /readyz carries the fast path's state.
        #expect(ready.contains("xdp: failed ("), "\(ready)\n\(relay.log)")
        return relay.log
    }

    static func warnings(_ log: String) -> Int { log.components(separatedBy: "XDP fast path off:").count - 1 }

    @Test func unknownInterfaceWarnsOnceAndServes() throws {
        let log = try Self.serve(["--xdp-interface", "nosuchif0"])
        #expect(Self.warnings(log) == 1, "\(log)")
        #expect(log.contains("no network interface named nosuchif0"), "\(log)")
        #expect(log.contains("--xdp-interface"), "\(log)")
    }

    @Test func missingObjectWarnsOnceAndServes() throws {
        let log = try Self.serve(["--xdp-interface", "lo", "--xdp-object", "/nonexistent/turn_router.bpf.o"])
        #expect(Self.warnings(log) == 1, "\(log)")
        #expect(log.contains("cannot read the XDP program /nonexistent/turn_router.bpf.o"), "\(log)")
        #expect(log.contains("scripts/build-bpf"), "\(log)")
    }

    /// A seccomp filter refusing bpf() (as container runtimes' and systemd's default filters do),
    /// the capabilities all there: the warning names the filter as what to fix.
    @Test(.enabled(if: isRoot, "needs root: the object is loaded for real when bpf() is allowed"))
    func seccompRefusingBPFWarnsOnceAndServes() throws {
        let object = try #require(XDPTestObject.path(), "the BPF object could not be built (clang, libbpf-dev)")
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("deny_bpf.c").path
        let launcher = FileManager.default.temporaryDirectory.appendingPathComponent("deny_bpf-\(getpid())").path
        defer { unlink(launcher) }
        let gcc = Process()
        gcc.executableURL = URL(fileURLWithPath: "/usr/bin/gcc")
        gcc.arguments = ["-O2", "-Wall", "-Werror", source, "-o", launcher]
        try gcc.run()
        gcc.waitUntilExit()
        try #require(gcc.terminationStatus == 0, "gcc could not build \(source)")
        let lab = try XDPLab(prefix: "shp")
        defer { lab.down() }
        let log = try Self.serve(["--xdp-interface", lab.relayInterface, "--xdp-object", object], launcher: [launcher], in: lab)
        #expect(Self.warnings(log) == 1, "\(log)")
        #expect(log.contains("the kernel refused bpf()"), "\(log)")
        #expect(log.contains("SystemCallFilter=bpf"), "\(log)")
        #expect(!log.contains("lacks CAP_"), "\(log)")
    }

    /// The environment names: XDP_INTERFACE (comma-separated) wins over Firezone's
    /// EBPF_OFFLOADING; Firezone's EBPF_ATTACH_MODE takes `driver` and `generic`.
    @Test func environmentNamesTheInterfacesAndTheMode() throws {
        let log = try Self.serve([], environment: ["XDP_INTERFACE": "nosuchif1, nosuchif2", "EBPF_OFFLOADING": "nosuchif9",
                                                   "EBPF_ATTACH_MODE": "driver"])
        #expect(Self.warnings(log) == 1, "\(log)")
        #expect(log.contains("no network interface named nosuchif1"), "\(log)")
        #expect(!log.contains("nosuchif9"), "\(log)")
    }

    @Test func anUnknownModeIsRefused() async throws {
        let (status, output) = try await RelayBinaryFirezoneTests.refusedStart(["--xdp-interface", "lo"], token: nil,
                                                                                environment: ["EBPF_ATTACH_MODE": "offload"])
        #expect(status != 0)
        #expect(output.contains("--xdp-mode offload is not one of native, generic"), "\(output)")
    }

    /// `--xdp-next-hop`: only auto, fib and swap; swap (back out of the interface the frame came
    /// in by) cannot serve several interfaces, where a route may leave by another one.
    @Test func anUnknownNextHopAndSwapOnSeveralInterfacesAreRefused() async throws {
        let (status, output) = try await RelayBinaryFirezoneTests.refusedStart(["--xdp-interface", "lo"], token: nil,
                                                                                environment: ["XDP_NEXT_HOP": "arp"])
        #expect(status != 0)
        #expect(output.contains("--xdp-next-hop arp is not one of auto, fib, swap"), "\(output)")
        let (status2, output2) = try await RelayBinaryFirezoneTests.refusedStart(
            ["--xdp-interface", "lo", "--xdp-interface", "nosuchif1", "--xdp-next-hop", "swap"], token: nil, environment: [:])
        #expect(status2 != 0)
        #expect(output2.contains("--xdp-next-hop swap sends every packet back out of the interface it came in by; with 2 XDP interfaces use fib"),
                "\(output2)")
    }

    /// bpf() refused: root without CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN (dropped
    /// from the bounding set by setpriv, so the relay's exec keeps none of them), and a non-root
    /// uid (65534). The object must exist, so the refusal is the kernel's.
    @Test(.enabled(if: isRoot, "needs root to drop capabilities or switch uid"),
          arguments: [["--bounding-set", "-bpf,-sys_admin,-net_admin"],
                      ["--reuid", "65534", "--regid", "65534", "--clear-groups"]])
    func bpfRefusedWarnsOnceAndServes(privileges: [String]) throws {
        let object = try #require(XDPTestObject.path(), "the BPF object could not be built (clang, libbpf-dev)")
        let lab = try XDPLab(prefix: "shp")
        defer { lab.down() }
        let log = try Self.serve(["--xdp-interface", lab.relayInterface, "--xdp-object", object],
                                 launcher: ["/usr/bin/setpriv"] + privileges + ["--"], in: lab)
        #expect(Self.warnings(log) == 1, "\(log)")
        #expect(log.contains("the kernel refused bpf()"), "\(log)")
        #expect(log.contains("CAP_BPF"), "\(log)")
    }
}

/// The fast path attached by the binary itself, in a lab namespace, as a process holding only
/// CAP_BPF, CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (what packaging/turn-relay.service grants; no
/// CAP_PERFMON, no CAP_SYS_ADMIN): attached at start, detached on SIGTERM, and detached when the
/// process is killed (the BPF links die with it), so a crash never leaves the program attached.
@Suite(.serialized, .dedicatedThread) struct RelayBinaryXDPAttachTests {
    typealias Relay = RelayBinaryPortalTests.Relay

    @Test(.enabled(if: RelayBinaryXDPTests.isRoot, "XDP needs root (network namespaces, CAP_BPF, CAP_NET_ADMIN)"))
    func attachesWithOnlyTheUnitsCapabilitiesAndDetachesOnStopAndCrash() throws {
        let object = try #require(XDPTestObject.path(), "the BPF object could not be built (clang, libbpf-dev)")
        let lab = try XDPLab(prefix: "shb")
        defer { lab.down() }
        let interface = lab.relayInterface
        func attachedID() throws -> UInt32? {
            try lab.run(in: lab.relayNamespace) { XDPInterfaces.attachedProgramID(interface) }
        }
        func start() throws -> Relay {
            try Relay(port: 3478, arguments: [
                "serve", "--listen-port", "3478", "--bind-ip4", "198.18.0.1", "--bind-ip6", "none",
                "--min-port", "50000", "--max-port", "50100", "--workers", "1", "--drain-seconds", "0",
                "--health-check-addr", "198.18.0.1:8080", "--metrics-addr", "198.18.0.1:9464", "--allow-peer", "198.18.0.0/15",
                "--xdp-interface", interface, "--xdp-object", object],
                environment: [:],
                launcher: ["/usr/sbin/ip", "netns", "exec", lab.relayNamespace,
                           "/usr/bin/setpriv", "--bounding-set", "-all,+bpf,+net_admin,+net_bind_service", "--"])
        }
        for crash in [false, true] {
            let relay = try start()
            #expect(poll(seconds: 15) { relay.log.contains("XDP fast path attached on \(interface) (native mode)") },
                     "\(relay.log)")
            #expect(!relay.log.contains("XDP fast path off"), "\(relay.log)")
            #expect(try attachedID().map { $0 != 0 } == true)
            // /readyz and /metrics say so (asked from the clients' namespace).
            let (ready, attachedGauge) = try lab.run(in: lab.outNamespace) { () throws -> (String, Double?) in
                let health = TransportAddress(ip: .v4(IPv4Address(198, 18, 0, 1)), port: 8080)
                let metrics = TransportAddress(ip: .v4(IPv4Address(198, 18, 0, 1)), port: 9464)
                _ = poll(seconds: 5) { (try? HTTPTestClient.get(health, "/readyz").status) == 200 }
                return (try HTTPTestClient.get(health, "/readyz").body, try scrapeMetrics(metrics)["relay_xdp_interfaces_attached"])
            }
            #expect(ready.contains("xdp: attached on \(interface) (native mode)"), "\(ready)")
            #expect(attachedGauge == 1)
            kill(relay.process.processIdentifier, crash ? SIGKILL : SIGTERM)
            relay.process.waitUntilExit()
            if !crash { #expect(relay.log.contains("XDP fast path detached"), "\(relay.log)") }
            // Link teardown after a process's death is asynchronous in the kernel (its fds are
            // released as the task exits): allow it a moment.
            #expect(try poll(seconds: 5) { try attachedID() == 0 }, "still attached after \(crash ? "SIGKILL" : "SIGTERM")")
        }
    }
}
