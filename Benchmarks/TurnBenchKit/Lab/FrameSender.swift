import Glibc

@_silgen_name("sendmmsg") private func c_sendmmsg(_ fd: Int32, _ msgs: UnsafeMutableRawPointer, _ vlen: UInt32, _ flags: Int32) -> Int32

/// struct mmsghdr: a msghdr and the byte count the kernel fills in.
struct MMsgHdr {
    var header: msghdr
    var length: UInt32
}

/// The lab's load generator: prebuilt Ethernet frames for every flow, sent through one AF_PACKET
/// socket on the generator's veth with sendmmsg, `batch` frames per call in the order of one
/// traffic cycle, repeated. Per datagram it does nothing but what the kernel does for sendmmsg:
/// no payload writes, no per-flow socket.
public final class FrameSender: @unchecked Sendable {
    let fd: Int32
    let arena: UnsafeMutableRawPointer
    let iovecs: UnsafeMutablePointer<iovec>
    let messages: UnsafeMutablePointer<MMsgHdr>
    public let cycleLength: Int
    public let batch: Int

    public struct Result: Sendable {
        public var sent: UInt64 = 0
        public var failedCalls: UInt64 = 0
        public var calls: UInt64 = 0
        /// The sending thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
        public var threadCPUNanoseconds: UInt64 = 0
    }

    /// `frames[f]` is flow f's frame; `cycle` the flow of each position.
    public init(interface: String, frames: [[UInt8]], cycle: [Int], batch: Int) throws(SocketError) {
        precondition(!cycle.isEmpty && (1...1024).contains(batch))
        let s = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw SocketError(call: "socket(AF_PACKET)", errno: errno) }
        let ifindex = if_nametoindex(interface)
        guard ifindex != 0 else { close(s); throw SocketError(call: "if_nametoindex \(interface)", errno: errno) }
        // struct sockaddr_ll: family, protocol 0 (bound for sending only, no receive hook),
        // ifindex, hatype, pkttype, halen, addr[8].
        var sll = [UInt8](repeating: 0, count: 20)
        sll[0] = UInt8(AF_PACKET & 0xFF); sll[1] = UInt8(AF_PACKET >> 8)
        withUnsafeBytes(of: Int32(ifindex)) { for i in 0..<4 { sll[4 + i] = $0[i] } }
        let rc = sll.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), 20) }
        guard rc == 0 else { let e = errno; close(s); throw SocketError(call: "bind AF_PACKET \(interface)", errno: e) }
        // PACKET_QDISC_BYPASS (20): straight to the driver, as a NIC-facing generator would.
        var one: Int32 = 1
        _ = setsockopt(s, 263 /* SOL_PACKET */, 20, &one, socklen_t(MemoryLayout<Int32>.size))
        var sndbuf: Int32 = 8 << 20
        _ = setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sndbuf, socklen_t(MemoryLayout<Int32>.size))
        fd = s
        self.batch = batch
        cycleLength = cycle.count
        let stride = ((frames.map(\.count).max() ?? 64) + 63) & ~63
        let arena = UnsafeMutableRawPointer.allocate(byteCount: stride * max(frames.count, 1), alignment: 64)
        for (i, f) in frames.enumerated() {
            f.withUnsafeBytes { (arena + i * stride).copyMemory(from: $0.baseAddress!, byteCount: f.count) }
        }
        self.arena = arena
        // The cycle plus `batch` more positions (its start again), so every send is one slice.
        let count = cycle.count + batch
        let iovecs = UnsafeMutablePointer<iovec>.allocate(capacity: count)
        let messages = UnsafeMutablePointer<MMsgHdr>.allocate(capacity: count)
        self.iovecs = iovecs
        self.messages = messages
        for k in 0..<count {
            let flow = cycle[k % cycle.count]
            iovecs[k] = iovec(iov_base: arena + flow * stride, iov_len: frames[flow].count)
            messages[k] = MMsgHdr(header: msghdr(msg_name: nil, msg_namelen: 0, msg_iov: iovecs + k, msg_iovlen: 1,
                                                 msg_control: nil, msg_controllen: 0, msg_flags: 0), length: 0)
        }
    }

    deinit {
        close(fd)
        arena.deallocate()
        iovecs.deallocate()
        messages.deallocate()
    }

    /// Sends until `end` (monotonic ns) or `maxFrames`; `rate` total frames/s, nil for flat out.
    public func run(end: UInt64, rate: Double?, maxFrames: UInt64 = .max) -> Result {
        var r = Result()
        let cpu0 = threadCPUNanoseconds()
        let start = monotonicNanoseconds()
        var position = 0
        var idleSince: UInt64 = start
        while r.sent < maxFrames {
            let now = monotonicNanoseconds()
            if now >= end { break }
            var n = batch
            if let rate {
                let due = UInt64(Double(now - start) * rate / 1e9)
                let owed = due > r.sent ? Int(min(due - r.sent, UInt64(batch))) : 0
                if owed < batch && (owed == 0 || now - idleSince < 1_000_000) {
                    // Wait for a full batch, but never let a partial one wait more than 1 ms.
                    let untilBatch = (Double(r.sent + UInt64(batch)) / rate * 1e9) - Double(now - start)
                    sleepNanoseconds(UInt64(max(20_000, min(untilBatch, 200_000))))
                    continue
                }
                n = owed
            }
            n = Int(min(UInt64(n), maxFrames - r.sent))
            let rc = c_sendmmsg(fd, messages + position, UInt32(n), 0)
            r.calls += 1
            idleSince = monotonicNanoseconds()
            if rc <= 0 {
                // ENOBUFS / EAGAIN: the device queue is full; give the receiver a moment.
                r.failedCalls += 1
                sched_yield()
                continue
            }
            r.sent += UInt64(rc)
            position = (position + Int(rc)) % cycleLength
        }
        r.threadCPUNanoseconds = threadCPUNanoseconds() - cpu0
        return r
    }
}
