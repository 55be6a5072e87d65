import HTTPTypes
import Logging
import NIOCore
import RelayPortal
import Synchronization
import WSClient

/// Drives a `PortalChannel` over real WebSocket connections (`ws://` or `wss://` through
/// `PortalWebSocketChannel`: WSClient's connection and WebSocket handling, NIOSSL): opens connections when the channel asks, feeds it frames and timer ticks,
/// writes what it wants sent. All protocol decisions live in the sans-IO channel.
public final class PortalConnection: Sendable {
    public let url: String
    public let token: String
    public let stampSecret: String
    public let configuration: PortalConfiguration
    private let logger: Logger
    private let connectedFlag = Atomic<Bool>(false)
    private let initializedFlag = Atomic<Bool>(false)
    private let statisticsBox = Mutex(PortalStatistics())

    /// - Parameters:
    ///   - url: the full login URL (see `PortalLoginURL`).
    ///   - token: sent as `X-Authorization: Bearer <token>` (study §4, the header the reference
    ///     relay uses) and, for portals that read the standard header, `Authorization: Bearer`.
    public init(url: String, token: String, stampSecret: String, configuration: PortalConfiguration = .init(),
                logger: Logger = Logger(label: "turn-relay.portal"))
    {
        self.url = url
        self.token = token
        self.stampSecret = stampSecret
        self.configuration = configuration
        self.logger = logger
    }

    /// Connected, joined and initialised right now (drives `/readyz`).
    public var isConnected: Bool { connectedFlag.load(ordering: .acquiring) }
    /// `init` has been received at least once since start (gates relaying).
    public var hasBeenInitialized: Bool { initializedFlag.load(ordering: .acquiring) }
    /// What the channel counted so far (connections lost, frames discarded), as of its last event.
    public var statistics: PortalStatistics { statisticsBox.withLock { $0 } }

    private enum Event: Sendable {
        case connected(Int)
        case received(Int, String)
        case receivedBinary(Int)
        /// The connection ended; `frameRejected` when the WebSocket layer refused what the portal sent.
        case disconnected(Int, String, frameRejected: Bool)
        case rejected(Int, PortalRejection)
        case tick
    }

    /// Runs until the channel gives up (returns its reason) or the task is cancelled (returns nil).
    /// `onInit` is called on every `init` from the portal.
    public func run(onInit: @escaping @Sendable () -> Void = {}) async -> String? {
        await run(rng: SystemRandomNumberGenerator(), onInit: onInit)
    }

    /// As `run(onInit:)`, with the backoff jitter drawn from `rng`.
    public func run<R: RandomNumberGenerator>(rng: R, onInit: @escaping @Sendable () -> Void = {}) async -> String? {
        let (events, sink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
        var channel = PortalChannel(configuration: configuration, stampSecret: stampSecret, rng: rng)
        var outbound: [Int: AsyncStream<String>.Continuation] = [:]
        var connections: [Int: Task<Void, Never>] = [:]
        var timer: Task<Void, Never>?
        let clock = ContinuousClock()
        let origin = clock.now
        func now() -> Duration { clock.now - origin }

        defer {
            timer?.cancel()
            for (_, continuation) in outbound { continuation.finish() }
            for (_, task) in connections { task.cancel() }
            connectedFlag.store(false, ordering: .releasing)
        }

        var actions = channel.start(now: now())
        var result: String?
        var iterator = events.makeAsyncIterator()
        while true {
            for action in actions {
                switch action {
                case .connect(let id):
                    let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .unbounded)
                    outbound[id] = continuation
                    connections[id] = openConnection(id: id, outbound: stream, sink: sink)
                case .send(let id, let text):
                    outbound[id]?.yield(text)
                case .close(let id):
                    outbound.removeValue(forKey: id)?.finish()
                    connections.removeValue(forKey: id)?.cancel()
                case .initialized:
                    initializedFlag.store(true, ordering: .releasing)
                    logger.info("portal sent init")
                    onInit()
                case .readinessChanged(let ready):
                    connectedFlag.store(ready, ordering: .releasing)
                    logger.info("portal connection \(ready ? "ready" : "lost")")
                case .gaveUp(let reason):
                    logger.error("giving up on the portal: \(reason)")
                    result = reason
                case .fatal(let reason):
                    logger.critical("portal: \(reason)")
                    result = reason
                }
            }
            let counted = channel.statistics
            let before = statisticsBox.withLock { box in
                defer { box = counted }
                return box
            }
            for loss in PortalStatistics.Loss.allCases where counted[loss] > before[loss] {
                logger.notice("portal connection lost: \(loss.rawValue)")
            }
            if result != nil { return result }
            timer?.cancel()
            timer = nil
            if let deadline = channel.nextDeadline {
                timer = Task {
                    try? await clock.sleep(until: origin + deadline, tolerance: .milliseconds(1))
                    if !Task.isCancelled { sink.yield(.tick) }
                }
            }
            guard let event = await iterator.next() else { return nil }
            if Task.isCancelled { return nil }
            switch event {
            case .connected(let id):
                actions = channel.connected(id: id, now: now())
            case .received(let id, let text):
                actions = channel.received(id: id, text: text, now: now())
            case .receivedBinary(let id):
                actions = channel.receivedBinary(id: id, now: now())
            case .disconnected(let id, let reason, let frameRejected):
                outbound.removeValue(forKey: id)?.finish()
                if let task = connections.removeValue(forKey: id), frameRejected {
                    // Told on the refusal, before the closing handshake (1007, 1009): a portal that
                    // never answers it does not keep the connection beyond a few seconds.
                    Task {
                        try? await Task.sleep(for: .seconds(5))
                        task.cancel()
                    }
                }
                logger.notice("portal connection closed: \(reason)")
                actions = channel.disconnected(id: id, now: now(), reason: reason, frameRejected: frameRejected)
            case .rejected(let id, let rejection):
                outbound.removeValue(forKey: id)?.finish()
                connections.removeValue(forKey: id)
                let retry = rejection.retryAfter.map { "; Retry-After \($0)" } ?? ""
                logger.notice("portal refused the connection: HTTP \(rejection.status)\(retry)",
                              metadata: ["body": "\(rejection.body.prefix(512))"])
                actions = channel.rejected(id: id, now: now(), rejection: rejection)
            case .tick:
                actions = channel.tick(now: now())
            }
        }
    }

    private func openConnection(id: Int, outbound stream: AsyncStream<String>,
                                sink: AsyncStream<Event>.Continuation) -> Task<Void, Never>
    {
        var headers = HTTPFields()
        if let name = HTTPField.Name("X-Authorization") { headers[name] = "Bearer \(token)" }
        headers[.authorization] = "Bearer \(token)"
        let url = self.url
        let logger = self.logger
        let rejected = FrameRejection()
        return Task {
            let socket: PortalWebSocketChannel
            do {
                socket = try PortalWebSocketChannel(url: url, headers: headers, maxFrameSize: 1 << 16, rejected: rejected) {
                    inbound, writer, _ in
                    sink.yield(.connected(id))
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask {
                            for await text in stream { try await writer.write(.text(text)) }
                            // The channel closed this connection: close it. Not when the reader
                            // refused a message: the WebSocket layer closes with the refusal's code.
                            if !rejected.hasBeenTold { try? await writer.close(.normalClosure, reason: nil) }
                        }
                        do {
                            for try await message in inbound.messages(maxSize: 1 << 20) {
                                switch message {
                                case .text(let text): sink.yield(.received(id, text))
                                case .binary: sink.yield(.receivedBinary(id))
                                }
                            }
                        } catch let error as IOError {
                            throw error
                        } catch let error as ChannelError {
                            throw error
                        } catch is CancellationError {
                            throw CancellationError()
                        } catch {
                            // WSCore's own refusals: a message over 1 MiB, a text frame not UTF-8.
                            // Told to the channel now: the closing handshake that follows can take
                            // longer than the heartbeats' patience, and the loss is this refusal.
                            rejected.record("\(error)")
                            rejected.markTold()
                            group.cancelAll()
                            sink.yield(.disconnected(id, "a frame was refused: \(error)", frameRejected: true))
                            throw error
                        }
                        group.cancelAll()
                    }
                }
            } catch {
                sink.yield(.disconnected(id, "\(error)", frameRejected: false))
                return
            }
            do {
                _ = try await ClientConnection(socket, address: .hostname(socket.host, port: socket.port), logger: logger).run()
                if rejected.hasBeenTold { return }
                let why = rejected.value
                sink.yield(.disconnected(id, why.map { "a frame was refused: \($0)" } ?? "closed", frameRejected: why != nil))
            } catch let refused as PortalUpgradeRefused {
                sink.yield(.rejected(id, refused.rejection))
            } catch {
                if rejected.hasBeenTold { return }
                let why = rejected.value
                sink.yield(.disconnected(id, why.map { "a frame was refused: \($0)" } ?? "\(error)", frameRejected: why != nil))
            }
        }
    }
}
