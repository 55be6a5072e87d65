import CTLS

/// Why a TLS context could not be made, or why a session ended.
public enum TLSError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The certificate, key or settings were refused (missing file, bad PEM, key mismatch), with
    /// OpenSSL's reason.
    case context(String)
    /// The session failed (CT_FATAL): the connection must be closed, after sending what
    /// `takeOutput` still holds (usually an alert).
    case fatal(TLSFailure, reason: String)
    /// A write after `shutdown()` (CT_CLOSED).
    case closed
    /// OpenSSL could not allocate a session, or took fewer bytes than fed.
    case outOfMemory

    public var description: String {
        switch self {
        case .context(let reason): return "TLS: \(reason)"
        case .fatal(let failure, let reason): return "TLS \(failure): \(reason)"
        case .closed: return "TLS: the session was shut down"
        case .outOfMemory: return "TLS: out of memory"
        }
    }
}

/// The category of a session's failure (CTLS's CT_ERROR_*).
public enum TLSFailure: Int32, CustomStringConvertible, Sendable {
    /// The handshake failed on this side (not a ClientHello, no shared cipher or version...).
    case handshake = 1
    /// The peer sent a fatal alert.
    case alertReceived = 2
    /// A TLS 1.2 renegotiation was attempted: refused by a server, or refused by the peer of a client.
    case renegotiation = 3
    /// Anything else (bad record MAC, decode error... after the handshake).
    case other = 4

    public var description: String {
        switch self {
        case .handshake: return "handshake failure"
        case .alertReceived: return "alert received"
        case .renegotiation: return "renegotiation refused"
        case .other: return "error"
        }
    }
}

/// A protocol version a context allows.
public enum TLSVersion: Int32, Sendable {
    case tls12 = 0x0303
    case tls13 = 0x0304
}

/// A TLS configuration that sessions are made from (an OpenSSL SSL_CTX). Shared read-only by all
/// worker threads. OpenSSL counts references: sessions made from a context keep working after the
/// context is released, so certificates are re-read (SIGHUP) by making a new context and handing it
/// to new connections only.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer

    /// The relay's server context: TLS 1.2 to 1.3, the PEM certificate chain (leaf first) and its
    /// private key, which must match. No renegotiation, no compression, idle sessions hold no record
    /// buffers; ALPN "stun.turn" (RFC 7443) when the client offers it, none when it offers only
    /// other protocols.
    public init(certificatePath: String, keyPath: String) throws(TLSError) {
        var message = [CChar](repeating: 0, count: 512)
        guard let p = ct_server_context_new(certificatePath, keyPath, &message, message.count) else {
            throw .context(Self.string(message))
        }
        pointer = p
    }

    /// A client context that does NOT verify the server's certificate: for tests and the
    /// benchmark's load generator. Offers the ALPN protocols of `alpn` when given (comma-separated,
    /// in order of preference: "stun.turn", "h2,stun.turn").
    public init(clientALPN alpn: String?, minimumVersion: TLSVersion = .tls12, maximumVersion: TLSVersion = .tls13)
        throws(TLSError)
    {
        var message = [CChar](repeating: 0, count: 512)
        guard let p = ct_client_context_new(alpn, &message, message.count) else {
            throw .context(Self.string(message))
        }
        guard ct_context_set_versions(p, minimumVersion.rawValue, maximumVersion.rawValue, &message, message.count) == 0
        else {
            ct_context_free(p)
            throw .context(Self.string(message))
        }
        pointer = p
    }

    deinit { ct_context_free(pointer) }

    static func string(_ chars: [CChar]) -> String {
        chars.withUnsafeBufferPointer { b in
            String(decoding: UnsafeRawBufferPointer(b).prefix { $0 != 0 }, as: UTF8.self)
        }
    }
}
