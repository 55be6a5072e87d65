import CBatched
import CUDP
import Glibc

/// One stream of datagrams the sender produces: a socket, a destination, and the sequence state.
struct SendFlow {
    var fd: Int32
    var destination = cu_addr()
    /// ChannelData channel number, or 0 to send the bare payload (peer → relayed address).
    var channel: UInt16
    var flow: UInt32
    var directionIndex: Int
    var nextSequence: UInt64 = 0
    var sent: UInt64 = 0
    var sendErrors: UInt64 = 0
}

/// The sending thread: round-robin over flows, `batch` datagrams per sendmmsg, paced to a target
/// total rate or flat out, until the end time or a stop request. No allocation per packet.
final class Sender: @unchecked Sendable {
    let flows: UnsafeMutableBufferPointer<SendFlow>
    let batch: Int
    let payloadBytes: Int
    let slotBytes: Int
    let arena: UnsafeMutableRawPointer
    let messages: OpaquePointer
    let live: LiveCounters

    init(flows: [SendFlow], batch: Int, payloadBytes: Int, live: LiveCounters) {
        self.flows = .allocate(capacity: flows.count)
        _ = self.flows.initialize(from: flows)
        self.batch = batch
        self.payloadBytes = payloadBytes
        self.slotBytes = (payloadBytes + 4 + 15) & ~15
        self.live = live
        arena = .allocate(byteCount: slotBytes * batch, alignment: 16)
        // Filler: a fixed pattern the header overwrites at the start of each payload.
        for i in 0..<(slotBytes * batch) { arena.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7), toByteOffset: i, as: UInt8.self) }
        guard let m = cb_batch_create(UInt32(batch)) else { fatalError("out of memory") }
        messages = m
        for k in 0..<batch {
            cb_batch_set(messages, UInt32(k), arena + k * slotBytes, 0, nil)
        }
    }

    static let destinationOffset = MemoryLayout<SendFlow>.offset(of: \SendFlow.destination) ?? 0

    deinit {
        flows.deallocate()
        arena.deallocate()
        cb_batch_destroy(messages)
    }

    /// Sends until `end` (monotonic ns). `rate` is the target total packets/s, nil for flat out.
    func run(start: UInt64, end: UInt64, rate: Double?) {
        guard !flows.isEmpty else { return }
        var attempted: UInt64 = 0
        var cursor = 0
        var lastSend = start
        while true {
            let now = monotonicNanoseconds()
            if now >= end || live.stopSending.load(ordering: .relaxed) { break }
            var n = batch
            if let rate {
                let dueTotal = UInt64(Double(now - start) * rate / 1e9)
                let due = dueTotal > attempted ? Int(min(dueTotal - attempted, UInt64(batch))) : 0
                if due < batch && (due == 0 || now - lastSend < 1_000_000) {
                    // Wait for a full batch, but never let a partial batch wait more than 1 ms.
                    let untilBatch = (Double(attempted + UInt64(batch)) / rate * 1e9) - Double(now - start)
                    sleepNanoseconds(UInt64(max(20_000, min(untilBatch, 200_000))))
                    continue
                }
                n = due
            }
            let sentNow = send(flowIndex: cursor, count: n, now: now)
            attempted += UInt64(n)
            lastSend = now
            live.sent.add(UInt64(sentNow), ordering: .relaxed)
            cursor += 1
            if cursor == flows.count { cursor = 0 }
        }
    }

    /// One sendmmsg of `count` datagrams on flow `i`; returns how many the kernel took.
    @inline(__always)
    func send(flowIndex i: Int, count: Int, now: UInt64) -> Int {
        guard let base = flows.baseAddress, i < flows.count else { return 0 }
        let f = base + i
        let headerBytes = f.pointee.channel == 0 ? 0 : 4
        let length = headerBytes + payloadBytes
        let destination = (UnsafeMutableRawPointer(f) + Self.destinationOffset).assumingMemoryBound(to: cu_addr.self)
        for k in 0..<count {
            let slot = arena + k * slotBytes
            if headerBytes == 4 {
                // RFC 8656 §12.4: channel number (16 bits), length (16 bits), application data.
                slot.storeBytes(of: f.pointee.channel.bigEndian, toByteOffset: 0, as: UInt16.self)
                slot.storeBytes(of: UInt16(truncatingIfNeeded: payloadBytes).bigEndian, toByteOffset: 2, as: UInt16.self)
            }
            BenchPayload.write(to: slot + headerBytes, flow: f.pointee.flow, sequence: f.pointee.nextSequence &+ UInt64(k), sentNanoseconds: now)
            cb_batch_set_length(messages, UInt32(k), length)
            cb_batch_set_destination(messages, UInt32(k), destination)
        }
        let rc = Int(cb_sendmmsg(f.pointee.fd, messages, UInt32(count)))
        let sent = max(rc, 0)
        f.pointee.nextSequence &+= UInt64(sent)
        f.pointee.sent &+= UInt64(sent)
        f.pointee.sendErrors &+= UInt64(count - sent)
        return sent
    }
}
