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
        var delays: [Double] = []
        for attempt in 1...8 {
            #expect(channel.disconnected(id: attempt, now: now, reason: "refused").isEmpty)
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
        _ = second.disconnected(id: 1, now: .zero, reason: "a")      // 0 + 2 ≤ 5
        _ = second.tick(now: .seconds(2))
        _ = second.disconnected(id: 2, now: .seconds(2), reason: "b") // 2 + 2 ≤ 5
        _ = second.tick(now: .seconds(4))
        let final = second.disconnected(id: 3, now: .seconds(4), reason: "c") // 4 + 2 > 5
        if case .gaveUp = final.last {} else { Issue.record("expected gaveUp, got \(final)") }
    }

    @Test func joinTimeoutConnectTimeoutAndJoinErrorReconnect() {
        var config = PortalConfiguration()
        config.jitter = 0
        var channel = PortalChannel(configuration: config, stampSecret: "x", rng: SplitMix(state: 6))
        _ = channel.start(now: .zero)
        #expect(channel.tick(now: .seconds(15)) == [.close(id: 1)])
        _ = channel.tick(now: .seconds(16))
        _ = channel.connected(id: 2, now: .seconds(16))
        #expect(channel.tick(now: .seconds(21)) == [.close(id: 2)])
        _ = channel.tick(now: .seconds(30))
        let join = sentFrames(channel.connected(id: 3, now: .seconds(30)))
        let ref = join.first?.ref ?? ""
        let refused = channel.received(id: 3, text: "[\"\(ref)\",\"\(ref)\",\"relay\",\"phx_reply\",{\"status\":\"error\",\"response\":{}}]", now: .seconds(31))
        #expect(refused == [.close(id: 3)])
        #expect(channel.failedAttempts == 3)
        #expect(!channel.hasBeenInitialized)
    }
}

private func pow2(_ n: Int) -> Double {
    var value = 1.0
    for _ in 0..<max(0, n) { value *= 2 }
    return value
}
