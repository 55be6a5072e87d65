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

/// One stream connection of a worker: a client's (TCP or TLS), or a TCP allocation's peer data
/// connection (RFC 6062).
struct StreamConnection {
    enum State { case free, open, closing }
    /// What the connection is to the relay.
    enum Role: Equatable {
        /// A client's connection: STUN and ChannelData framed for the core; after a successful
        /// ConnectionBind, a client data connection spliced to `partner`.
        case client
        /// A TCP allocation's peer data connection (accepted on its relayed address, or connected
        /// for a Connect): nothing is read until it is spliced to `partner`.
        case peer
        /// An outgoing connection for Connect `attempt`, not connected yet.
        case connecting(attempt: UInt32)
    }
    var state = State.free
    var role = Role.client
    /// The connection this one is spliced to (RFC 6062 §5.4: bytes as-is both ways), or -1.
    var partner = -1
    var partnerGeneration: UInt16 = 0
    /// A ConnectionBind was framed and handed to the core: what the client sent after it waits in
    /// `held` (unframed) until the core has answered: spliced, the bytes go to the peer; refused,
    /// they are framed again.
    var awaitingBindAnswer = false
    var held = StreamBytes()
    /// Not reading because `partner`'s write buffer is full (backpressure across the splice).
    var pausedForPartner = false
    /// Closing once its output is sent: a data connection whose partner ended first (what the
    /// peer sent before closing still reaches the client). Not read from meanwhile.
    var lingering = false
    /// Moving to worker `handingOffTo` (its ConnectionBind names a connection held there): not
    /// read from, what still arrives is kept in `held` and moves with it. -1: not moving.
    var handingOffTo = -1
    /// Came from another worker; never moves again.
    var adopted = false
    /// Messages framed from it so far (only a first-message ConnectionBind moves a connection).
    var messagesFramed = 0
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
        pending.count + sending.count - sentOffset + (reassembler?.bufferedBytes ?? 0) + held.count
    }

    /// Bytes waiting to be written (what backpressure is measured by).
    var queuedOutput: Int { pending.count + sending.count - sentOffset }

    var isSpliced: Bool { partner >= 0 }
}
