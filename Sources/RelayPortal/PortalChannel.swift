import Foundation

/// Timing and retry settings of the portal connection. Defaults follow the reference design
/// (study §4): heartbeat every 10 s, more than 3 unanswered heartbeats means the connection is
/// lost, join timeout 5 s, connect timeout 15 s, exponential backoff for up to 24 h — and, until
/// the first join succeeds, retries 1 s apart for 15 s only (Firezone's `phoenix-channel`:
/// `INITIAL_CONNECT_INTERVAL`, `INITIAL_CONNECT_MAX_ELAPSED_TIME`), so a relay that is
/// misconfigured from the start stops quickly instead of retrying for a day.
public struct PortalConfiguration: Sendable, Equatable {
    /// The portal closes a relay socket that has sent nothing for this long
    /// (`elixir/lib/portal_api/endpoint.ex`, `socket "/relay"`, `timeout: :timer.seconds(41)`).
    public static let portalIdleTimeout: Duration = .seconds(41)

    public var heartbeatInterval: Duration = .seconds(10)
    /// More than this many unanswered heartbeats and the connection is considered lost.
    public var maxMissedHeartbeats: Int = 3
    /// Bound on waiting for the join reply and then for `init`.
    public var joinTimeout: Duration = .seconds(5)
    public var connectTimeout: Duration = .seconds(15)
    public var initialBackoff: Duration = .milliseconds(500)
    public var backoffMultiplier: Double = 1.5
    public var maxBackoff: Duration = .seconds(60)
    /// Each delay is scaled by a uniform factor in `1 ± jitter`.
    public var jitter: Double = 0.5
    /// Give up once the portal has been unreachable this long (reference: 24 h).
    public var maxElapsed: Duration = .seconds(24 * 3600)
    /// Optional bound on consecutive failed attempts; `nil` means only `maxElapsed` applies.
    public var maxAttempts: Int? = nil
    /// Before the first successful join: the fixed delay between attempts (no jitter) ...
    public var initialConnectInterval: Duration = .seconds(1)
    /// ... and the channel gives up at the first failure more than this long after the first one
    /// (or `maxElapsed`, if shorter).
    public var initialConnectMaxElapsed: Duration = .seconds(15)

    public init() {}
}

/// What the driver must do after feeding the channel an event.
public enum PortalAction: Equatable, Sendable {
    /// Open a new WebSocket connection; later events about it carry this id.
    case connect(id: Int)
    /// Send a text frame on connection `id`.
    case send(id: Int, text: String)
    /// Close connection `id`; its later events are ignored.
    case close(id: Int)
    /// The portal sent `init`: the relay may relay.
    case initialized
    /// `/readyz` should now report this (connected and initialised).
    case readinessChanged(Bool)
    /// The retry limit is reached; the channel is stopped.
    case gaveUp(reason: String)
    /// The portal refused the relay for good (its token, its join); the channel is stopped and the
    /// relay must not retry: Firezone's relay exits on these (`phoenix-channel`: `InvalidToken`,
    /// `AuthenticationFailed`, `LoginFailed`).
    case fatal(reason: String)
}

/// The portal's answer to a WebSocket upgrade that it did not accept (any status but 101).
public struct PortalRejection: Equatable, Sendable {
    public var status: Int
    /// The `Retry-After` header, already turned into a delay (see `retryAfter(_:now:)`).
    public var retryAfter: Duration?
    /// The response body (the portal sends RFC 9457 problem details).
    public var body: String

    public init(status: Int, retryAfter: Duration? = nil, body: String = "") {
        self.status = status
        self.retryAfter = retryAfter
        self.body = body
    }

    /// The problem details' `code` (`invalid_token`, `missing_token`, `rate_limit`, ...).
    public var problemCode: String? { problem?["code"]?.stringValue }
    /// The problem details' `detail`.
    public var problemDetail: String? { problem?["detail"]?.stringValue }

    private var problem: [String: JSONValue]? {
        guard let data = body.data(using: .utf8),
              case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: data) else { return nil }
        return object
    }

    /// A `Retry-After` value: delay-seconds, or an HTTP date (RFC 9110 §10.2.3) turned into the
    /// time left from `now` (zero if it is past). nil if it is neither.
    public static func retryAfter(_ value: String, now: Date = Date()) -> Duration? {
        let text = value.trimmingCharacters(in: .whitespaces)
        if let seconds = UInt64(text) { return .seconds(Int64(clamping: seconds)) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: text) else { return nil }
        let left = date.timeIntervalSince(now)
        return left <= 0 ? .zero : .milliseconds(Int64(left * 1000))
    }
}

/// What the channel has counted since it started: every connection (or attempt) it lost, by cause,
/// and every frame it received and did not act on, by kind. The channel decides both; its driver
/// only reads them (for `/metrics`). Counters only grow.
public struct PortalStatistics: Sendable, Equatable {
    /// Why a connection, or an attempt at one, ended without the relay giving up for good.
    public enum Loss: String, CaseIterable, Sendable {
        /// The attempt never became a WebSocket: refused, an HTTP error on the upgrade (a
        /// `Retry-After` included), no answer within the connect timeout.
        case connectFailed = "connect_failed"
        /// The portal (or the network) closed an open connection.
        case closed
        /// The WebSocket layer refused what the portal sent (a frame over the size limit, a text
        /// frame that is not UTF-8, a broken frame) and closed the connection.
        case frameRejected = "frame_rejected"
        /// No join reply or no `init` within the join timeout.
        case joinTimeout = "join_timeout"
        /// More than `maxMissedHeartbeats` heartbeats unanswered: the portal stalled.
        case heartbeatTimeout = "heartbeat_timeout"
        /// The portal sent `phx_error` or `phx_close` on the relay topic.
        case channelError = "channel_error"
    }

    /// Why a received frame was not acted on.
    public enum Discard: String, CaseIterable, Sendable {
        /// Not a Phoenix v2 frame: not JSON, not a five-element array, or elements of the wrong type.
        case malformed
        /// A well-formed frame the channel has no use for: an unknown topic or event, a reply to
        /// nothing it asked, a `disconnect` for another reason than `token_expired`, an `init`
        /// once initialised on this connection.
        case ignored
        /// A binary frame (the portal only sends text).
        case binary
    }

    public private(set) var losses: [Loss: Int] = [:]
    public private(set) var discarded: [Discard: Int] = [:]

    public init() {}

    public subscript(loss: Loss) -> Int { losses[loss, default: 0] }
    public subscript(discard: Discard) -> Int { discarded[discard, default: 0] }

    mutating func count(_ loss: Loss) { losses[loss, default: 0] += 1 }
    mutating func count(_ discard: Discard) { discarded[discard, default: 0] += 1 }
}

/// Sans-IO Phoenix channel client for the relay's portal connection: no sockets, no clock,
/// no randomness of its own. Time is a `Duration` since an arbitrary origin, supplied by the
/// caller; jitter comes from the injected generator.
public struct PortalChannel<RNG: RandomNumberGenerator> {
    public enum State: Equatable, Sendable {
        case idle
        case waitingToReconnect(until: Duration)
        case connecting(id: Int, deadline: Duration)
        case joining(id: Int, joinRef: String, deadline: Duration)
        case awaitingInit(id: Int, deadline: Duration)
        case ready(id: Int)
        case gaveUp
    }

    public static var topic: String { "relay" }

    public let configuration: PortalConfiguration
    public let stampSecret: String
    public private(set) var state: State = .idle
    /// Heartbeat refs sent and not yet answered on the current connection.
    public private(set) var pendingHeartbeats: [String] = []
    /// Failed attempts since the last successful `init`.
    public private(set) var failedAttempts = 0
    public private(set) var hasBeenInitialized = false
    /// A join has succeeded at least once: from then on the long retry policy applies.
    public private(set) var hasJoined = false
    /// Connections lost and frames discarded, by cause.
    public private(set) var statistics = PortalStatistics()
    private var rng: RNG
    private var nextConnectionID = 0
    private var nextRef = 0
    private var nextHeartbeat: Duration?
    /// When the current outage began (first failure since the last `init`, or start).
    private var outageStart: Duration?
    private var ready = false

    public init(configuration: PortalConfiguration = .init(), stampSecret: String, rng: RNG) {
        self.configuration = configuration
        self.stampSecret = stampSecret
        self.rng = rng
    }

    public var isReady: Bool { ready }

    /// The earliest time `tick(now:)` has something to do, if any.
    public var nextDeadline: Duration? {
        switch state {
        case .idle, .gaveUp: return nil
        case .waitingToReconnect(let until): return until
        case .connecting(_, let deadline): return deadline
        case .joining(_, _, let deadline), .awaitingInit(_, let deadline):
            return min(deadline, nextHeartbeat ?? deadline)
        case .ready: return nextHeartbeat
        }
    }

    public mutating func start(now: Duration) -> [PortalAction] {
        guard case .idle = state else { return [] }
        return openConnection(now: now)
    }

    /// The WebSocket handshake of connection `id` completed: join the `relay` topic.
    public mutating func connected(id: Int, now: Duration) -> [PortalAction] {
        guard case .connecting(let current, _) = state, current == id else { return [] }
        let joinRef = makeRef()
        state = .joining(id: id, joinRef: joinRef, deadline: now + configuration.joinTimeout)
        pendingHeartbeats = []
        nextHeartbeat = now + configuration.heartbeatInterval
        let join = PhoenixFrame(joinRef: joinRef, ref: joinRef, topic: Self.topic, event: "phx_join",
                                payload: ["stamp_secret": .string(stampSecret)])
        return [.send(id: id, text: join.encode())]
    }

    /// Connection `id` failed to open or was closed by the peer; `frameRejected` when the WebSocket
    /// layer closed it because of what the portal sent (an over-size or broken frame).
    public mutating func disconnected(id: Int, now: Duration, reason: String, frameRejected: Bool = false) -> [PortalAction] {
        guard let current = currentConnectionID, current == id else { return [] }
        let loss: PortalStatistics.Loss
        if case .connecting = state { loss = .connectFailed } else { loss = frameRejected ? .frameRejected : .closed }
        return fail(now: now, reason: reason, loss: loss, close: false)
    }

    /// The portal answered connection `id`'s WebSocket upgrade with an HTTP error. 401 is fatal
    /// (the token is invalid or missing: retrying cannot help); a `Retry-After` (the portal's 503
    /// when rate limited) is waited out exactly, without counting as a failed attempt; anything
    /// else is a failure retried with backoff.
    public mutating func rejected(id: Int, now: Duration, rejection: PortalRejection) -> [PortalAction] {
        guard case .connecting(let current, _) = state, current == id else { return [] }
        if rejection.status == 401 {
            let reason: String
            switch rejection.problemCode {
            case "invalid_token", "missing_token":
                reason = "the portal refused the token (HTTP 401 \(rejection.problemCode ?? "")\(rejection.problemDetail.map { ": \($0)" } ?? ""))"
            default:
                reason = "the portal refused to authenticate the relay (HTTP 401: \(rejection.problemDetail ?? "no reason provided"))"
            }
            return stop(reason: reason, close: false)
        }
        let summary = "HTTP \(rejection.status)\(rejection.problemCode.map { " \($0)" } ?? "")"
        if let wait = rejection.retryAfter {
            statistics.count(.connectFailed)
            state = .waitingToReconnect(until: now + wait)
            nextHeartbeat = nil
            pendingHeartbeats = []
            return []
        }
        return fail(now: now, reason: summary, loss: .connectFailed, close: false)
    }

    /// A binary frame arrived on connection `id`: the portal speaks text only; counted, ignored.
    public mutating func receivedBinary(id: Int, now: Duration) -> [PortalAction] {
        guard let current = currentConnectionID, current == id else { return [] }
        statistics.count(.binary)
        return []
    }

    /// A text frame arrived on connection `id`. Whatever it is not acted on is counted
    /// (`statistics.discarded`) and changes nothing: garbage is never an `init` or a `disconnect`.
    public mutating func received(id: Int, text: String, now: Duration) -> [PortalAction] {
        guard let current = currentConnectionID, current == id else { return [] }
        guard let frame = PhoenixFrame.decode(text) else {
            statistics.count(.malformed)
            return []
        }
        if frame.topic == "phoenix" && frame.event == "phx_reply" {
            if let ref = frame.ref, let index = pendingHeartbeats.firstIndex(of: ref) {
                pendingHeartbeats.remove(at: index)
            } else {
                statistics.count(.ignored)
            }
            return []
        }
        guard frame.topic == Self.topic else {
            statistics.count(.ignored)
            return []
        }
        switch (state, frame.event) {
        case (.joining(_, let joinRef, let deadline), "phx_reply") where frame.ref == joinRef:
            guard frame.replyStatus == "ok" else {
                // Firezone's relay stops on an error reply to its join (`LoginFailed`).
                var reason = frame.replyStatus ?? "no status"
                if case .object(let response)? = frame.payload["response"], let text = response["reason"]?.stringValue {
                    reason = text
                }
                return stop(reason: "the portal refused the join: \(reason)", close: true)
            }
            hasJoined = true
            state = .awaitingInit(id: id, deadline: deadline)
            return []
        case (.joining, "init"), (.awaitingInit, "init"):
            // The portal pushes `init` right after accepting the join; a reply that is still in
            // flight does not matter once `init` is here.
            state = .ready(id: id)
            hasJoined = true
            failedAttempts = 0
            outageStart = nil
            hasBeenInitialized = true
            ready = true
            return [.initialized, .readinessChanged(true)]
        case (_, "phx_error"), (_, "phx_close"):
            return fail(now: now, reason: "channel \(frame.event)", loss: .channelError, close: true)
        case (_, "disconnect"):
            // The portal's word that the token is no longer valid: fatal, as in Firezone's
            // `phoenix-channel` (`DisconnectReason::TokenExpired` → `InvalidToken`). It knows no
            // other reason and skips such a message; so does this.
            guard frame.payload["reason"]?.stringValue == "token_expired" else {
                statistics.count(.ignored)
                return []
            }
            return stop(reason: "the portal disconnected the relay: token_expired", close: true)
        default:
            statistics.count(.ignored)
            return []
        }
    }

    /// Runs what is due at `now`: timeouts, heartbeats, reconnect.
    public mutating func tick(now: Duration) -> [PortalAction] {
        switch state {
        case .idle, .gaveUp:
            return []
        case .waitingToReconnect(let until):
            return now >= until ? openConnection(now: now) : []
        case .connecting(_, let deadline):
            return now >= deadline ? fail(now: now, reason: "connect timeout", loss: .connectFailed, close: true) : []
        case .joining(_, _, let deadline), .awaitingInit(_, let deadline):
            if now >= deadline {
                return fail(now: now, reason: "no join reply or init in time", loss: .joinTimeout, close: true)
            }
            return heartbeatIfDue(now: now)
        case .ready:
            return heartbeatIfDue(now: now)
        }
    }

    // MARK: - Internals

    private var currentConnectionID: Int? {
        switch state {
        case .connecting(let id, _), .joining(let id, _, _), .awaitingInit(let id, _), .ready(let id): return id
        case .idle, .waitingToReconnect, .gaveUp: return nil
        }
    }

    private mutating func makeRef() -> String {
        nextRef += 1
        return String(nextRef)
    }

    private mutating func openConnection(now: Duration) -> [PortalAction] {
        nextConnectionID += 1
        state = .connecting(id: nextConnectionID, deadline: now + configuration.connectTimeout)
        nextHeartbeat = nil
        pendingHeartbeats = []
        return [.connect(id: nextConnectionID)]
    }

    private mutating func heartbeatIfDue(now: Duration) -> [PortalAction] {
        guard let id = currentConnectionID, let due = nextHeartbeat, now >= due else { return [] }
        // Study §4: "more than 3 unanswered → reconnect".
        if pendingHeartbeats.count > configuration.maxMissedHeartbeats {
            return fail(now: now, reason: "\(pendingHeartbeats.count) heartbeats unanswered", loss: .heartbeatTimeout,
                        close: true)
        }
        let ref = makeRef()
        pendingHeartbeats.append(ref)
        nextHeartbeat = now + configuration.heartbeatInterval
        let frame = PhoenixFrame(joinRef: nil, ref: ref, topic: "phoenix", event: "heartbeat")
        return [.send(id: id, text: frame.encode())]
    }

    /// Stops for good on a fatal answer from the portal.
    private mutating func stop(reason: String, close: Bool) -> [PortalAction] {
        var actions = dropConnection(close: close)
        state = .gaveUp
        actions.append(.fatal(reason: reason))
        return actions
    }

    /// Closes the connection (when asked), leaves readiness and forgets the heartbeats.
    private mutating func dropConnection(close: Bool) -> [PortalAction] {
        var actions: [PortalAction] = []
        if close, let id = currentConnectionID { actions.append(.close(id: id)) }
        if ready {
            ready = false
            actions.append(.readinessChanged(false))
        }
        nextHeartbeat = nil
        pendingHeartbeats = []
        return actions
    }

    private mutating func fail(now: Duration, reason: String, loss: PortalStatistics.Loss, close: Bool) -> [PortalAction] {
        statistics.count(loss)
        var actions = dropConnection(close: close)
        failedAttempts += 1
        let start = outageStart ?? now
        outageStart = start
        // Until the first join succeeds: fixed short retries for a short while only.
        let delay = hasJoined ? backoffDelay(attempt: failedAttempts) : configuration.initialConnectInterval
        let maxElapsed = hasJoined ? configuration.maxElapsed
            : min(configuration.initialConnectMaxElapsed, configuration.maxElapsed)
        if let limit = configuration.maxAttempts, failedAttempts >= limit {
            state = .gaveUp
            actions.append(.gaveUp(reason: "\(failedAttempts) attempts failed; last: \(reason)"))
            return actions
        }
        // After a join: never schedule an attempt past the limit. Before: Firezone's initial
        // backoff, which retries until more than 15 s have passed since the first failure.
        if hasJoined ? (now - start) + delay > maxElapsed : now - start > maxElapsed {
            state = .gaveUp
            let phase = hasJoined ? "" : " before the first join"
            actions.append(.gaveUp(reason: "portal unreachable for \(now - start)\(phase); last: \(reason)"))
            return actions
        }
        state = .waitingToReconnect(until: now + delay)
        return actions
    }

    /// `initial × multiplier^(attempt−1)`, capped at `maxBackoff`, scaled by `1 ± jitter`.
    public mutating func backoffDelay(attempt: Int) -> Duration {
        let initial = configuration.initialBackoff.seconds
        let exponent = Double(max(0, min(attempt - 1, 64)))
        var seconds = initial * power(max(1, configuration.backoffMultiplier), exponent)
        seconds = min(seconds, configuration.maxBackoff.seconds)
        let jitter = max(0, min(1, configuration.jitter))
        let unit = Double.random(in: 0...1, using: &rng)
        seconds *= 1 + jitter * (2 * unit - 1)
        return .nanoseconds(Int64(max(0, seconds) * 1e9))
    }
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}

@inline(__always) private func power(_ base: Double, _ exponent: Double) -> Double {
    var result = 1.0
    var remaining = Int(exponent)
    while remaining > 0 && result < 1e12 {
        result *= base
        remaining -= 1
    }
    return result
}
