/// Which way packets travel through the relay.
public enum Direction: String, Codable, Sendable, CaseIterable {
    /// Client sends ChannelData to the relay; the relay sends the bare payload to the peer.
    case clientToPeer = "client-to-peer"
    /// Peer sends a bare datagram to the relayed address; the relay sends ChannelData to the client.
    case peerToClient = "peer-to-client"
}

/// What one direction of one load run measured.
public struct DirectionResult: Codable, Sendable, Equatable {
    public var direction: Direction
    /// Datagrams handed to the kernel by the load generator.
    public var sent: UInt64
    /// sendmmsg failures (EAGAIN/ENOBUFS): not sent, not counted in `sent`.
    public var sendErrors: UInt64
    /// Unique sequence numbers that arrived at the far end.
    public var received: UInt64
    public var duplicates: UInt64
    public var reordered: UInt64
    public var lost: UInt64
    public var offeredPPS: Double
    public var deliveredPPS: Double
    public var latency: LatencySummary

    public init(direction: Direction, sent: UInt64, sendErrors: UInt64, received: UInt64, duplicates: UInt64,
                reordered: UInt64, lost: UInt64, offeredPPS: Double, deliveredPPS: Double, latency: LatencySummary) {
        self.direction = direction
        self.sent = sent
        self.sendErrors = sendErrors
        self.received = received
        self.duplicates = duplicates
        self.reordered = reordered
        self.lost = lost
        self.offeredPPS = offeredPPS
        self.deliveredPPS = deliveredPPS
        self.latency = latency
    }

    /// lost / sent, 0 when nothing was sent.
    public var lossRatio: Double { sent == 0 ? 0 : Double(lost) / Double(sent) }
}

/// Everything one load run measured.
public struct LoadResult: Codable, Sendable, Equatable {
    public var server: String
    public var allocations: Int
    public var payloadBytes: Int
    /// Target total packet rate over all directions; nil when sending flat out.
    public var targetPPS: Double?
    /// Length of the sending phase, measured.
    public var seconds: Double
    public var directions: [DirectionResult]
    /// The load generator's own CPU time (user + system) during the run.
    public var benchCPUSeconds: Double
    /// The relay process's CPU time (user + system) during the run, when its PID was given.
    public var relayCPUSeconds: Double?
    /// Heap allocations in the load generator during the run (all threads, progress line included);
    /// nil without the malloc counter. Near zero: its send and receive loops do not allocate.
    public var benchHeapAllocations: UInt64?

    public init(server: String, allocations: Int, payloadBytes: Int, targetPPS: Double?, seconds: Double,
                directions: [DirectionResult], benchCPUSeconds: Double, relayCPUSeconds: Double?) {
        self.server = server
        self.allocations = allocations
        self.payloadBytes = payloadBytes
        self.targetPPS = targetPPS
        self.seconds = seconds
        self.directions = directions
        self.benchCPUSeconds = benchCPUSeconds
        self.relayCPUSeconds = relayCPUSeconds
    }

    public var sent: UInt64 { directions.reduce(0) { $0 + $1.sent } }
    public var received: UInt64 { directions.reduce(0) { $0 + $1.received } }
    public var lost: UInt64 { directions.reduce(0) { $0 + $1.lost } }
    public var offeredPPS: Double { directions.reduce(0) { $0 + $1.offeredPPS } }
    public var deliveredPPS: Double { directions.reduce(0) { $0 + $1.deliveredPPS } }
    public var lossRatio: Double { sent == 0 ? 0 : Double(lost) / Double(sent) }
    /// The worst p99 over the directions.
    public var p99Micros: Double { directions.map(\.latency.p99).max() ?? 0 }
    /// Relay CPU microseconds per relayed (delivered) packet.
    public var relayCPUMicrosPerPacket: Double? {
        guard let cpu = relayCPUSeconds, received > 0 else { return nil }
        return cpu * 1e6 / Double(received)
    }

    /// The flat row used by `compare` tables, CSV and charts.
    public func row(round: Int) -> RunRow {
        RunRow(server: server, round: round, targetPPS: targetPPS ?? 0, offeredPPS: offeredPPS,
               deliveredPPS: deliveredPPS, lossRatio: lossRatio, relayCPUMicrosPerPacket: relayCPUMicrosPerPacket,
               p50Micros: directions.map(\.latency.p50).max() ?? 0, p99Micros: p99Micros,
               benchCPUSeconds: benchCPUSeconds, seconds: seconds)
    }
}
