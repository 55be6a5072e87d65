/// Accounts for the sequence numbers received on one flow (one allocation, one direction):
/// unique arrivals, duplicates and reordering.
///
/// A sliding window of `windowSize` sequence numbers below the highest one seen remembers which
/// arrived. An arrival above the highest is in order; below it and not yet seen is reordered (it
/// arrived after a later one); below it and already seen is a duplicate. An arrival older than the
/// window cannot be told apart from a duplicate and is counted as `tooOld` (and as reordered and
/// received, the likelier case). Loss is what was sent minus the unique arrivals.
public struct SequenceTracker: Sendable, Equatable {
    public static let windowSize = 4096
    private static let words = windowSize / 64

    private var window: [UInt64]
    public private(set) var highest: UInt64?
    /// Unique sequence numbers received.
    public private(set) var received: UInt64 = 0
    public private(set) var duplicates: UInt64 = 0
    /// Arrivals whose sequence number is below one received earlier.
    public private(set) var reordered: UInt64 = 0
    /// Arrivals older than the window (included in `received` and `reordered`).
    public private(set) var tooOld: UInt64 = 0

    public init() {
        window = Array(repeating: 0, count: Self.words)
    }

    /// Records one arrival.
    public mutating func record(_ sequence: UInt64) {
        guard let h = highest else {
            highest = sequence
            set(sequence)
            received &+= 1
            return
        }
        if sequence > h {
            let advance = sequence - h
            if advance >= UInt64(Self.windowSize) {
                for i in 0..<Self.words { window[i] = 0 }
            } else {
                var s = h &+ 1
                while s < sequence {
                    clear(s)
                    s &+= 1
                }
            }
            highest = sequence
            set(sequence)
            received &+= 1
        } else if h - sequence >= UInt64(Self.windowSize) {
            tooOld &+= 1
            reordered &+= 1
            received &+= 1
        } else if isSet(sequence) {
            duplicates &+= 1
        } else {
            set(sequence)
            reordered &+= 1
            received &+= 1
        }
    }

    /// Packets sent but never received (never negative).
    public func lost(sent: UInt64) -> UInt64 { sent > received ? sent - received : 0 }

    private func index(_ s: UInt64) -> (Int, UInt64) {
        let bit = Int(s % UInt64(Self.windowSize))
        return (bit / 64, UInt64(1) << UInt64(bit % 64))
    }
    private mutating func set(_ s: UInt64) { let (w, m) = index(s); window[w] |= m }
    private mutating func clear(_ s: UInt64) { let (w, m) = index(s); window[w] &= ~m }
    private func isSet(_ s: UInt64) -> Bool { let (w, m) = index(s); return window[w] & m != 0 }
}
