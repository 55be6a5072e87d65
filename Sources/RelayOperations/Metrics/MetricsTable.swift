import RelayCore

extension RelaySeries {
    /// The markers around the generated table in README.md.
    public static let markdownTableBegin = "<!-- metrics table: generated from the declarations (RelaySeries.markdownTable()); a test checks it -->"
    public static let markdownTableEnd = "<!-- end of metrics table -->"

    /// Every exported family as a Markdown table (name, type, labels with their values, help),
    /// histograms last: what README.md shows.
    public static func markdownTable() -> String {
        var rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
        for family in families {
            let values = labelValues(of: family)
            let labels = family.labelNames.enumerated().map { i, label -> String in
                var seen: Set<String> = []
                let distinct = values.map { $0[i] }.filter { seen.insert($0).inserted }
                return "`\(label)` = " + distinct.joined(separator: ", ")
            }.joined(separator: "; ")
            rows.append("| `\(family.name)` | \(family.kind.rawValue) | \(labels) | \(family.help) |")
        }
        for histogram in RelayHistogram.allCases {
            let bounds = histogram.upperBounds.map(String.init) + ["+Inf"]
            rows.append("| `\(histogram.name)` | histogram | `le` = \(bounds.joined(separator: ", ")) | \(histogram.help) |")
        }
        return rows.joined(separator: "\n") + "\n"
    }
}
