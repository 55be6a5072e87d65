/// The search for the highest offered rate a relay carries at < 1 % loss, in a bounded number of
/// trials: first flat out, then bisection between the best rate that passed and the lowest that
/// failed.
public struct LossSearch: Sendable, Equatable {
    public struct Trial: Sendable, Equatable, Codable {
        /// nil: flat out.
        public var targetPPS: Double?
        public var offeredPPS: Double
        public var deliveredPPS: Double
        public var loss: Double
        public init(targetPPS: Double?, offeredPPS: Double, deliveredPPS: Double, loss: Double) {
            self.targetPPS = targetPPS
            self.offeredPPS = offeredPPS
            self.deliveredPPS = deliveredPPS
            self.loss = loss
        }
    }

    public let maxTrials: Int
    public let lossLimit: Double
    /// Stop when the failing rate is within this factor of the passing one.
    public let resolution: Double
    public private(set) var trials: [Trial] = []

    public init(maxTrials: Int, lossLimit: Double = 0.01, resolution: Double = 1.05) {
        self.maxTrials = max(1, maxTrials)
        self.lossLimit = lossLimit
        self.resolution = resolution
    }

    public mutating func record(_ t: Trial) { trials.append(t) }

    func passes(_ t: Trial) -> Bool { t.loss < lossLimit && t.offeredPPS > 0 }

    /// The passing trial with the highest delivered rate.
    public var best: Trial? { trials.filter(passes).max { $0.deliveredPPS < $1.deliveredPPS } }

    /// True when the generator's own ceiling was reached without loss (flat out passed): the relay
    /// carries at least this much, and the figure is the generator's, not the relay's.
    public var generatorBound: Bool { trials.first.map { $0.targetPPS == nil && passes($0) } ?? false }

    /// The lowest offered rate that failed (flat out's offered rate counts).
    var lowestFailing: Double? { trials.filter { !passes($0) }.map(\.offeredPPS).min() }

    /// The next trial's target rate: `.some(nil)` for flat out, nil when the search is over.
    public func next() -> Double?? {
        guard trials.count < maxTrials else { return nil }
        guard let first = trials.first else { return .some(nil) }
        if generatorBound { return nil }
        guard let failing = lowestFailing else { return nil }
        let passing = trials.filter(passes).map(\.offeredPPS).filter { $0 < failing }.max()
        if let passing {
            if failing / passing <= resolution { return nil }
            return .some((passing + failing) / 2)
        }
        // Nothing passed yet: just under what flat out delivered, then half the lowest failing rate.
        let candidate = trials.count == 1 ? first.deliveredPPS * 0.95 : failing * 0.5
        return candidate >= 1 ? .some(candidate) : nil
    }
}
