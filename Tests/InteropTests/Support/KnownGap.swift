import Testing

/// What turn-relay does not yet do that a real-client test needs, as seen when these tests were
/// run against it. A test that depends on one is disabled while turn-relay is the server under
/// test (it still runs against coturn), so the suite states the gap instead of failing.
/// INTEROP_INCLUDE_KNOWN_GAPS=1 runs them anyway, to check a fix.
enum KnownGap {
    // None at present. The last one (a RESERVATION-TOKEN redeemed on another worker than the
    // one that issued it got 508) is closed by the workers' shared reservation registry.
}

extension Trait where Self == ConditionTrait {
    /// Disabled while turn-relay is the server under test, unless INTEROP_INCLUDE_KNOWN_GAPS=1.
    static func disabledForTurnRelay(_ gap: Comment) -> Self {
        .disabled(if: TurnServerUnderTest.Implementation.knownGapsApply, gap)
    }
}
