import Glibc
import Testing

/// What the running kernel offers that some tests need, and the reasons printed when a test is
/// skipped without it.
enum KernelFeatures {
    /// The kernel's release, `major.minor` (uname -r).
    static let release: (major: Int, minor: Int)? = {
        var name = utsname()
        guard uname(&name) == 0 else { return nil }
        let text = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let parts = text.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard parts.count == 2 else { return nil }
        return (parts[0], parts[1])
    }()

    /// io_uring's IORING_FEAT_MIN_TIMEOUT (the batch wait's "give up on the batch after N µs")
    /// came with Linux 6.12; before it the worker's batch wait is a plain wait.
    static var ioUringMinTimeout: Bool {
        guard let release else { return false }
        return release.major > 6 || (release.major == 6 && release.minor >= 12)
    }

    static let ioUringMinTimeoutMissing: Comment =
        "the kernel is older than 6.12 (no IORING_FEAT_MIN_TIMEOUT): the batch wait would be a plain wait"
}
