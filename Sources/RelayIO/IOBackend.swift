import CURing
import Glibc

/// What differs between the two ways a worker does I/O: how receives are armed and delivered, and
/// how sends are submitted and completed. Everything else (buffer pools and their headroom layout,
/// GRO splitting, GSO grouping, the send table, the core's batches, counters) is the worker's and is
/// shared. Both backends report through the same decoded `cu_completion`s, so the worker loop is
/// one piece of code, specialized per backend (`Worker<P, B>`): no existential on the data path.
protocol IOBackend {
    /// Sets the backend up over the worker's receive slots (all of them free at first).
    init(configuration: WorkerConfiguration, receiveBuffers rx: ReceiveBufferPool) throws(RelayIOError)
    /// Releases kernel resources; the receive slots may be freed afterwards.
    func shutdown()

    var sendSlotCount: Int { get }
    /// Starts delivering `fd`'s datagrams as completions carrying `userData` (until one arrives
    /// without `CU_CQE_F_MORE`). False when it could not be armed now.
    func armReceive(fd: Int32, userData: UInt64) -> Bool
    /// Stops the receive armed with `userData` on `fd` (the socket is closed right after).
    func cancelReceive(fd: Int32, userData: UInt64)
    /// One completion carrying `userData` when `fd` becomes readable.
    func pollIn(fd: Int32, userData: UInt64)

    func sendIovecs(_ slot: Int) -> UnsafeMutablePointer<iovec>?
    /// Queues sendmsg of `slot`'s first `count` iovecs; false when it cannot be queued.
    func prepareSend(slot: Int, fd: Int32, destination: inout cu_addr, count: Int, segmentSize: UInt16,
                     userData: UInt64) -> Bool
    /// Submits what is queued and waits up to `timeout` ns for a completion (0: no wait).
    func submitAndWait(_ timeout: UInt64) -> Int32
    func reap(into out: UnsafeMutablePointer<cu_completion>, max: Int) -> Int
    /// Hands `count` receive slots back.
    func returnBuffers(_ ids: UnsafePointer<UInt16>, count: Int)
}

/// io_uring: multishot recvmsg into a provided buffer ring, sendmsg SQEs (see `CURing.h`).
struct IOUringBackend: IOBackend {
    let ring: OpaquePointer
    let batchWaitCompletions: UInt32
    let batchWaitMicroseconds: UInt32

    init(configuration: WorkerConfiguration, receiveBuffers rx: ReceiveBufferPool) throws(RelayIOError) {
        var error: Int32 = 0, stage: Int32 = 0
        guard let ring = cu_ring_create(UInt32(configuration.ringEntries), rx.base, UInt32(rx.count),
                                        UInt32(rx.stride), UInt32(rx.kernelBytes), &error, &stage)
        else { throw .ring(stage: stage, errno: -error) }
        self.ring = ring
        batchWaitCompletions = UInt32(clamping: configuration.batchWaitCompletions)
        batchWaitMicroseconds = UInt32(clamping: configuration.batchWaitMicroseconds)
    }

    func shutdown() { cu_ring_destroy(ring) }
    var sendSlotCount: Int { Int(cu_send_slot_count(ring)) }
    @inline(__always) func armReceive(fd: Int32, userData: UInt64) -> Bool {
        cu_prep_recv_multishot(ring, fd, userData) == 0
    }
    func cancelReceive(fd: Int32, userData: UInt64) { _ = cu_prep_cancel(ring, userData, UserData.cancel) }
    func pollIn(fd: Int32, userData: UInt64) { _ = cu_prep_poll_in(ring, fd, userData) }
    @inline(__always) func sendIovecs(_ slot: Int) -> UnsafeMutablePointer<iovec>? {
        cu_send_iovecs(ring, UInt32(truncatingIfNeeded: slot))
    }
    @inline(__always) func prepareSend(slot: Int, fd: Int32, destination: inout cu_addr, count: Int,
                                       segmentSize: UInt16, userData: UInt64) -> Bool {
        cu_prep_send(ring, UInt32(truncatingIfNeeded: slot), fd, &destination, UInt32(truncatingIfNeeded: count),
                     segmentSize, userData) == 0
    }
    @inline(__always) func submitAndWait(_ timeout: UInt64) -> Int32 {
        cu_submit_and_wait_batch(ring, timeout, batchWaitCompletions, batchWaitMicroseconds)
    }
    @inline(__always) func reap(into out: UnsafeMutablePointer<cu_completion>, max: Int) -> Int {
        Int(cu_reap(ring, out, UInt32(truncatingIfNeeded: max)))
    }
    @inline(__always) func returnBuffers(_ ids: UnsafePointer<UInt16>, count: Int) {
        cu_buffers_return(ring, ids, UInt32(truncatingIfNeeded: count))
    }
}

/// Plain batched syscalls: epoll for readiness across the listeners and allocation sockets,
/// recvmmsg into the same receive slots (same 96-byte headroom layout, UDP_GRO), one sendmmsg per
/// run of sends on a socket (UDP_SEGMENT). For hosts that refuse io_uring (see `CBatched.h`).
struct BatchedSyscallBackend: IOBackend {
    let loop: OpaquePointer

    init(configuration: WorkerConfiguration, receiveBuffers rx: ReceiveBufferPool) throws(RelayIOError) {
        var error: Int32 = 0
        guard let loop = cb_loop_create(rx.base, UInt32(rx.count), UInt32(rx.stride), UInt32(rx.kernelBytes),
                                        UInt32(max(1, configuration.ringEntries)), &error)
        else { throw .configuration("cannot set up the batched-syscall loop (epoll): \(RelayIOError.text(-error))") }
        self.loop = loop
    }

    func shutdown() { cb_loop_destroy(loop) }
    var sendSlotCount: Int { Int(cb_send_slot_count(loop)) }
    @inline(__always) func armReceive(fd: Int32, userData: UInt64) -> Bool { cb_watch(loop, fd, userData) == 0 }
    func cancelReceive(fd: Int32, userData: UInt64) { _ = cb_unwatch(loop, fd) }
    func pollIn(fd: Int32, userData: UInt64) { _ = cb_poll_in(loop, fd, userData) }
    @inline(__always) func sendIovecs(_ slot: Int) -> UnsafeMutablePointer<iovec>? {
        cb_send_iovecs(loop, UInt32(truncatingIfNeeded: slot))
    }
    @inline(__always) func prepareSend(slot: Int, fd: Int32, destination: inout cu_addr, count: Int,
                                       segmentSize: UInt16, userData: UInt64) -> Bool {
        cb_prep_send(loop, UInt32(truncatingIfNeeded: slot), fd, &destination, UInt32(truncatingIfNeeded: count),
                     segmentSize, userData) == 0
    }
    @inline(__always) func submitAndWait(_ timeout: UInt64) -> Int32 { cb_submit_and_wait(loop, timeout) }
    @inline(__always) func reap(into out: UnsafeMutablePointer<cu_completion>, max: Int) -> Int {
        Int(cb_reap(loop, out, UInt32(truncatingIfNeeded: max)))
    }
    @inline(__always) func returnBuffers(_ ids: UnsafePointer<UInt16>, count: Int) {
        cb_buffers_return(loop, ids, UInt32(truncatingIfNeeded: count))
    }
}

/// Which backend the workers run.
public enum IOBackendKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case ioUring = "io-uring"
    case batchedSyscalls = "batched-syscalls"
    public var description: String { rawValue }
}

/// What an operator asks for with `--io-backend`.
public enum IOBackendChoice: String, Sendable, CaseIterable {
    case auto
    case ioUring = "io-uring"
    case batchedSyscalls = "batched-syscalls"

    public enum Resolution: Sendable, Equatable {
        /// Run `kind`; `fallbackReason` says why `auto` did not get io_uring.
        case use(IOBackendKind, fallbackReason: String?)
        /// io_uring was demanded and the host refuses it: the cause and the fix.
        case refused(String)
    }

    /// Resolves the choice against this host (probing io_uring unless batched syscalls were asked for).
    public func resolve(probe: () -> IOUringProbe.Outcome = IOUringProbe.run) -> Resolution {
        switch self {
        case .batchedSyscalls: return .use(.batchedSyscalls, fallbackReason: nil)
        case .ioUring:
            if case .unavailable(let why) = probe() { return .refused(why) }
            return .use(.ioUring, fallbackReason: nil)
        case .auto:
            if case .unavailable(let why) = probe() { return .use(.batchedSyscalls, fallbackReason: why) }
            return .use(.ioUring, fallbackReason: nil)
        }
    }
}
