/// A point in time, in nanoseconds since the Unix epoch.
///
/// The shell supplies it (wall-clock at start-up plus a monotonic clock since then, so it never goes
/// backwards); tests supply a fake one. The core has no clock of its own. Wall-clock based so that
/// time-limited credentials (`<unix-expiry>:user`) can be checked against it.
public struct Instant: Hashable, Comparable, Sendable {
    public var nanoseconds: UInt64

    @inlinable public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }
    @inlinable public init(seconds: UInt64) { self.nanoseconds = seconds &* 1_000_000_000 }

    @inlinable public var unixSeconds: UInt64 { nanoseconds / 1_000_000_000 }

    @inlinable public static func < (l: Instant, r: Instant) -> Bool { l.nanoseconds < r.nanoseconds }

    @inlinable public func adding(seconds: UInt64) -> Instant {
        Instant(nanoseconds: nanoseconds &+ seconds &* 1_000_000_000)
    }

    @inlinable public func adding(nanoseconds d: UInt64) -> Instant {
        Instant(nanoseconds: nanoseconds &+ d)
    }
}
