import CBatched
import CUDP
import Glibc

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
    var completionOverflow: (overflowedReaps: UInt64, lost: UInt64) { (0, 0) }
    @inline(__always) func armReceive(fd: Int32, userData: UInt64) -> Bool { cb_watch(loop, fd, userData) == 0 }
    func cancelReceive(fd: Int32, userData: UInt64) { _ = cb_unwatch(loop, fd) }
    static var receiveStopsAtOnce: Bool { true }
    func pauseStreamReceive(fd: Int32, userData: UInt64) { _ = cb_pause_stream(loop, fd) }
    func forgetStream(fd: Int32) { _ = cb_unwatch(loop, fd) }
    func pollIn(fd: Int32, userData: UInt64) { _ = cb_poll_in(loop, fd, userData) }
    func pollOut(fd: Int32, userData: UInt64) -> Bool { cb_poll_out(loop, fd, userData) == 0 }
    func armAccept(fd: Int32, userData: UInt64) -> Bool { cb_watch_accept(loop, fd, userData) == 0 }
    func armStreamReceive(fd: Int32, userData: UInt64) -> Bool { cb_watch_stream(loop, fd, userData) == 0 }
    func sendStream(fd: Int32, bytes: UnsafeRawPointer, length: Int, userData: UInt64) -> Bool {
        cb_stream_send(loop, fd, bytes, UInt32(clamping: length), userData) == 0
    }
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
