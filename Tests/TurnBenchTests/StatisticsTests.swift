import Testing
@testable import TurnBenchKit

@Test func medianOfOddAndEvenCounts() {
    #expect(Summary.median([]) == nil)
    #expect(Summary.median([5]) == 5)
    #expect(Summary.median([3, 1, 2]) == 2)
    #expect(Summary.median([4, 1, 3, 2]) == 2.5)
}

@Test func percentileInterpolatesBetweenRanks() {
    let v: [Double] = [10, 20, 30, 40, 50]
    #expect(Summary.percentile(v, 0) == 10)
    #expect(Summary.percentile(v, 50) == 30)
    #expect(Summary.percentile(v, 100) == 50)
    #expect(Summary.percentile(v, 25) == 20)
    #expect(Summary.percentile(v, 90) == 46)
    #expect(Summary.percentile([], 50) == nil)
    #expect(Summary.percentile([7], 99) == 7)
}

@Test func ratioIsNilOnZeroOrMissing() {
    #expect(Summary.ratio(4, 2) == 2)
    #expect(Summary.ratio(4, 0) == nil)
    #expect(Summary.ratio(nil, 2) == nil)
}

@Test func trackerInOrderHasNoLossOrReorder() {
    var t = SequenceTracker()
    for s in 0..<100 as Range<UInt64> { t.record(s) }
    #expect(t.received == 100)
    #expect(t.duplicates == 0)
    #expect(t.reordered == 0)
    #expect(t.lost(sent: 100) == 0)
}

@Test func trackerCountsGapsAsLoss() {
    var t = SequenceTracker()
    for s: UInt64 in [0, 1, 2, 5, 6, 9] { t.record(s) }
    #expect(t.received == 6)
    #expect(t.lost(sent: 10) == 4)
    #expect(t.reordered == 0)
}

@Test func trackerCountsLateArrivalsAsReorderedNotLost() {
    var t = SequenceTracker()
    for s: UInt64 in [0, 2, 1, 3, 5, 4] { t.record(s) }
    #expect(t.received == 6)
    #expect(t.reordered == 2)
    #expect(t.duplicates == 0)
    #expect(t.lost(sent: 6) == 0)
}

@Test func trackerCountsDuplicatesOnceEach() {
    var t = SequenceTracker()
    for s: UInt64 in [0, 1, 1, 2, 0, 2, 2] { t.record(s) }
    #expect(t.received == 3)
    #expect(t.duplicates == 4)
    #expect(t.reordered == 0)
}

@Test func trackerForgetsBitsWhenTheWindowSlides() {
    var t = SequenceTracker()
    t.record(5)
    // Jump far ahead: the window is cleared, so a new sequence that maps to the same bit as 5 is new.
    let far = UInt64(5 + SequenceTracker.windowSize)
    t.record(far)
    t.record(far - 1)
    #expect(t.received == 3)
    #expect(t.duplicates == 0)
    #expect(t.reordered == 1)
    // Older than the window: counted as too old (and received, reordered), never as a duplicate.
    t.record(5)
    #expect(t.tooOld == 1)
    #expect(t.received == 4)
    #expect(t.duplicates == 0)
}

@Test func trackerHandlesSmallForwardStepsAcrossTheWindowBoundary() {
    var t = SequenceTracker()
    let n = UInt64(SequenceTracker.windowSize * 3)
    for s in 0..<n where s % 7 != 3 { t.record(s) }
    // Re-deliver the last few: duplicates. Deliver a missing one within the window: reordered.
    t.record(n - 1)
    t.record(n - 2)
    t.record(n - 5) // n - 5 = 12283; 12283 % 7 == 5, so it was received: duplicate
    let missing = (n - 100) - ((n - 100) % 7) + 3
    t.record(missing)
    let sentCount = n
    let expectedReceived = (0..<n).filter { $0 % 7 != 3 }.count + 1
    #expect(t.received == UInt64(expectedReceived))
    #expect(t.duplicates == 3)
    #expect(t.reordered == 1)
    #expect(t.lost(sent: sentCount) == sentCount - UInt64(expectedReceived))
}

@Test func lossNeverNegative() {
    var t = SequenceTracker()
    t.record(0); t.record(1)
    #expect(t.lost(sent: 1) == 0)
}

@Test func fixedFormatsWithoutLocale() {
    // 1.005 is 1.00499999... in binary, so it rounds down; ties round away from zero.
    #expect(fixed(1.005, 2) == "1.00")
    #expect(fixed(2.5, 0) == "3")
    #expect(fixed(-0.25, 1) == "-0.3")
    #expect(fixed(12.3456, 3) == "12.346")
    #expect(fixed(0, 2) == "0.00")
    #expect(fixed(7, 1) == "7.0")
    #expect(fixed(0.05, 2) == "0.05")
    #expect(fixed(-0.0001, 2) == "0.00")
}
