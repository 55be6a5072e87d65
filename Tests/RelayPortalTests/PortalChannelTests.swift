import Foundation
import RelayPortal
import Testing

/// Deterministic generator for the jitter.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func sentFrames(_ actions: [PortalAction]) -> [PhoenixFrame] {
    actions.compactMap { if case .send(_, let text) = $0 { PhoenixFrame.decode(text) } else { nil } }
}

private func s(_ seconds: Double) -> Duration { .milliseconds(Int64(seconds * 1000)) }

@Suite struct PortalChannelTests {
    @Test func phoenixFramesEncodeAsV2Arrays() {
        let join = PhoenixFrame(joinRef: "1", ref: "1", topic: "relay", event: "phx_join",
                                payload: ["stamp_secret": .string("abc")])
        #expect(join.encode() == #"["1","1","relay","phx_join",{"stamp_secret":"abc"}]"#)
        let heartbeat = PhoenixFrame(joinRef: nil, ref: "7", topic: "phoenix", event: "heartbeat")
        #expect(heartbeat.encode() == #"[null,"7","phoenix","heartbeat",{}]"#)
        #expect(PhoenixFrame.decode(#"[null,"7","phoenix","phx_reply",{"status":"ok","response":{}}]"#)?.replyStatus == "ok")
        // Untrusted text never traps and is rejected unless it is a 5-array with object payload.
        for junk in ["", "[", "{}", "[1,2,3,4,5]", #"[null,null,"relay","init"]"#, #"[null,null,"relay","init",[]]"#, "\u{0}"] {
            #expect(PhoenixFrame.decode(junk) == nil)
        }
    }

    @Test func loginURLHasTheReferenceQueryParameters() throws {
        let url = try PortalLoginURL(apiURL: "wss://api.example.test", name: "relay-1", publicIPv4: "203.0.113.5",
                                     publicIPv6: "2001:db8::5", listenPort: 3478).build()
        #expect(url == "wss://api.example.test/relay/websocket?name=relay-1&ipv4=203.0.113.5&ipv6=2001:db8::5&port=3478&vsn=2.0.0")
        let http = try PortalLoginURL(apiURL: "http://127.0.0.1:4000/", name: "r", publicIPv4: "127.0.0.1",
                                      publicIPv6: nil, listenPort: 3479).build()
        #expect(http == "ws://127.0.0.1:4000/relay/websocket?name=r&ipv4=127.0.0.1&port=3479&vsn=2.0.0")
        #expect(throws: PortalLoginURL.Failure.noPublicAddress) {
            try PortalLoginURL(apiURL: "wss://x", name: "r", publicIPv4: nil, publicIPv6: nil, listenPort: 1).build()
        }
        #expect(throws: PortalLoginURL.Failure.invalidAPIURL("ftp://x")) {
            try PortalLoginURL(apiURL: "ftp://x", name: "r", publicIPv4: "1.2.3.4", publicIPv6: nil, listenPort: 1).build()
        }
        #expect(makeStampSecret().count == 64)
        #expect(makeStampSecret() != makeStampSecret())
    }

    @Test func joinsWithStampSecretAndBecomesReadyOnlyOnInit() {
        var channel = PortalChannel(stampSecret: "s3cret", rng: SplitMix(state: 1))
        #expect(channel.start(now: .zero) == [.connect(id: 1)])
        #expect(!channel.isReady)
        let join = sentFrames(channel.connected(id: 1, now: s(0.1)))
        #expect(join.count == 1)
        #expect(join.first?.topic == "relay")
        #expect(join.first?.event == "phx_join")
        #expect(join.first?.payload["stamp_secret"] == .string("s3cret"))
        let joinRef = join.first?.ref ?? ""
        #expect(channel.received(id: 1, text: "[\"\(joinRef)\",\"\(joinRef)\",\"relay\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]", now: s(0.2)).isEmpty)
        #expect(!channel.isReady)
        // A frame on a stale connection id is ignored.
        #expect(channel.received(id: 9, text: #"["1",null,"relay","init",{}]"#, now: s(0.3)).isEmpty)
        #expect(channel.received(id: 1, text: #"["1",null,"relay","init",{}]"#, now: s(0.3)) == [.initialized, .readinessChanged(true)])
        #expect(channel.isReady)
        #expect(channel.hasBeenInitialized)
    }

    @Test func heartbeatsEveryIntervalAndReconnectsAfterTooManyMissed() {
        var config = PortalConfiguration()
        config.jitter = 0
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 2))
        _ = channel.start(now: .zero)
        _ = channel.connected(id: 1, now: .zero)
        _ = channel.received(id: 1, text: #"["1",null,"relay","init",{}]"#, now: s(1))
        #expect(channel.nextDeadline == s(10))
        #expect(channel.tick(now: s(9.9)).isEmpty)
        let first = sentFrames(channel.tick(now: s(10)))
        #expect(first.map(\.event) == ["heartbeat"])
        #expect(first.first?.topic == "phoenix")
        #expect(first.first?.joinRef == nil)
        // Answered: no longer pending.
        let ref = first.first?.ref ?? ""
        _ = channel.received(id: 1, text: "[null,\"\(ref)\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]", now: s(10.1))
        #expect(channel.pendingHeartbeats.isEmpty)
        // Four heartbeats go unanswered ("more than 3 unanswered → reconnect").
        for k in 2...5 {
            #expect(sentFrames(channel.tick(now: s(Double(k) * 10))).count == 1)
        }
        #expect(channel.pendingHeartbeats.count == 4)
        let lost = channel.tick(now: s(60))
        #expect(lost == [.close(id: 1), .readinessChanged(false)])
        #expect(channel.state == .waitingToReconnect(until: s(60.5)))
        #expect(channel.tick(now: s(60.5)) == [.connect(id: 2)])
    }

    @Test func backoffGrowsIsJitteredAndBounded() {
        var config = PortalConfiguration()
        config.initialBackoff = .seconds(1)
        config.backoffMultiplier = 2
        config.maxBackoff = .seconds(8)
        config.jitter = 0.5
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 3))
        var now = Duration.zero
        _ = channel.start(now: now)
        joinAndInit(&channel, id: 1, now: now)   // the long policy applies after a first join
        var delays: [Double] = []
        for attempt in 1...8 {
            #expect(channel.disconnected(id: attempt, now: now, reason: "refused").filter { $0 != .readinessChanged(false) }.isEmpty)
            guard case .waitingToReconnect(let until) = channel.state else {
                Issue.record("not waiting after attempt \(attempt)")
                return
            }
            let delay = (until - now)
            let nominal = min(pow2(attempt - 1), 8.0)
            #expect(delay >= s(nominal * 0.5) && delay <= s(nominal * 1.5))
            delays.append(Double(delay.components.seconds) + Double(delay.components.attoseconds) / 1e18)
            now = until
            #expect(channel.tick(now: now) == [.connect(id: attempt + 1)])
        }
        // Jitter from the generator: not all delays at their nominal value.
        #expect(Set(delays).count == delays.count)
    }

    @Test func givesUpAfterAttemptLimitOrElapsedTime() {
        var config = PortalConfiguration()
        config.maxAttempts = 3
        config.jitter = 0
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 4))
        _ = channel.start(now: .zero)
        _ = channel.disconnected(id: 1, now: .zero, reason: "a")
        _ = channel.tick(now: .seconds(1))
        _ = channel.disconnected(id: 2, now: .seconds(1), reason: "b")
        _ = channel.tick(now: .seconds(2))
        let last = channel.disconnected(id: 3, now: .seconds(2), reason: "c")
        #expect(last.count == 1)
        if case .gaveUp = last.first {} else { Issue.record("expected gaveUp, got \(last)") }
        #expect(channel.state == .gaveUp)
        #expect(channel.nextDeadline == nil)

        var elapsed = PortalConfiguration()
        elapsed.maxElapsed = .seconds(5)
        elapsed.initialBackoff = .seconds(2)
        elapsed.backoffMultiplier = 1
        elapsed.jitter = 0
        var second = PortalChannel(configuration: elapsed, stampSecret: "x", rng: SplitMix(state: 5))
        _ = second.start(now: .zero)
        joinAndInit(&second, id: 1, now: .zero)
        _ = second.disconnected(id: 1, now: .zero, reason: "a")      // 0 + 2 ≤ 5
        _ = second.tick(now: .seconds(2))
        _ = second.disconnected(id: 2, now: .seconds(2), reason: "b") // 2 + 2 ≤ 5
        _ = second.tick(now: .seconds(4))
        let final = second.disconnected(id: 3, now: .seconds(4), reason: "c") // 4 + 2 > 5
        if case .gaveUp = final.last {} else { Issue.record("expected gaveUp, got \(final)") }
    }

    @Test func joinTimeoutAndConnectTimeoutReconnectAndAJoinErrorIsFatal() {
        var config = PortalConfiguration()
        config.jitter = 0
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 6))
        _ = channel.start(now: .zero)
        #expect(channel.tick(now: .seconds(15)) == [.close(id: 1)])
        #expect(channel.state == .waitingToReconnect(until: .seconds(16)))   // initial policy: 1 s
        _ = channel.tick(now: .seconds(16))
        _ = channel.connected(id: 2, now: .seconds(16))
        #expect(channel.tick(now: .seconds(21)) == [.close(id: 2)])
        _ = channel.tick(now: .seconds(22))
        let join = sentFrames(channel.connected(id: 3, now: .seconds(22)))
        let ref = join.first?.ref ?? ""
        // The real portal's reply to a join its channel cannot take (`join crashed`); Firezone's
        // relay stops on any error reply to its join.
        let refused = channel.received(id: 3, text: "[\"\(ref)\",\"\(ref)\",\"relay\",\"phx_reply\",{\"status\":\"error\",\"response\":{\"reason\":\"join crashed\"}}]", now: .seconds(23))
        #expect(refused == [.close(id: 3), .fatal(reason: "the portal refused the join: join crashed")])
        #expect(channel.state == .gaveUp)
        #expect(channel.nextDeadline == nil)
        #expect(channel.tick(now: .seconds(100)).isEmpty)
        #expect(!channel.hasBeenInitialized)
    }

    @Test func unauthorizedUpgradeIsFatalWithTheProblemDetails() {
        for (code, detail) in [("invalid_token", "Invalid token"), ("missing_token", "Missing token")] {
            var channel = PortalChannel(stampSecret: "x", rng: SplitMix(state: 7))
            _ = channel.start(now: .zero)
            let body = #"{"code":"\#(code)","detail":"\#(detail)","status":401,"title":"Unauthorized","type":"about:blank"}"#
            let actions = channel.rejected(id: 1, now: .seconds(1), rejection: PortalRejection(status: 401, body: body))
            #expect(actions == [.fatal(reason: "the portal refused the token (HTTP 401 \(code): \(detail))")])
            #expect(channel.state == .gaveUp)
        }
        // A 401 without problem details (a proxy's page) is fatal too, as in Firezone's client.
        var plain = PortalChannel(stampSecret: "x", rng: SplitMix(state: 8))
        _ = plain.start(now: .zero)
        let actions = plain.rejected(id: 1, now: .zero, rejection: PortalRejection(status: 401, body: "<html>"))
        #expect(actions == [.fatal(reason: "the portal refused to authenticate the relay (HTTP 401: no reason provided)")])
        // ... also after the relay has been connected for a while (its token was deleted).
        var later = PortalChannel(stampSecret: "x", rng: SplitMix(state: 9))
        _ = later.start(now: .zero)
        joinAndInit(&later, id: 1, now: .zero)
        _ = later.disconnected(id: 1, now: .seconds(100), reason: "closed")
        _ = later.tick(now: .seconds(200))
        let rejected = later.rejected(id: 2, now: .seconds(200), rejection: PortalRejection(status: 401, body: #"{"code":"invalid_token"}"#))
        if case .fatal = rejected.last {} else { Issue.record("expected fatal, got \(rejected)") }
    }

    @Test func retryAfterIsWaitedOutExactlyAndOtherRejectionsBackOff() {
        var config = PortalConfiguration()
        config.jitter = 0.5
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 10))
        _ = channel.start(now: .zero)
        // The portal's rate limit: 503 with Retry-After (`sockets.ex`, `handle_error(conn, :rate_limit)`).
        let limited = PortalRejection(status: 503, retryAfter: .seconds(7),
                                      body: #"{"code":"rate_limit","detail":"Service Unavailable"}"#)
        #expect(channel.rejected(id: 1, now: .seconds(1), rejection: limited).isEmpty)
        #expect(channel.state == .waitingToReconnect(until: .seconds(8)))
        #expect(channel.failedAttempts == 0)
        #expect(channel.tick(now: .seconds(7.9)).isEmpty)
        #expect(channel.tick(now: .seconds(8)) == [.connect(id: 2)])
        // Repeated Retry-After never gives up, even past the initial 15 s.
        var now = Duration.seconds(8)
        for id in 2...6 {
            #expect(channel.rejected(id: id, now: now, rejection: limited).isEmpty)
            now += .seconds(7)
            #expect(channel.tick(now: now) == [.connect(id: id + 1)])
        }
        // A 500 (the portal's `unhandled_connect_error`, e.g. for `:missing_ip`) is an ordinary failure.
        let failed = PortalRejection(status: 500, body: #"{"code":"unhandled_connect_error"}"#)
        #expect(channel.rejected(id: 7, now: now, rejection: failed).isEmpty)
        #expect(channel.state == .waitingToReconnect(until: now + .seconds(1)))
        #expect(channel.failedAttempts == 1)
        // Events for an id that is not connecting are ignored.
        #expect(channel.rejected(id: 3, now: now, rejection: PortalRejection(status: 401)).isEmpty)
        #expect(channel.state == .waitingToReconnect(until: now + .seconds(1)))
    }

    @Test func retryAfterHeaderValues() {
        #expect(PortalRejection.retryAfter("120") == .seconds(120))
        #expect(PortalRejection.retryAfter(" 3 ") == .seconds(3))
        let now = Date(timeIntervalSince1970: 1_445_412_470)   // Wed, 21 Oct 2015 07:27:50 GMT
        #expect(PortalRejection.retryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now: now) == .seconds(10))
        #expect(PortalRejection.retryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now: now) == .zero)
        #expect(PortalRejection.retryAfter("soon") == nil)
        #expect(PortalRejection.retryAfter("-5") == nil)
    }

    @Test func disconnectWithTokenExpiredIsFatalOtherReasonsAreIgnored() {
        var channel = PortalChannel(stampSecret: "x", rng: SplitMix(state: 11))
        _ = channel.start(now: .zero)
        joinAndInit(&channel, id: 1, now: .zero)
        #expect(channel.isReady)
        #expect(channel.received(id: 1, text: #"[null,null,"relay","disconnect",{"reason":"something_else"}]"#, now: .seconds(1)).isEmpty)
        #expect(channel.isReady)
        let actions = channel.received(id: 1, text: #"["1",null,"relay","disconnect",{"reason":"token_expired"}]"#, now: .seconds(2))
        #expect(actions == [.close(id: 1), .readinessChanged(false), .fatal(reason: "the portal disconnected the relay: token_expired")])
        #expect(channel.state == .gaveUp)
        #expect(!channel.isReady)
    }

    @Test func beforeTheFirstJoinRetriesEverySecondForFifteenSecondsOnly() {
        var channel = PortalChannel(stampSecret: "x", rng: SplitMix(state: 12))
        _ = channel.start(now: .zero)
        var now = Duration.zero
        var attempts = 0
        var last: [PortalAction] = []
        // Each attempt is refused at once (connection refused): 1 s apart, no jitter.
        for id in 1...40 {
            attempts += 1
            last = channel.disconnected(id: id, now: now, reason: "connection refused")
            guard case .waitingToReconnect(let until) = channel.state else { break }
            #expect(until == now + .seconds(1))
            now = until
            #expect(channel.tick(now: now) == [.connect(id: id + 1)])
        }
        if case .gaveUp(let reason) = last.last {
            #expect(reason.contains("before the first join"), "\(reason)")
        } else {
            Issue.record("expected gaveUp, got \(last)")
        }
        // First failure at 0; it gives up at the first failure more than 15 s later (Firezone's
        // `ExponentialBackoff` with `max_elapsed_time` 15 s): the one at 16 s, the 17th.
        #expect(attempts == 17)
        #expect(now == .seconds(16))

        // Once a join has succeeded, the long policy: still retrying after 15 s.
        var joined = PortalChannel(stampSecret: "x", rng: SplitMix(state: 13))
        _ = joined.start(now: .zero)
        let join = sentFrames(joined.connected(id: 1, now: .zero))
        let ref = join.first?.ref ?? ""
        _ = joined.received(id: 1, text: "[\"\(ref)\",\"\(ref)\",\"relay\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]", now: .zero)
        #expect(joined.hasJoined)
        #expect(!joined.hasBeenInitialized)
        now = .zero
        for id in 1...10 {
            _ = joined.disconnected(id: id, now: now, reason: "connection refused")
            guard case .waitingToReconnect(let until) = joined.state else {
                Issue.record("gave up after a join at \(now)")
                return
            }
            now = until
            _ = joined.tick(now: now)
        }
        #expect(now > .seconds(15))
    }

    @Test func garbageIsCountedAndNeverTakenForInitOrDisconnect() {
        var channel = PortalChannel(stampSecret: "x", rng: SplitMix(state: 14))
        _ = channel.start(now: .zero)
        let join = sentFrames(channel.connected(id: 1, now: .zero))
        let ref = join.first?.ref ?? ""
        _ = channel.received(id: 1, text: "[\"\(ref)\",\"\(ref)\",\"relay\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]", now: .zero)
        #expect(channel.statistics == PortalStatistics())
        // Not Phoenix v2 frames, several of them an init or a disconnect if read loosely.
        let malformed = ["hello", "", "[", #"{"topic":"relay","event":"init","payload":{}}"#, "[1,2,3,4,5]",
                         #"[null,null,"relay","init"]"#, #"[null,null,"relay","init",{},6]"#, "[\"\(ref)\",null,\"relay\",\"init\",[]]",
                         #"[null,null,7,"init",{}]"#, #"[null,null,"relay",null,{}]"#,
                         #"[null,null,"relay","disconnect",null]"#, #""init""#, "null"]
        // Well-formed, of no use: unknown events and topics, replies to nothing asked, other disconnects.
        let ignored = [#"[null,null,"relay","surprise",{}]"#, #"[null,null,"elsewhere","init",{}]"#,
                       #"[null,null,"phoenix","init",{}]"#, #"[null,null,"relay","disconnect",{"reason":"maintenance"}]"#,
                       #"[null,null,"relay","disconnect",{"reason":5}]"#, #"[null,"999","phoenix","phx_reply",{"status":"ok"}]"#,
                       #"[null,"998","relay","phx_reply",{"status":"error"}]"#]
        for text in malformed + ignored { #expect(channel.received(id: 1, text: text, now: s(0.1)).isEmpty, "\(text)") }
        #expect(channel.receivedBinary(id: 1, now: s(0.1)).isEmpty)
        #expect(!channel.isReady && !channel.hasBeenInitialized)
        #expect(channel.state == .awaitingInit(id: 1, deadline: .seconds(5)))
        #expect(channel.statistics[.malformed] == malformed.count)
        #expect(channel.statistics[.ignored] == ignored.count)
        #expect(channel.statistics[.binary] == 1)
        // Frames on another connection id are not the portal's: not counted.
        #expect(channel.received(id: 7, text: "junk", now: s(0.1)).isEmpty)
        #expect(channel.receivedBinary(id: 7, now: s(0.1)).isEmpty)
        #expect(channel.statistics[.malformed] == malformed.count && channel.statistics[.binary] == 1)

        // Initialised, the same garbage changes nothing either; a second init is ignored too.
        #expect(channel.received(id: 1, text: "[\"\(ref)\",null,\"relay\",\"init\",{}]", now: s(0.2)) == [.initialized, .readinessChanged(true)])
        for text in malformed + ignored + ["[\"\(ref)\",null,\"relay\",\"init\",{}]"] {
            #expect(channel.received(id: 1, text: text, now: s(0.3)).isEmpty, "\(text)")
        }
        #expect(channel.isReady)
        #expect(channel.state == .ready(id: 1))
        #expect(channel.statistics[.malformed] == 2 * malformed.count)
        #expect(channel.statistics[.ignored] == 2 * ignored.count + 1)
        #expect(channel.statistics.losses.isEmpty)
    }

    @Test func everyLostConnectionIsCountedByItsCause() {
        var config = PortalConfiguration()
        config.jitter = 0
        config.heartbeatInterval = .seconds(1)
        config.initialConnectMaxElapsed = .seconds(3600)   // no giving up before the first join here
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 15))
        var now = Duration.zero
        _ = channel.start(now: now)
        // Refused at once, then a refused upgrade, then one with Retry-After, then no answer in time.
        _ = channel.disconnected(id: 1, now: now, reason: "connection refused")
        now += .seconds(1); _ = channel.tick(now: now)
        _ = channel.rejected(id: 2, now: now, rejection: PortalRejection(status: 500))
        now += .seconds(1); _ = channel.tick(now: now)
        _ = channel.rejected(id: 3, now: now, rejection: PortalRejection(status: 503, retryAfter: .seconds(1)))
        now += .seconds(1); _ = channel.tick(now: now)
        now += config.connectTimeout; _ = channel.tick(now: now)
        #expect(channel.statistics[.connectFailed] == 4)
        // Connected, joined: no init within the join timeout.
        now += .seconds(1); _ = channel.tick(now: now)
        _ = channel.connected(id: 5, now: now)
        now += config.joinTimeout; _ = channel.tick(now: now)
        #expect(channel.statistics[.joinTimeout] == 1)

        // Ready, then: the portal stops answering heartbeats (more than 3 unanswered).
        func ready(_ id: Int) {
            now += .seconds(60); _ = channel.tick(now: now)
            joinAndInit(&channel, id: id, now: now)
            #expect(channel.state == .ready(id: id))
        }
        ready(6)
        var lost: [PortalAction] = []
        for _ in 1...5 {
            now += config.heartbeatInterval
            lost = channel.tick(now: now)
        }
        #expect(lost == [.close(id: 6), .readinessChanged(false)])
        #expect(channel.statistics[.heartbeatTimeout] == 1)
        // The portal closes the connection; the WebSocket layer refuses a frame; phx_error.
        ready(7)
        _ = channel.disconnected(id: 7, now: now, reason: "closed")
        #expect(channel.statistics[.closed] == 1)
        ready(8)
        _ = channel.disconnected(id: 8, now: now, reason: "invalidFrameLength", frameRejected: true)
        #expect(channel.statistics[.frameRejected] == 1)
        ready(9)
        #expect(channel.received(id: 9, text: #"[null,null,"relay","phx_error",{}]"#, now: now) == [.close(id: 9), .readinessChanged(false)])
        #expect(channel.statistics[.channelError] == 1)
        // Events for connections already given up are not counted again.
        _ = channel.disconnected(id: 9, now: now, reason: "closed")
        #expect(channel.statistics[.closed] == 1)
        #expect(channel.statistics.losses.values.reduce(0, +) == 9)
        #expect(channel.statistics.discarded.isEmpty)
    }
}

/// Connection `id` opens, joins (reply ok) and gets `init`.
private func joinAndInit<R>(_ channel: inout PortalChannel<R>, id: Int, now: Duration) {
    let join = sentFrames(channel.connected(id: id, now: now))
    let ref = join.first?.ref ?? ""
    _ = channel.received(id: id, text: "[\"\(ref)\",\"\(ref)\",\"relay\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]", now: now)
    _ = channel.received(id: id, text: "[\"\(ref)\",null,\"relay\",\"init\",{}]", now: now)
}

private func pow2(_ n: Int) -> Double {
    var value = 1.0
    for _ in 0..<max(0, n) { value *= 2 }
    return value
}
