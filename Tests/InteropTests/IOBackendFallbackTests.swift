import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
@testable import InteropTestSupport
#endif

/// The I/O backend fallback under a real io_uring refusal: turn-relay is exec'd by a launcher that
/// first installs a seccomp filter answering io_uring_setup with EPERM (what Docker's and
/// Kubernetes' default profiles do). With `--io-backend auto` it must say why in one line and serve
/// real clients on the batched-syscall backend; with `--io-backend io-uring` it must exit with the
/// cause and the fix.
extension RealClientTests {
    /// A raw BPF seccomp filter (no libseccomp): check the architecture, then make io_uring_setup
    /// fail with EPERM; everything else is allowed. PR_SET_NO_NEW_PRIVS lets an unprivileged
    /// process install it ("the calling thread must have the CAP_SYS_ADMIN capability in its user
    /// namespace, or the thread must already have the no_new_privs bit set", seccomp(2)).
    static let launcherSource = #"""
    #include <errno.h>
    #include <linux/audit.h>
    #include <linux/filter.h>
    #include <linux/seccomp.h>
    #include <stddef.h>
    #include <stdio.h>
    #include <sys/prctl.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    #if defined(__x86_64__)
    #define ARCH AUDIT_ARCH_X86_64
    #elif defined(__aarch64__)
    #define ARCH AUDIT_ARCH_AARCH64
    #else
    #error "unsupported architecture"
    #endif

    int main(int argc, char **argv) {
        if (argc < 2) { fprintf(stderr, "usage: %s program [args...]\n", argv[0]); return 64; }
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog program = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("PR_SET_NO_NEW_PRIVS"); return 70; }
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) { perror("PR_SET_SECCOMP"); return 71; }
        execv(argv[1], argv + 1);
        perror("execv");
        return 72;
    }
    """#

    /// Compiles the launcher with the C compiler on PATH into a fresh temporary directory.
    static func buildSeccompLauncher() throws -> URL {
        let compiler = try (try? ExternalTool.locate("cc", hint: "a C compiler"))
            ?? (ExternalTool.locate("clang", hint: "a C compiler (cc or clang) to build the seccomp launcher"))
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("no-io-uring-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let source = directory.appendingPathComponent("no_io_uring.c")
        let binary = directory.appendingPathComponent("no-io-uring")
        try launcherSource.write(to: source, atomically: true, encoding: .utf8)
        let build = try ChildProcess.run(compiler, ["-O1", "-o", binary.path, source.path], name: "cc",
                                         timeout: .seconds(60))
        guard build.status == 0 else { throw LauncherBuildFailed(output: build.output) }
        return binary
    }

    struct LauncherBuildFailed: Error, CustomStringConvertible {
        let output: String
        var description: String { "cannot compile the seccomp launcher:\n\(output)" }
    }

    @Test("forced --io-backend io-uring under a seccomp filter refusing io_uring_setup exits with the cause and fix")
    func forcedIOUringUnderSeccompExitsWithCauseAndFix() throws {
        let launcher = try Self.buildSeccompLauncher()
        let relay = try TurnServerUnderTest.turnRelayBinary()
        let port = try ListenPortClaims.freePort()
        let run = try ChildProcess.run(
            launcher,
            [relay.path, "serve", "--io-backend", "io-uring", "--listen-port", "\(port)", "--bind-ip4", "127.0.0.1",
             "--bind-ip6", "none", "--health-check-addr", "none", "--metrics-addr", "none", "--drain-seconds", "0"],
            name: "turn-relay (seccomp, io-uring)", timeout: .seconds(30))
        print("interop[turn-relay]: --io-backend io-uring under seccomp -> exit \(run.status.map(String.init) ?? "killed")")
        #expect(run.status == 2, "expected exit status 2:\n\(run.output)")
        #expect(run.output.contains("io_uring_setup was refused with EPERM"), "\(run.output)")
        #expect(run.output.contains("seccomp"))
        #expect(run.output.contains("Fix:"))
        #expect(run.output.contains("--io-backend auto or batched-syscalls"))
    }

    @Test("auto under a seccomp filter refusing io_uring_setup falls back, says why once, and serves real clients")
    func autoFallsBackUnderSeccompAndServesRealClients() throws {
        let launcher = try Self.buildSeccompLauncher()
        let server = try TurnServerUnderTest(.turnRelay, ioBackend: "auto", launcher: launcher)
        let fallbackLines = server.output.split(whereSeparator: \.isNewline)
            .filter { $0.contains("io backend batched-syscalls") }
        #expect(fallbackLines.count == 1, "expected one fallback line in:\n\(server.output)")
        #expect(fallbackLines.first?.contains("io_uring_setup was refused with EPERM") == true)
        #expect(fallbackLines.first?.contains("seccomp") == true)

        // A STUN Binding from coturn's client.
        let stunclient = try ExternalTool.locate("turnutils_stunclient")
        let binding = try ChildProcess.run(stunclient, ["-p", "\(server.port)", "127.0.0.1"],
                                           name: "turnutils_stunclient", timeout: .seconds(30))
        #expect(binding.status == 0, "turnutils_stunclient failed:\n\(binding.output)")
        #expect(binding.output.contains("IPv4. UDP reflexive addr: 127.0.0.1:"), "\(binding.output)")

        // A TURN allocation, channel and data both ways from aioice.
        let python = try ExternalTool.python()
        let script = ExternalTool.aioiceClientScript
        let messages = 5
        let run = try ChildProcess.run(
            python,
            [script.path, "--server-host", "127.0.0.1", "--server-port", "\(server.port)", "--secret", server.secret,
             "--peer-host", LoopbackPorts.peerIPv4, "--messages", "\(messages)", "--timeout", "15"],
            name: "aioice", timeout: .seconds(60))
        let lines = run.output.split(whereSeparator: \.isNewline).map(String.init)
        print("interop[turn-relay under seccomp]: aioice -> exit \(run.status.map(String.init) ?? "killed"), "
            + (lines.first { $0.hasPrefix("summary:") } ?? "no summary"))
        #expect(run.status == 0, "the aioice client failed:\n\(run.output)")
        #expect(lines.contains { $0.hasPrefix("allocated: relayed=127.0.0.1:") })
        #expect(lines.contains(
            "summary: sent=\(messages) peer_received=\(messages) echoed=\(messages) channel_data=\(messages) data_indications=0"))
        #expect(server.isRunning, "turn-relay exited:\n\(server.output)")
        let stopped = server.stop()
        #expect(stopped.isClean, "turn-relay \(stopped)")
    }
}
