import CUDP
import Glibc

/// What differs between the two ways a worker does I/O: how receives are armed and delivered, and
/// how sends are submitted and completed. Everything else (buffer pools and their headroom layout,
/// GRO splitting, GSO grouping, the send table, the core's batches, counters) is the worker's and is
/// shared. Both backends report through the same decoded `cu_completion`s and take `cu_addr`
/// destinations (the neutral CUDP types; only the conforming types see CURing or CBatched), so
/// the worker loop is one piece of code, specialized per backend (`Worker<P, B>`): no existential on
/// the data path.
protocol IOBackend {
    /// Sets the backend up over the worker's receive slots (all of them free at first).
    init(configuration: WorkerConfiguration, receiveBuffers rx: ReceiveBufferPool) throws(RelayIOError)
    /// Releases kernel resources; the receive slots may be freed afterwards.
    func shutdown()

    var sendSlotCount: Int { get }
    /// Completion-queue overflow so far: reaps that found completions the kernel could not post
    /// for want of room (kept by the kernel and posted later), and completions it dropped.
    /// Always zero for a backend whose completions are not a kernel queue.
    var completionOverflow: (overflowedReaps: UInt64, lost: UInt64) { get }
    /// Starts delivering `fd`'s datagrams as completions carrying `userData` (until one arrives
    /// without `CU_CQE_F_MORE`). False when it could not be armed now.
    func armReceive(fd: Int32, userData: UInt64) -> Bool
    /// Stops the receive armed with `userData` on `fd` (the socket is closed right after).
    func cancelReceive(fd: Int32, userData: UInt64)
    /// Stops delivering what arrives on stream socket `fd` (armed with `userData`) without
    /// touching its send; `armStreamReceive` starts again. Stops at once when
    /// `receiveStopsAtOnce`, else a last completion without `CU_CQE_F_MORE` says so.
    func pauseStreamReceive(fd: Int32, userData: UInt64)
    /// The stream socket `fd` leaves this backend (it moves to another worker): nothing of it is
    /// in flight any more.
    func forgetStream(fd: Int32)
    /// True when `cancelReceive` and `pauseStreamReceive` stop the receive before they return (no completion ends it);
    /// false when a last completion without `CU_CQE_F_MORE` says it has stopped.
    static var receiveStopsAtOnce: Bool { get }
    /// One completion carrying `userData` when `fd` becomes readable.
    func pollIn(fd: Int32, userData: UInt64)
    /// One completion carrying `userData` when `fd` becomes writable (a non-blocking connect
    /// finished, either way). Stopped with `cancelReceive(fd:userData:)`.
    func pollOut(fd: Int32, userData: UInt64) -> Bool

    // Streams (TURN over TCP/TLS; the worker's `Streams` part).
    /// Starts delivering connections accepted on the TCP listener `fd` (res = the new fd) as
    /// completions carrying `userData`, until one arrives without `CU_CQE_F_MORE`.
    func armAccept(fd: Int32, userData: UInt64) -> Bool
    /// Starts delivering what arrives on the stream socket `fd`, each chunk in a receive slot at
    /// offset 0 (`payload_length` bytes; res 0 is the end of the stream), until a completion
    /// without `CU_CQE_F_MORE`. `userData`'s kind is `CU_KIND_STREAM_RECEIVE`.
    func armStreamReceive(fd: Int32, userData: UInt64) -> Bool
    /// Sends `length` bytes at `bytes` on the stream socket `fd` (untouched until the one
    /// completion, res = bytes sent or -errno). One at a time per socket.
    func sendStream(fd: Int32, bytes: UnsafeRawPointer, length: Int, userData: UInt64) -> Bool

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
