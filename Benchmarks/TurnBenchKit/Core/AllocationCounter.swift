import Synchronization

/// Reads the process's heap allocation count. The turn-bench executable links a malloc
/// interposer and installs its reader here; without it (e.g. in tests) `count()` is nil, and
/// figures that need it are reported as unavailable rather than assumed.
public enum AllocationCounter {
    nonisolated(unsafe) private static var reader: (@Sendable () -> UInt64)?

    /// Called once at start-up, before any other thread exists.
    public static func install(_ read: @escaping @Sendable () -> UInt64) { reader = read }

    public static func count() -> UInt64? { reader?() }
}
