/// One exported series: a family, its label values, and how to read its value from the struct
/// that counts it (read when a worker publishes, about once a second, never per packet).
public struct MetricSeries<Source>: Sendable {
    public let family: MetricFamily
    public let labelValues: [String]
    public let value: @Sendable (Source) -> Int

    public init(family: MetricFamily, labelValues: [String], value: @escaping @Sendable (Source) -> Int) {
        self.family = family
        self.labelValues = labelValues
        self.value = value
    }

    /// The label pairs in the family's order.
    public var labels: [(String, String)] { Array(zip(family.labelNames, labelValues)) }
}
