import STUN

/// How one worker sets itself up. Every resource has a fixed bound.
public struct WorkerConfiguration: Sendable {
    /// The TURN port sockets' addresses; nil skips that family. Port 0 picks one (tests).
    public var listenIPv4: IPv4Address?
    public var listenIPv6: IPv6Address?
    public var listenPort: UInt16
    /// Where allocation (relay) sockets are bound; by default the listen addresses.
    public var relayBindIPv4: IPv4Address?
    public var relayBindIPv6: IPv6Address?

    /// How the workers do I/O: io_uring, or epoll with recvmmsg/sendmmsg where io_uring is refused
    /// (`IOBackendChoice.resolve` picks one). Everything else is the same for both.
    public var ioBackend: IOBackendKind = .ioUring
    /// Submission queue entries (completion queue is 4×); also the number of sends in flight.
    public var ringEntries: Int = 2048
    /// Provided receive buffers (a power of two ≤ 32768).
    public var receiveBuffers: Int = 4096
    /// Payload bytes one receive may land. With GRO this must hold a coalesced 64 KiB receive.
    public var receivePayloadCapacity: Int = 65536
    /// Most segments one coalesced receive is split into (the kernel sends at most 64 by GRO, 128 by
    /// loopback GSO pass-through); segments beyond it are dropped and counted.
    public var maxGROSegments: Int = 128
    public var enableGRO: Bool = true
    /// io_uring only, kernels with IORING_FEAT_MIN_TIMEOUT (6.12+): a wait for completions asks
    /// for `batchWaitCompletions` and gives up on the batch after `batchWaitMicroseconds` (then it
    /// returns with whatever has come, at least one). Fewer wake-ups per packet, up to that much
    /// added latency per pass. 0 µs (the default): wake on the first completion. On the machine of
    /// BENCHMARKS.md 1000 µs halved the CPU per packet at 20k-100k pps and added 2-4 ms to a round
    /// trip through the relay; 50 µs cost more CPU at 5k pps than no wait.
    public var batchWaitMicroseconds: Int = 0
    public var batchWaitCompletions: Int = 64
    public var enableGSO: Bool = true
    /// Buffers for core-encoded datagrams (responses, Data indications) in flight.
    public var transmitBuffers: Int = 1024
    public var transmitBufferBytes: Int = 4096
    /// The core's output batch: datagrams per batch and arena bytes.
    public var outboundCapacity: Int = 1024
    public var outboundArenaBytes: Int = 256 * 1024
    /// Received datagrams handed to the core per `process` call.
    public var inboundCapacity: Int = 1024
    /// SO_RCVBUF / SO_SNDBUF request (capped by net.core.rmem_max / wmem_max).
    public var socketBufferBytes: Int = 4 << 20
    /// Longest sleep in the event loop, in nanoseconds.
    public var maxWaitNanoseconds: UInt64 = 1_000_000_000
    /// Send every datagram of one client IP address to the same worker (a classic BPF program on
    /// the SO_REUSEPORT group) instead of spreading by address and port. Useful when per-username
    /// quotas must hold across a host's sockets (EVEN-PORT reservations do not need it: the
    /// workers share a `SharedReservationRegistry`); it costs spreading when many clients share
    /// one address (NAT, loopback benchmarks). Used by `RelayRuntime`.
    public var steerByClientAddress: Bool = false
    /// How often the worker publishes its `WorkerReport` (its counters and its processor's
    /// `report`), idle or not: the metrics' freshness and the worker's heartbeat.
    public var statisticsIntervalNanoseconds: UInt64 = 1_000_000_000
    /// Where the core's route changes go (the XDP fast path); nil: they are ignored, and the
    /// core is only asked for them (`ServerConfiguration.emitsChannelRoutes`) when this is set.
    public var routeSink: (any ChannelRouteSink)?
    /// TURN over TCP and TLS: the stream listeners and their connections' bounds (off by default).
    public var streams = StreamSettings()
    /// How workers pass client connections to each other (an RFC 6062 ConnectionBind that
    /// reached another worker than the one holding its peer connection). Set by `RelayRuntime`
    /// when it starts more than one worker; nil: connections never move.
    public var streamHandoffs: StreamHandoffHub?
    /// SO_NO_CHECK on every socket, which makes the kernel refuse GSO: tests use it to exercise
    /// the fallback to one sendmsg per datagram.
    var disableChecksumsForTesting = false

    public init(listenIPv4: IPv4Address? = .any, listenIPv6: IPv6Address? = .any, listenPort: UInt16 = 3478) {
        self.listenIPv4 = listenIPv4
        self.listenIPv6 = listenIPv6
        self.listenPort = listenPort
    }
}
