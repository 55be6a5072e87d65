import RelayCore
import RelayIO

/// One counter or gauge the relay exports: a position in every `RelaySnapshot`, so publishing and
/// summing never hash a name. The list is not written here: it is the core's declarations
/// (`ServerReport.metrics`) followed by a worker's (`WorkerStatistics.metrics`) and the XDP fast
/// path's (`XDPCounters.metrics`) and the process's own (`ProcessHealth.metrics`); a new counter is
/// declared once, next to the field that counts it, and appears here, in `/metrics`, in OTLP and
/// in the README table (checked by a test).
public struct RelaySeries: Sendable, Hashable, CustomStringConvertible {
    public let index: Int

    init(index: Int) { self.index = index }

    /// Every series, in snapshot and export order.
    public static let allCases: [RelaySeries] = (0..<catalog.count).map(RelaySeries.init(index:))

    /// The series named `name` with exactly `labels`, if declared.
    public init?(_ name: String, _ labels: [String: String] = [:]) {
        guard let index = Self.catalog.firstIndex(where: { entry in
            entry.family.name == name && entry.family.labelNames.count == labels.count
                && zip(entry.family.labelNames, entry.labelValues).allSatisfy { labels[$0.0] == $0.1 }
        }) else { return nil }
        self.index = index
    }

    public var family: MetricFamily { Self.catalog[index].family }
    public var kind: MetricFamily.Kind { family.kind }
    /// The metric name and its labels.
    public var metric: (name: String, labels: [(String, String)]) {
        let entry = Self.catalog[index]
        return (entry.family.name, Array(zip(entry.family.labelNames, entry.labelValues)))
    }

    public var description: String {
        let (name, labels) = metric
        return labels.isEmpty ? name : name + "{" + labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",") + "}"
    }

    /// Every family, in the order of its first series.
    public static let families: [MetricFamily] = {
        var seen: Set<String> = []
        return catalog.map(\.family).filter { seen.insert($0.name).inserted }
    }()

    /// The label values of every series of `family`, in order.
    public static func labelValues(of family: MetricFamily) -> [[String]] {
        catalog.filter { $0.family == family }.map(\.labelValues)
    }

    struct Entry: Sendable {
        var family: MetricFamily
        var labelValues: [String]
    }

    /// Where each source's series start in a snapshot.
    static let coreOffset = 0
    static let workerOffset = ServerReport.metrics.count
    static let xdpOffset = workerOffset + WorkerStatistics.metrics.count
    static let healthOffset = xdpOffset + XDPCounters.metrics.count

    static let catalog: [Entry] = {
        let entries = ServerReport.metrics.map { datapathLabelled(Entry(family: $0.family, labelValues: $0.labelValues)) }
            + WorkerStatistics.metrics.map { Entry(family: $0.family, labelValues: $0.labelValues) }
            + XDPCounters.metrics.map { Entry(family: $0.family, labelValues: $0.labelValues) }
            + ProcessHealth.metrics.map { Entry(family: $0.family, labelValues: $0.labelValues) }
        // One kind and one label schema per name, and no series declared twice (Prometheus wants both).
        var families: [String: MetricFamily] = [:]
        var keys: Set<[String]> = []
        for entry in entries {
            let known = families[entry.family.name, default: entry.family]
            precondition(known.kind == entry.family.kind && known.labelNames == entry.family.labelNames,
                         "metric family \(entry.family.name) declared twice with different kinds or labels")
            families[entry.family.name] = known
            precondition(keys.insert([entry.family.name] + entry.labelValues).inserted,
                         "series \(entry.family.name)\(entry.labelValues) declared twice")
        }
        return entries
    }()

    /// The core counts what it relays itself: its relayed packets and bytes are the `userspace`
    /// series of the families the XDP program's counters share (`datapath` = `userspace` | `xdp`).
    static func datapathLabelled(_ entry: Entry) -> Entry {
        for family in [MetricFamily.relayedPacketsByDatapath, .relayedBytesByDatapath]
        where family.name == entry.family.name && family.labelNames.dropLast() == entry.family.labelNames[...] {
            return Entry(family: family, labelValues: entry.labelValues + ["userspace"])
        }
        return entry
    }
}
