/// One exported metric family: its Prometheus name, kind, help text and label names. The series
/// of a family are declared next to the counters that feed them (`MetricSeries`); the exporter,
/// the snapshot layout, the sums across workers and the README table are derived from those
/// declarations. Names follow Prometheus conventions (`_total` on counters, base units in the
/// name); one family has one label schema.
public struct MetricFamily: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        /// Monotonic; summed over workers.
        case counter
        /// A level; summed over workers.
        case gauge
    }

    public let name: String
    public let kind: Kind
    public let help: String
    public let labelNames: [String]

    public init(_ name: String, _ kind: Kind, labels: [String] = [], help: String) {
        self.name = name
        self.kind = kind
        self.help = help
        labelNames = labels
    }

    /// One series of this family, its label values in `labelNames` order, read from `Source`
    /// (unsigned counters wrap into `Int` as the exporter's arithmetic does).
    public func series<Source, Value: BinaryInteger>(
        _ labelValues: String..., value: @escaping @Sendable (Source) -> Value
    ) -> MetricSeries<Source> {
        precondition(labelValues.count == labelNames.count, "\(name): label values \(labelValues) for \(labelNames)")
        return MetricSeries(family: self, labelValues: labelValues) { Int(truncatingIfNeeded: value($0)) }
    }
}

/// The family several sources count into: the core's drops and the I/O side's.
extension MetricFamily {
    public static let drops = MetricFamily(
        "relay_drops_total", .counter, labels: ["reason"],
        help: "Datagrams dropped, by reason: the core's (what a datagram asked for is refused or malformed) and the I/O side's (a queue, buffer or batch was full, or the receive was unusable).")
}
