import CBatched
import Glibc
import Histogram

/// The receiving thread: epoll over every client and peer socket, recvmmsg in batches, and per
/// flow accounting of sequence numbers and latency. No allocation per packet.
final class Receiver: @unchecked Sendable {
    struct Endpoint {
        var fd: Int32
        /// Client sockets receive ChannelData (peer → client); peer sockets the bare payload.
        var isClient: Bool
    }

    let endpoints: [Endpoint]
    let batch = 64
    let slotBytes = 2048
    let arena: UnsafeMutableRawPointer
    let messages: OpaquePointer
    let live: LiveCounters
    let epfd: Int32

    var trackers: [SequenceTracker]
    var histograms: [Histogram<UInt64>] = [LatencyHistogram.make(), LatencyHistogram.make()]
    /// Datagrams that were not ours: STUN responses arriving late, Data indications, garbage.
    var other: UInt64 = 0

    init(endpoints: [Endpoint], flowCount: Int, live: LiveCounters) {
        self.endpoints = endpoints
        self.live = live
        trackers = Array(repeating: SequenceTracker(), count: flowCount)
        arena = .allocate(byteCount: slotBytes * batch, alignment: 16)
        guard let m = cb_batch_create(UInt32(batch)) else { fatalError("out of memory") }
        messages = m
        for k in 0..<batch {
            cb_batch_set(messages, UInt32(k), arena + k * slotBytes, slotBytes, nil)
        }
        epfd = cb_epoll_create()
        for (i, e) in endpoints.enumerated() {
            _ = cb_epoll_add(epfd, e.fd, UInt64(i))
        }
    }

    deinit {
        close(epfd)
        arena.deallocate()
        cb_batch_destroy(messages)
    }

    /// Receives until asked to stop, or until `hardEnd` (monotonic ns) whatever happens.
    func run(hardEnd: UInt64) {
        let events = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
        defer { events.deallocate() }
        while !live.stopReceiving.load(ordering: .relaxed) && monotonicNanoseconds() < hardEnd {
            let n = cb_epoll_wait(epfd, events, 64, 10)
            if n <= 0 { continue }
            for e in 0..<Int(n) {
                let index = Int(events[e])
                guard index < endpoints.count else { continue }
                drain(endpoints[index])
            }
        }
    }

    func drain(_ endpoint: Endpoint) {
        // Bounded: at most 16 full batches per readiness event, then back to epoll for fairness.
        for _ in 0..<16 {
            let rc = cb_recvmmsg(endpoint.fd, messages, UInt32(batch))
            if rc <= 0 { return }
            let now = monotonicNanoseconds()
            var got: UInt64 = 0
            for k in 0..<Int(rc) {
                let length = Int(cb_batch_received_length(messages, UInt32(k)))
                let bytes = UnsafeRawBufferPointer(start: arena + k * slotBytes, count: min(length, slotBytes))
                if account(bytes, isClient: endpoint.isClient, now: now) { got &+= 1 }
            }
            live.received.add(got, ordering: .relaxed)
            if Int(rc) < batch { return }
        }
    }

    @inline(__always)
    func account(_ bytes: UnsafeRawBufferPointer, isClient: Bool, now: UInt64) -> Bool {
        var payload = bytes
        if isClient {
            // RFC 8656 §12.4: 0b01 in the first two bits marks ChannelData; the 16-bit length that
            // follows the channel number counts the application data only (padding excluded).
            guard bytes.count >= 4, bytes[0] & 0xC0 == 0x40 else { other &+= 1; return false }
            let length = Int(bytes[2]) << 8 | Int(bytes[3])
            guard 4 + length <= bytes.count else { other &+= 1; return false }
            payload = UnsafeRawBufferPointer(rebasing: bytes[4..<(4 + length)])
        }
        guard let h = BenchPayload.read(payload), Int(h.flow) < trackers.count else { other &+= 1; return false }
        let direction = Int(h.flow & 1)
        // Client sockets must see peer → client flows (odd), peer sockets client → peer (even).
        guard (direction == 1) == isClient else { other &+= 1; return false }
        trackers[Int(h.flow)].record(h.sequence)
        if now > h.sentNanoseconds { histograms[direction].record(now - h.sentNanoseconds) }
        return true
    }
}
