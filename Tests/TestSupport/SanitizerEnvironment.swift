import Foundation

/// What a test passes on to a `turn-relay` child that otherwise gets only PATH: the sanitizers'
/// options, so that a sanitized child's reports go where `make test-sanitizers` asked, and
/// LD_PRELOAD, the ThreadSanitizer run's Mutex shim (scripts/tsan-swift-mutex.c), without which the
/// child's contended Mutexes are reported as races.
public enum SanitizerEnvironment {
    public static let names = ["ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS", "LD_PRELOAD"]

    /// `environment` with this process's values of `names` added.
    public static func passedOn(to environment: [String: String]) -> [String: String] {
        var out = environment
        let own = ProcessInfo.processInfo.environment
        for name in names { if let value = own[name] { out[name] = value } }
        return out
    }
}
