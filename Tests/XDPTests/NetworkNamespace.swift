import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs code with the calling thread inside a named network namespace (`ip netns add NAME`, so
/// /run/netns/NAME), then puts the thread back where it was.
///
/// A socket belongs to the namespace of the thread that created it for its whole life, so a test
/// creates its clients' and peers' sockets (TestTURNClient, UDPEcho, an HTTP connection to the
/// relay's /metrics) inside `run(in:)` and uses them from anywhere afterwards. setns(2) with
/// CLONE_NEWNET moves only the calling thread; the tests run on a dedicated thread
/// (`.dedicatedThread`) and the body is synchronous, so nothing else runs there meanwhile.
/// Processes are never started inside the body (they would inherit the namespace): they go
/// through `ip netns exec`.
enum NetworkNamespace {
    /// CLONE_NEWNET from <sched.h>, which Swift's Glibc module does not export.
    private static let cloneNewNet: Int32 = 0x4000_0000

    /// glibc's setns(2) wrapper, which Swift's Glibc module does not export either (it is
    /// declared under _GNU_SOURCE): looked up by name.
    private static let setns: @convention(c) (Int32, Int32) -> Int32 = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else {
            fatalError("glibc has no setns")
        }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()

    struct Failure: Error, CustomStringConvertible {
        let step: String
        let code: Int32
        var description: String { "\(step): \(String(cString: strerror(code)))" }
    }

    static func run<T>(in name: String, _ body: () throws -> T) throws -> T {
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { throw Failure(step: "open /proc/thread-self/ns/net", code: errno) }
        defer { close(original) }
        let target = open("/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard target >= 0 else { throw Failure(step: "open /run/netns/\(name)", code: errno) }
        defer { close(target) }
        guard setns(target, cloneNewNet) == 0 else { throw Failure(step: "setns into \(name)", code: errno) }
        defer {
            // Failing to come back would leave this thread (and every later test on it) in the
            // lab, which is about to be deleted: stop here rather than test the wrong network.
            if setns(original, cloneNewNet) != 0 {
                fatalError("setns back to the test's own network namespace failed: \(String(cString: strerror(errno)))")
            }
        }
        return try body()
    }
}
