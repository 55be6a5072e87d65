import CUDP
import CURing
import Glibc

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
    var completionOverflow: (overflowedReaps: UInt64, lost: UInt64) {
        var reaps: UInt64 = 0
        var lost: UInt32 = 0
        cu_ring_overflow(ring, &reaps, &lost)
        return (reaps, UInt64(lost))
    }
    @inline(__always) func armReceive(fd: Int32, userData: UInt64) -> Bool {
        cu_prep_recv_multishot(ring, fd, userData) == 0
    }
    func cancelReceive(fd: Int32, userData: UInt64) { _ = cu_prep_cancel(ring, userData, UserData.cancel) }
    static var receiveStopsAtOnce: Bool { false }
    func pauseStreamReceive(fd: Int32, userData: UInt64) { _ = cu_prep_cancel(ring, userData, UserData.cancel) }
    func forgetStream(fd: Int32) {}
    func pollIn(fd: Int32, userData: UInt64) { _ = cu_prep_poll_in(ring, fd, userData) }
    func pollOut(fd: Int32, userData: UInt64) -> Bool { cu_prep_poll_out(ring, fd, userData) == 0 }
    func armAccept(fd: Int32, userData: UInt64) -> Bool { cu_prep_accept_multishot(ring, fd, userData) == 0 }
    func armStreamReceive(fd: Int32, userData: UInt64) -> Bool {
        cu_prep_stream_recv_multishot(ring, fd, userData) == 0
    }
    func sendStream(fd: Int32, bytes: UnsafeRawPointer, length: Int, userData: UInt64) -> Bool {
        cu_prep_stream_send(ring, fd, bytes, UInt32(clamping: length), userData) == 0
    }
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
