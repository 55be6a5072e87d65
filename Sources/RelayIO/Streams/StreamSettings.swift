import STUN
import Synchronization
/// TURN over TCP and TLS (RFC 8656 §3.1): which stream listeners a worker has and the bounds on
/// its connections. The bounds are per worker (each worker has its own listeners on the shared
/// ports, `SO_REUSEPORT`, and its own connections; `RelaySettings` divides the process-wide
/// options by the number of workers), except connections per source address, counted across the
/// workers in `sourceCounts`.
public struct StreamSettings: Sendable {
    /// The TCP listener's port on every listen address (usually the UDP port, 3478); nil: none.
    public var tcpPort: UInt16?
    /// The TLS listener's port (5349, or 443); nil: none. Needs `tls`.
    public var tlsPort: UInt16?
    /// Makes the TLS session of each accepted TLS connection (the certificate in use now: a reload
    /// swaps what it hands out, connections already open keep theirs).
    public var tls: (any TLSServerSessionFactory)?
    /// Connections open at once (TCP and TLS together).
    public var maxConnections = 5_000
    /// Connections open at once from one IP address, all workers together (`sourceCounts`).
    public var maxConnectionsPerSource = 100
    /// The open client connections per IP address of the whole process: one object, shared by
    /// every copy of these settings (every worker), touched at accept and close only.
    public var sourceCounts = StreamSourceCounts()
    /// TLS handshakes in progress at once.
    public var maxHandshakes = 256
    /// A TLS handshake must finish within this.
    public var handshakeTimeoutNanoseconds: UInt64 = 10_000_000_000
    /// A message begun must be complete within this (slowloris).
    public var messageTimeoutNanoseconds: UInt64 = 10_000_000_000
    /// A connection with no message at all for this long is closed. An allocation's client
    /// refreshes at least every 600 s (the longest lifetime granted by default is 3600 s, but
    /// clients refresh well before expiry), so the default leaves room.
    public var idleTimeoutNanoseconds: UInt64 = 900_000_000_000
    /// Bytes waiting to be sent to one client (after TLS). A client that does not read loses the
    /// messages that do not fit (counted); at the bound the connection is kept, since a relay
    /// drops like a router. `writeBufferCloseAfterNanoseconds` closes one that stays full.
    public var writeBufferBytes = 256 * 1024
    /// A client whose write buffer stays full this long is closed (it stopped reading).
    public var writeBufferCloseAfterNanoseconds: UInt64 = 30_000_000_000
    /// The largest framed message taken from a client; larger ones are skipped and counted.
    public var maxMessageBytes = 4 + 65535 + 3
    /// Frame channel numbers up to 0x7FFF (the core's `rfc5766ChannelNumbers`).
    public var rfc5766ChannelNumbers = false
    /// listen(2) backlog of each stream listener.
    public var backlog: Int32 = 1024

    public init() {}

    public var enabled: Bool { tcpPort != nil || (tlsPort != nil && tls != nil) }
}

/// Client connections open per source IP address, across the workers of one process (the kernel
/// spreads one address's connections over every worker's listener, so a per-worker count would
/// let an address open N × the limit).
public final class StreamSourceCounts: Sendable {
    private let counts = Mutex<[IPAddress: Int]>([:])

    public init() {}

    /// Counts one more connection from `ip` unless it has `limit` open already.
    func acquire(_ ip: IPAddress, limit: Int) -> Bool {
        counts.withLock { counts in
            let open = counts[ip, default: 0]
            guard open < limit else { return false }
            counts[ip] = open + 1
            return true
        }
    }

    func release(_ ip: IPAddress) {
        counts.withLock { counts in
            guard let open = counts[ip] else { return }
            counts[ip] = open <= 1 ? nil : open - 1
        }
    }

}

/// A TLS server session as the worker drives it (sans-IO): ciphertext in, plaintext out;
/// plaintext in, ciphertext out. One per TLS connection, used on the worker's thread only.
public protocol TLSServerSession: AnyObject {
    /// Feeds ciphertext received from the client and hands every plaintext byte it decrypts to
    /// `plaintext`, in order (possibly in several pieces). Handshake records it must answer are
    /// queued as output.
    func receive(_ ciphertext: UnsafeRawBufferPointer, plaintext: (UnsafeRawBufferPointer) -> Void) -> TLSReceiveOutcome
    /// Encrypts `plaintext` for the client (queued as output). False when it cannot (the session
    /// failed; before the handshake ends the bytes are kept and sent after it).
    func send(_ plaintext: UnsafeRawBufferPointer) -> Bool
    /// Hands the ciphertext waiting to be sent to `body` and forgets it.
    func takeOutput(_ body: (UnsafeRawBufferPointer) -> Void)
    var handshakeComplete: Bool { get }
    /// Received ciphertext waits for the rest of its record.
    var hasPartialRecord: Bool { get }
}

public enum TLSReceiveOutcome: Equatable, Sendable {
    case ok
    /// The client sent close_notify.
    case closed
    /// The session failed (handshake failure, alert, renegotiation attempt, bad record): close.
    case failed(String)
}

/// Makes TLS server sessions; shared by all workers (thread-safe).
public protocol TLSServerSessionFactory: AnyObject, Sendable {
    /// A new server session with the certificate in use now; nil when none is loaded.
    func makeSession() -> (any TLSServerSession)?
}
