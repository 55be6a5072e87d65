/// Order statistics over small samples (one value per round or per run).
public enum Summary {
    /// The median: the middle value, or the mean of the two middle values; nil for no values.
    public static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        let mid = s.count / 2
        return s.count % 2 == 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
    }

    /// The `p`-th percentile (0...100) with linear interpolation between the closest ranks
    /// (the "R-7" definition: rank = p/100 · (n − 1)); nil for no values.
    public static func percentile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        let clamped = min(max(p, 0), 100)
        let rank = clamped / 100 * Double(s.count - 1)
        let lo = Int(rank.rounded(.down))
        let hi = min(lo + 1, s.count - 1)
        let frac = rank - Double(lo)
        return s[lo] + (s[hi] - s[lo]) * frac
    }

    /// `numerator / denominator`, nil when the denominator is zero or either side is missing.
    public static func ratio(_ numerator: Double?, _ denominator: Double?) -> Double? {
        guard let n = numerator, let d = denominator, d != 0 else { return nil }
        return n / d
    }
}
