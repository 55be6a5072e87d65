import RelayOperations
import Synchronization

/// Snapshots a test publishes by hand, one slot per pretend worker, read by a `RelayMetrics`
/// source (`metrics.addSource { slots.snapshots() }`) the way a `MetricsBoard` reads workers.
final class SnapshotSlots: Sendable {
    private let slots: Mutex<[RelaySnapshot?]>

    init(count: Int) { slots = Mutex([RelaySnapshot?](repeating: nil, count: count)) }

    func publish(_ index: Int, _ snapshot: RelaySnapshot) {
        slots.withLock { $0[index] = snapshot }
    }

    func snapshots() -> [RelaySnapshot] { slots.withLock { $0.compactMap { $0 } } }
}

/// The declared series `name{labels}`; a name that is not declared stops the test.
func series(_ name: String, _ labels: [String: String] = [:]) -> RelaySeries {
    guard let series = RelaySeries(name, labels) else { fatalError("no series \(name) \(labels) is declared") }
    return series
}
