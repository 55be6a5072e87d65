import Synchronization

/// The relay's TLS server certificate, shared by every worker: each accepted TLS connection gets
/// a session from the context in use at that moment. `reload()` (SIGHUP) reads the files again
/// and swaps the context; connections already open keep theirs (OpenSSL counts its references),
/// so a reload drops no connection. A failed reload keeps the certificate in use.
public final class TLSCertificate: TLSServerSessionFactory {
    public let certificatePath: String
    public let keyPath: String
    private let context: Mutex<TLSContext>

    /// Loads the PEM chain and key; throws with OpenSSL's reason when they cannot be used.
    public init(certificatePath: String, keyPath: String) throws(TLSError) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        context = Mutex(try TLSContext(certificatePath: certificatePath, keyPath: keyPath))
    }

    /// Reads the files again; on success new connections use the new certificate.
    public func reload() throws(TLSError) {
        let fresh = try TLSContext(certificatePath: certificatePath, keyPath: keyPath)
        context.withLock { $0 = fresh }
    }

    public func makeSession() -> (any TLSServerSession)? {
        let current = context.withLock { $0 }
        guard let session = try? TLSSession(context: current, role: .server) else { return nil }
        return ServerTLSSession(session)
    }
}

/// `TLSSession` as the worker drives it (`TLSServerSession`).
final class ServerTLSSession: TLSServerSession {
    let session: TLSSession
    /// Plaintext written before the handshake finished (a server never answers before the
    /// client's first message, so this stays empty in practice; bounded anyway).
    private var early: [UInt8] = []

    init(_ session: TLSSession) { self.session = session }

    /// One worker thread's plaintext scratch (a TLS record holds at most 16 KiB).
    private static let scratchBytes = 16 * 1024 + 256

    func receive(_ ciphertext: UnsafeRawBufferPointer, plaintext: (UnsafeRawBufferPointer) -> Void) -> TLSReceiveOutcome {
        do throws(TLSError) {
            try session.feed(ciphertext)
        } catch {
            return .failed(error.description)
        }
        return withUnsafeTemporaryAllocation(byteCount: Self.scratchBytes, alignment: 16) { scratch in
            while true {
                let result: TLSSession.ReadResult
                do throws(TLSError) {
                    result = try session.read(into: scratch)
                } catch {
                    return .failed(error.description)
                }
                switch result {
                case .plaintext(let n):
                    plaintext(UnsafeRawBufferPointer(rebasing: scratch[0..<n]))
                case .needsInput:
                    if !early.isEmpty && session.isHandshakeDone {
                        let queued = early
                        early = []
                        _ = queued.withUnsafeBytes { send($0) }
                    }
                    return .ok
                case .closed:
                    return .closed
                }
            }
        }
    }

    func send(_ plaintext: UnsafeRawBufferPointer) -> Bool {
        do {
            if try session.write(plaintext) { return true }
            guard early.count + plaintext.count <= 64 * 1024 else { return false }
            early.append(contentsOf: plaintext)
            return true
        } catch {
            return false
        }
    }

    func takeOutput(_ body: (UnsafeRawBufferPointer) -> Void) {
        withUnsafeTemporaryAllocation(byteCount: 16 * 1024, alignment: 16) { buffer in
            while session.outputPending > 0 {
                let n = session.takeOutput(into: buffer)
                guard n > 0 else { return }
                body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            }
        }
    }

    var handshakeComplete: Bool { session.isHandshakeDone }
    var hasPartialRecord: Bool { session.hasPartialInput }
}
