import CTLS

/// One TLS connection as a sans-IO state machine (CTLS over OpenSSL memory BIOs): no socket, no
/// clock. The caller feeds the ciphertext it received, reads plaintext (which also drives the
/// handshake), writes plaintext, and sends what `takeOutput` hands back (handshake records,
/// application records, alerts) — after every `read` and `write`, and before closing after a
/// failure (the alert). Used by one thread at a time.
public final class TLSSession {
    /// What a `read` produced.
    public enum ReadResult: Equatable, Sendable {
        /// This many plaintext bytes at the start of the buffer; read again, more may be buffered.
        case plaintext(Int)
        /// Nothing to read until more ciphertext is fed (or the buffer was empty).
        case needsInput
        /// The peer sent close_notify: no more plaintext will come.
        case closed
    }

    public enum Role: Sendable {
        case server, client
    }

    private let pointer: OpaquePointer
    public let role: Role

    /// A new session; it keeps its own reference to `context`'s configuration.
    public init(context: TLSContext, role: Role) throws(TLSError) {
        guard let p = ct_session_new(context.pointer, role == .server ? 1 : 0) else { throw .outOfMemory }
        pointer = p
        self.role = role
    }

    deinit { ct_session_free(pointer) }

    /// Hands received ciphertext to the session (all of it is kept).
    public func feed(_ ciphertext: UnsafeRawBufferPointer) throws(TLSError) {
        guard let base = ciphertext.baseAddress, !ciphertext.isEmpty else { return }
        guard ct_session_feed(pointer, base, ciphertext.count) == ciphertext.count else { throw .outOfMemory }
    }

    public func feed(_ ciphertext: [UInt8]) throws(TLSError) {
        try ciphertext.withUnsafeBytes { b in Result { () throws(TLSError) in try feed(b) } }.get()
    }

    /// Drives the handshake and decrypts into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(TLSError) -> ReadResult {
        let n = ct_session_read(pointer, buffer.baseAddress, buffer.count)
        if n > 0 { return .plaintext(n) }
        switch n {
        case 0: return .needsInput
        case Int(CT_CLOSED): return .closed
        default: throw failure
        }
    }

    /// Encrypts all of `plaintext` into records (take them with `takeOutput`). False when the
    /// handshake has not finished yet: nothing was taken, the caller queues and writes later.
    public func write(_ plaintext: UnsafeRawBufferPointer) throws(TLSError) -> Bool {
        guard let base = plaintext.baseAddress, !plaintext.isEmpty else { return true }
        let n = ct_session_write(pointer, base, plaintext.count)
        if n == plaintext.count { return true }
        switch n {
        case 0: return false
        case Int(CT_CLOSED): throw .closed
        default: throw failure
        }
    }

    public func write(_ plaintext: [UInt8]) throws(TLSError) -> Bool {
        try plaintext.withUnsafeBytes { b in Result { () throws(TLSError) in try write(b) } }.get()
    }

    /// Ciphertext bytes waiting to be sent.
    public var outputPending: Int { ct_session_output_pending(pointer) }

    /// Moves up to `buffer.count` bytes of waiting ciphertext into `buffer`; returns their number.
    public func takeOutput(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        return ct_session_take_output(pointer, base, buffer.count)
    }

    /// All waiting ciphertext (tests, tools).
    public func takeOutput() -> [UInt8] {
        let pending = outputPending
        guard pending > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: pending) { b, count in
            count = takeOutput(into: UnsafeMutableRawBufferPointer(b))
        }
    }

    public var isHandshakeDone: Bool { ct_session_handshake_done(pointer) != 0 }

    /// Ciphertext received that has not made a whole record yet (a record begun, not finished).
    public var hasPartialInput: Bool { ct_session_input_pending(pointer) != 0 }

    /// The negotiated ALPN protocol ("stun.turn"), nil when none.
    public var negotiatedALPN: String? {
        var b = [CChar](repeating: 0, count: 256)
        guard ct_session_alpn(pointer, &b, b.count) > 0 else { return nil }
        return TLSContext.string(b)
    }

    /// "TLSv1.3", "TLSv1.2".
    public var protocolVersion: String { String(cString: ct_session_version(pointer)) }

    /// The common name of the peer's certificate (a client's view of the server), nil when none.
    public var peerCertificateCommonName: String? {
        var b = [CChar](repeating: 0, count: 256)
        guard ct_session_peer_cert_subject(pointer, &b, b.count) > 0 else { return nil }
        return TLSContext.string(b)
    }

    /// Queues close_notify (take it with `takeOutput`); later writes throw `.closed`. Nothing
    /// before the handshake has finished or after a failure.
    public func shutdown() { ct_session_shutdown(pointer) }

    /// After a failure: its category and OpenSSL's reason.
    public var failure: TLSError {
        let category = TLSFailure(rawValue: ct_session_error_category(pointer)) ?? .other
        return .fatal(category, reason: String(cString: ct_session_error(pointer)))
    }

    /// Tests only: a TLS 1.2 client starts a renegotiation (its ClientHello into the output).
    /// False when OpenSSL refused to start one.
    func startRenegotiationForTesting() -> Bool { ct_session_test_renegotiate(pointer) == 1 }
}
