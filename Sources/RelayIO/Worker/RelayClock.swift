import Glibc
import RelayCore

/// The shell's clock: the wall clock read once at start-up plus CLOCK_MONOTONIC elapsed since then,
/// so `Instant`s are Unix-based (time-limited credentials compare against them) yet never go back.
public struct RelayClock: Sendable {
    public let wallAtStart: UInt64
    public let monotonicAtStart: UInt64

    public init() {
        wallAtStart = Self.read(CLOCK_REALTIME)
        monotonicAtStart = Self.read(CLOCK_MONOTONIC)
    }

    public func now() -> Instant {
        let elapsed = Self.read(CLOCK_MONOTONIC) &- monotonicAtStart
        return Instant(nanoseconds: wallAtStart &+ elapsed)
    }

    static func read(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
