import Glibc
import STUN

/// Bytes waiting to go out on one connection, in one malloc'd block that exists only while there
/// are bytes (an idle connection holds none). Never moved while a send of it is in flight: the
/// connection keeps two, one being sent and one being filled.
struct StreamBytes {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var count = 0
    private(set) var capacity = 0

    mutating func append(_ bytes: UnsafeRawPointer, _ length: Int, zeros: Int = 0) {
        let needed = count + length + zeros
        if needed > capacity {
            let grown = max(needed, max(2048, capacity * 2))
            guard let block = realloc(base, grown) else { return }
            base = block
            capacity = grown
        }
        (base! + count).copyMemory(from: bytes, byteCount: length)
        if zeros > 0 { (base! + count + length).initializeMemory(as: UInt8.self, repeating: 0, count: zeros) }
        count = needed
    }

    mutating func release() {
        free(base)
        base = nil
        count = 0
        capacity = 0
    }
}

/// One client connection (TCP or TLS) of a worker.
struct StreamConnection {
    enum State { case free, open, closing }
    var state = State.free
    var fd: Int32 = -1
    var generation: UInt16 = 0
    var transport = StreamTransport.tcp
    var client = TransportAddress(ip: .v4(.any), port: 0)
    var reassembler: StreamReassembler?
    var tls: (any TLSServerSession)?
    var handshakeDone = false
    var receiveArmed = false
    var awaitingRearm = false
    /// Being filled; `sending` is in flight (from `sentOffset`).
    var pending = StreamBytes()
    var sending = StreamBytes()
    var sentOffset = 0
    var sendInFlight = false
    var queuedForFlush = false
    var openedAt: UInt64 = 0
    var lastMessageAt: UInt64 = 0
    /// When the partial message now held began arriving (0: none).
    var partialSince: UInt64 = 0
    /// When the write buffer first refused a message (0: it has room).
    var fullSince: UInt64 = 0

    /// Moves what is pending into `sending` (the bytes the next send takes).
    mutating func beginSend() {
        swap(&pending, &sending)
        sentOffset = 0
    }

    /// A send could not be submitted: the unsent bytes go back in front of what is pending.
    mutating func abandonSend() {
        guard let base = sending.base else { return }
        var merged = StreamBytes()
        merged.append(base + sentOffset, sending.count - sentOffset)
        if let p = pending.base { merged.append(p, pending.count) }
        sending.release()
        pending.release()
        pending = merged
        sentOffset = 0
    }

    var buffered: Int {
        pending.count + sending.count - sentOffset + (reassembler?.bufferedBytes ?? 0)
    }
}
