/// The distributions the relay exports. Each has fixed upper bounds, so a worker counts a sample
/// with one comparison loop over a handful of bounds and one increment of a plain integer.
public enum RelayHistogram: Int, CaseIterable, Sendable {
    /// Size of each datagram handed to the core, in bytes (the reference relay's `relay.packet.size`
    /// buckets: 100 to 1500 in steps of 100).
    case packetSize
    /// Datagrams handed to the core per `process` call: one batch of reaped receive completions.
    case inboundBatch
    /// Datagrams the core returned per batch: what one flush turns into send submissions.
    case outboundBatch

    public var name: String {
        switch self {
        case .packetSize: return "relay_packet_size_bytes"
        case .inboundBatch: return "relay_batch_inbound_datagrams"
        case .outboundBatch: return "relay_batch_outbound_datagrams"
        }
    }

    public var help: String {
        switch self {
        case .packetSize: return "Size of datagrams received by the relay (bytes)."
        case .inboundBatch: return "Datagrams handed to the TURN core per batch of receive completions."
        case .outboundBatch: return "Datagrams the TURN core returned per batch, submitted together to the ring."
        }
    }

    /// Inclusive upper bounds; a last, implicit bucket holds everything larger (`+Inf`).
    public var upperBounds: [Int] {
        switch self {
        case .packetSize: return Array(stride(from: 100, through: 1500, by: 100))
        case .inboundBatch, .outboundBatch: return [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
        }
    }
}

/// Plain per-bucket counts of one histogram (not cumulative), plus the sample count and sum.
/// Owned by one thread; copied into a snapshot when published.
public struct BucketCounts: Sendable, Equatable {
    public let upperBounds: [Int]
    /// `upperBounds.count + 1` entries; the last is the `+Inf` bucket.
    public private(set) var counts: [Int]
    public private(set) var sum: Int = 0

    public init(_ histogram: RelayHistogram) {
        self.init(upperBounds: histogram.upperBounds)
    }

    public init(upperBounds: [Int]) {
        self.upperBounds = upperBounds
        counts = [Int](repeating: 0, count: upperBounds.count + 1)
    }

    public var count: Int { counts.reduce(0, &+) }

    /// Counts one sample. Values are lengths and batch sizes: never negative, and the wrapping
    /// adds cannot trap whatever arrives.
    @inline(__always)
    public mutating func record(_ value: Int) {
        var index = 0
        let bounds = upperBounds
        while index < bounds.count && value > bounds[index] { index &+= 1 }
        counts[index] &+= 1
        sum &+= value
    }

    /// Counts `value` in bucket `index` (the caller computed it); out-of-range indices go to `+Inf`.
    @inline(__always)
    public mutating func increment(bucket index: Int, value: Int) {
        counts[index >= 0 && index < counts.count ? index : counts.count &- 1] &+= 1
        sum &+= value
    }

    /// Adds another worker's counts (same bounds); counts with other bounds are ignored.
    public mutating func add(_ other: BucketCounts) {
        guard other.upperBounds == upperBounds else { return }
        for i in counts.indices { counts[i] &+= other.counts[i] }
        sum &+= other.sum
    }
}
