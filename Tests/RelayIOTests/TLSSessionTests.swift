import CTLS
import Foundation
@testable import RelayIO
import Synchronization
import TestSupport
import Testing

/// TLS as a sans-IO layer (CTLS over OpenSSL memory BIOs): a client session and a server session
/// exchange their ciphertext in memory. The certificates are made by the `openssl` command at the
/// first test (P-256, one day, in a temporary directory).
@Suite(.serialized, .enabled(if: TLSFixture.openssl != nil, TLSFixture.opensslMissing))
struct TLSSessionTests {
    // MARK: handshake and data

    /// TLS 1.3 (the default) and TLS 1.2 (a client that allows only 1.2): the handshake finishes
    /// on both sides, and application data goes both ways.
    @Test(arguments: [TLSVersion.tls13, .tls12])
    func handshakeAndDataBothWays(version: TLSVersion) throws {
        let pair = try TLSPair(client: TLSContext(clientALPN: nil, minimumVersion: .tls12, maximumVersion: version))
        try pair.handshake()
        let expected = version == .tls13 ? "TLSv1.3" : "TLSv1.2"
        #expect(pair.server.protocolVersion == expected && pair.client.protocolVersion == expected)

        #expect(try pair.client.write(Array("allocate please".utf8)))
        #expect(try pair.server.write(Array("allocated".utf8)))
        let (toClient, toServer) = try pair.exchange()
        #expect(String(decoding: toServer, as: UTF8.self) == "allocate please")
        #expect(String(decoding: toClient, as: UTF8.self) == "allocated")
    }

    /// Before the handshake has finished a write takes nothing (the caller queues it).
    @Test func writeBeforeTheHandshakeIsNotTaken() throws {
        let pair = try TLSPair()
        #expect(try pair.client.write(Array("early".utf8)) == false)
        #expect(try pair.server.write(Array("early".utf8)) == false)
        try pair.handshake()
        #expect(try pair.client.write(Array("now".utf8)))
    }

    /// One small record fed in two parts, split at every byte boundary (a new record each time:
    /// records cannot be replayed), and one record fed a byte at a time.
    @Test func aRecordSplitAtEveryByteBoundary() throws {
        let pair = try TLSPair()
        try pair.handshake()
        let message = Array("ChannelData".utf8)
        #expect(try pair.client.write(message))
        let first = pair.client.takeOutput()
        let recordLength = first.count
        #expect(recordLength > message.count)
        try pair.server.feed(first)
        #expect(try TLSPair.readAll(pair.server) == message)

        var buffer = [UInt8](repeating: 0, count: 256)
        for split in 1..<recordLength {
            #expect(try pair.client.write(message))
            let record = pair.client.takeOutput()
            try #require(record.count == recordLength)
            try pair.server.feed(Array(record[..<split]))
            #expect(try pair.server.read(into: &buffer) == .needsInput, "split at \(split)")
            try pair.server.feed(Array(record[split...]))
            #expect(try pair.server.read(into: &buffer) == .plaintext(message.count), "split at \(split)")
            #expect(Array(buffer[..<message.count]) == message)
            #expect(try pair.server.read(into: &buffer) == .needsInput)
        }

        #expect(try pair.client.write(message))
        let record = pair.client.takeOutput()
        for (i, byte) in record.enumerated() {
            try pair.server.feed([byte])
            let result = try pair.server.read(into: &buffer)
            #expect(result == (i == record.count - 1 ? .plaintext(message.count) : .needsInput), "byte \(i)")
        }
        #expect(Array(buffer[..<message.count]) == message)
    }

    /// Many records in one feed: every message comes out, in order, both ways.
    @Test func manyMessagesInOneFeed() throws {
        let pair = try TLSPair()
        try pair.handshake()
        var sent = [UInt8]()
        for i in 0..<500 {
            let message = Array("message \(i);".utf8)
            #expect(try pair.client.write(message))
            #expect(try pair.server.write(message))
            sent += message
        }
        let toServer = pair.client.takeOutput()
        let toClient = pair.server.takeOutput()
        try pair.server.feed(toServer)
        try pair.client.feed(toClient)
        #expect(try TLSPair.readAll(pair.server) == sent)
        #expect(try TLSPair.readAll(pair.client) == sent)
    }

    // MARK: ALPN

    /// "stun.turn" (RFC 7443) offered → selected, also after another protocol; only "h2" offered →
    /// none selected, the handshake still succeeds; no ALPN → none. A malformed list is refused.
    @Test func alpn() throws {
        let turn = try TLSPair(client: TLSContext(clientALPN: "stun.turn"))
        try turn.handshake()
        #expect(turn.server.negotiatedALPN == "stun.turn" && turn.client.negotiatedALPN == "stun.turn")

        let both = try TLSPair(client: TLSContext(clientALPN: "h2,stun.turn"))
        try both.handshake()
        #expect(both.server.negotiatedALPN == "stun.turn" && both.client.negotiatedALPN == "stun.turn")

        let h2 = try TLSPair(client: TLSContext(clientALPN: "h2"))
        try h2.handshake()
        #expect(h2.server.isHandshakeDone && h2.client.isHandshakeDone)
        #expect(h2.server.negotiatedALPN == nil && h2.client.negotiatedALPN == nil)

        let none = try TLSPair(client: TLSContext(clientALPN: nil))
        try none.handshake()
        #expect(none.server.negotiatedALPN == nil && none.client.negotiatedALPN == nil)

        #expect(throws: TLSError.self) { try TLSContext(clientALPN: "h2,,stun.turn") }
    }

    // MARK: failures

    /// A handshake record with garbage inside instead of a ClientHello: a handshake failure with
    /// OpenSSL's reason, and the alert to send is in the output. Every later read fails the same.
    @Test func garbageInsteadOfAClientHello() throws {
        let server = try TLSSession(context: TLSFixture.serverContext(), role: .server)
        try server.feed([0x16, 0x03, 0x01, 0x00, 0x08] + Array("garbage!".utf8))
        var buffer = [UInt8](repeating: 0, count: 64)
        let error = #expect(throws: TLSError.self) { try server.read(into: &buffer) }
        guard case .fatal(let failure, let reason)? = error else {
            Issue.record("not a fatal error: \(String(describing: error))")
            return
        }
        print("TLS garbage ClientHello: \(failure): \(reason)")
        #expect(failure == .handshake && !reason.isEmpty)
        let alert = server.takeOutput()
        #expect(alert.count == 7 && alert.first == 0x15, "an alert record: \(alert)")
        #expect(throws: error!) { try server.read(into: &buffer) }
        #expect(throws: error!) { try server.write(Array("x".utf8)) }

        // That alert, received by a client waiting for a ServerHello: an alert received.
        let client = try TLSSession(context: TLSContext(clientALPN: nil), role: .client)
        #expect(try client.read(into: &buffer) == .needsInput)
        #expect(client.outputPending > 0)
        try client.feed(alert)
        let clientError = #expect(throws: TLSError.self) { try client.read(into: &buffer) }
        print("TLS client receiving that alert: \(String(describing: clientError))")
        guard case .fatal(.alertReceived, let alertReason)? = clientError else {
            Issue.record("not an alert received: \(String(describing: clientError))")
            return
        }
        #expect(alertReason.contains("alert"))
    }

    /// A record changed on the way (one bit of its ciphertext): the session fails after the
    /// handshake (category "other"), with OpenSSL's reason, and an (encrypted) alert to send.
    @Test func aTamperedRecordFails() throws {
        let pair = try TLSPair()
        try pair.handshake()
        #expect(try pair.client.write(Array("integrity".utf8)))
        var record = pair.client.takeOutput()
        record[record.count - 3] ^= 0x01
        try pair.server.feed(record)
        var buffer = [UInt8](repeating: 0, count: 64)
        let error = #expect(throws: TLSError.self) { try pair.server.read(into: &buffer) }
        print("TLS tampered record: \(String(describing: error))")
        guard case .fatal(.other, let reason)? = error else {
            Issue.record("not a failure after the handshake: \(String(describing: error))")
            return
        }
        #expect(reason.contains("bad record mac"))
        // TLS 1.3 encrypts the alert: its record's outer type is application_data (23).
        #expect(pair.server.takeOutput().first == 0x17)
    }

    /// Sessions of one thread do not see each other's errors: one fails between two steps of
    /// another's handshake, which then finishes and carries data.
    @Test func oneSessionsFailureDoesNotReachAnother() throws {
        let pair = try TLSPair()
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(try pair.client.read(into: &buffer) == .needsInput)
        try pair.server.feed(pair.client.takeOutput())

        let failing = try TLSSession(context: TLSFixture.serverContext(), role: .server)
        try failing.feed([0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff])
        #expect(throws: TLSError.self) { try failing.read(into: &buffer) }

        try pair.handshake()
        #expect(try pair.server.write(Array("fine".utf8)))
        #expect(String(decoding: try pair.exchange().toClient, as: UTF8.self) == "fine")
    }

    /// Bytes that are not TLS at all (a plain HTTP request): a handshake failure; OpenSSL sends no
    /// alert to something that does not speak TLS.
    @Test func notTLSAtAll() throws {
        let server = try TLSSession(context: TLSFixture.serverContext(), role: .server)
        try server.feed(Array("GET / HTTP/1.1\r\nHost: turn.test\r\n\r\n".utf8))
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(throws: TLSError.fatal(.handshake, reason: "http request")) { try server.read(into: &buffer) }
    }

    /// A client's close_notify: the server reads `.closed` (and keeps reading it); the client's
    /// later writes throw `.closed`.
    @Test func closeNotify() throws {
        let pair = try TLSPair()
        try pair.handshake()
        pair.client.shutdown()
        try pair.server.feed(pair.client.takeOutput())
        var buffer = [UInt8](repeating: 0, count: 64)
        #expect(try pair.server.read(into: &buffer) == .closed)
        #expect(try pair.server.read(into: &buffer) == .closed)
        // Whatever the peer sends after close_notify is dropped, never buffered.
        try pair.server.feed([UInt8](repeating: 0x17, count: 1000))
        #expect(try pair.server.read(into: &buffer) == .closed)
        #expect(throws: TLSError.closed) { try pair.client.write(Array("late".utf8)) }
    }

    /// A TLS 1.2 client starts a renegotiation: the server refuses it (a no_renegotiation alert)
    /// and fails, counted as a renegotiation; the client sees the refusal too.
    @Test func renegotiationIsRefused() throws {
        let pair = try TLSPair(client: TLSContext(clientALPN: nil, maximumVersion: .tls12))
        try pair.handshake()
        #expect(pair.client.protocolVersion == "TLSv1.2")
        #expect(pair.client.startRenegotiationForTesting())
        let hello = pair.client.takeOutput()
        #expect(!hello.isEmpty)
        try pair.server.feed(hello)
        var buffer = [UInt8](repeating: 0, count: 64)
        let serverError = #expect(throws: TLSError.self) { try pair.server.read(into: &buffer) }
        print("TLS renegotiation, server: \(String(describing: serverError))")
        guard case .fatal(.renegotiation, _)? = serverError else {
            Issue.record("not a renegotiation failure: \(String(describing: serverError))")
            return
        }
        let alert = pair.server.takeOutput()
        #expect(alert.first == 0x15, "an alert record: \(alert)")
        try pair.client.feed(alert)
        let clientError = #expect(throws: TLSError.self) { try pair.client.read(into: &buffer) }
        print("TLS renegotiation, client: \(String(describing: clientError))")
        guard case .fatal(.renegotiation, let reason)? = clientError else {
            Issue.record("not a renegotiation failure: \(String(describing: clientError))")
            return
        }
        #expect(reason == "no renegotiation")
    }

    /// Wrong key for the certificate, a missing file, a PEM file with garbage inside: the context
    /// is not made, and the error says why.
    @Test func badCertificatesAndKeysAreRefused() throws {
        let first = try TLSFixture.first.get()
        let second = try TLSFixture.second.get()
        let cases: [(String, String, String)] = [
            ("wrong key", first.certificate, second.key),
            ("missing certificate", TLSFixture.directory + "/missing.pem", first.key),
            ("missing key", first.certificate, TLSFixture.directory + "/missing-key.pem"),
            ("garbage PEM", try TLSFixture.garbagePEM(), first.key),
        ]
        for (name, certificate, key) in cases {
            let error = #expect(throws: TLSError.self, "\(name)") {
                try TLSContext(certificatePath: certificate, keyPath: key)
            }
            guard case .context(let reason)? = error else {
                Issue.record("\(name): \(String(describing: error))")
                continue
            }
            print("TLS context, \(name): \(reason)")
            #expect(!reason.isEmpty)
            if name == "wrong key" { #expect(reason.contains("does not match")) }
            if name.hasPrefix("missing") { #expect(reason.contains("missing")) }
        }
    }

    // MARK: certificate reload

    /// A second context from a second certificate (SIGHUP): a session made before keeps working
    /// after the old context is released; a new session presents the new certificate.
    @Test func certificateReload() throws {
        var old: TLSContext? = try TLSFixture.serverContext()
        let before = try TLSPair(server: old!)
        try before.handshake()
        #expect(before.client.peerCertificateCommonName == "turn.test")

        let second = try TLSFixture.second.get()
        let new = try TLSContext(certificatePath: second.certificate, keyPath: second.key)
        old = nil
        #expect(old == nil)

        #expect(try before.client.write(Array("still here".utf8)))
        #expect(try before.server.write(Array("still here too".utf8)))
        let (toClient, toServer) = try before.exchange()
        #expect(String(decoding: toServer, as: UTF8.self) == "still here")
        #expect(String(decoding: toClient, as: UTF8.self) == "still here too")

        let after = try TLSPair(server: new)
        try after.handshake()
        #expect(after.client.peerCertificateCommonName == "turn2.test")
    }

    // MARK: threads

    /// One server context and one client context shared by four threads (as by the workers), each
    /// running its own sessions through the handshake and a message each way.
    @Test(.dedicatedThread) func oneContextSharedByThreads() throws {
        let server = try TLSFixture.serverContext()
        let client = try TLSContext(clientALPN: "stun.turn")
        let threads = 4
        let perThread = 100
        let done = Mutex([Int](repeating: 0, count: threads))
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            var completed = 0
            for i in 0..<perThread {
                do {
                    let pair = try TLSPair(client: client, server: server)
                    try pair.handshake()
                    let message = Array("thread \(t) session \(i)".utf8)
                    guard try pair.client.write(message), try pair.server.write(message) else { continue }
                    let (toClient, toServer) = try pair.exchange()
                    if toClient == message && toServer == message && pair.server.negotiatedALPN == "stun.turn" {
                        completed += 1
                    }
                } catch {
                    Issue.record("thread \(t) session \(i): \(error)")
                }
            }
            done.withLock { $0[t] = completed }
        }
        #expect(done.withLock { $0 } == [Int](repeating: perThread, count: threads))
    }

    // MARK: memory

    /// Idle server sessions after the handshake (TLS 1.3, session tickets taken, clients freed),
    /// and after the handshake and then a 20,000-byte message each way (larger than a record: no
    /// record buffer may stay behind): the heap they hold, from glibc's mallinfo2 (uordblks) before
    /// and after. The issue's bound is 32 KiB per idle session.
    @Test(.dedicatedThread, arguments: [0, 20_000])
    func memoryPerIdleSession(messageBytes: Int) throws {
        let count = 10_000
        let message = [UInt8](repeating: 0x5a, count: messageBytes)
        let server = try TLSFixture.serverContext()
        let client = try TLSContext(clientALPN: "stun.turn")
        var sessions = [TLSSession]()
        sessions.reserveCapacity(count)
        try TLSPair(client: client, server: server).handshake() // OpenSSL's lazily made tables
        let start = Date()
        let before = ct_test_heap_in_use()
        for _ in 0..<count {
            let pair = try TLSPair(client: client, server: server)
            try pair.handshake()
            if messageBytes > 0 {
                #expect(try pair.client.write(message) && pair.server.write(message))
                let (toClient, toServer) = try pair.exchange()
                #expect(toClient.count == messageBytes && toServer.count == messageBytes)
            }
            sessions.append(pair.server)
        }
        let after = ct_test_heap_in_use()
        let seconds = Date().timeIntervalSince(start)
        #expect(sessions.allSatisfy { $0.isHandshakeDone && $0.outputPending == 0 })
        let perSession = (Int(after) - Int(before)) / count
        print("TLS idle server sessions (\(messageBytes)-byte message each way after the handshake): \(count) handshakes in \(String(format: "%.1f", seconds)) s; heap \(before) → \(after) bytes: \(perSession) bytes per idle server session")
        #expect(perSession <= 32 * 1024)
    }
}

/// A client session and a server session whose ciphertext is exchanged in memory.
struct TLSPair {
    let client: TLSSession
    let server: TLSSession

    init(client clientContext: TLSContext? = nil, server serverContext: TLSContext? = nil) throws {
        client = try TLSSession(context: clientContext ?? TLSContext(clientALPN: nil), role: .client)
        server = try TLSSession(context: serverContext ?? TLSFixture.serverContext(), role: .server)
    }

    /// Runs the handshake to its end, session tickets included (no output left on either side).
    func handshake() throws {
        var plaintext = [UInt8]()
        for _ in 0..<10 {
            let (toClient, toServer) = try exchange()
            plaintext += toClient + toServer
            if client.isHandshakeDone && server.isHandshakeDone && client.outputPending == 0
                && server.outputPending == 0
            {
                #expect(plaintext.isEmpty)
                return
            }
        }
        Issue.record("the handshake did not finish")
    }

    /// One round: the client reads (driving its handshake), its output goes to the server, the
    /// server reads, its output goes to the client, the client reads. Returns the plaintext each read.
    func exchange() throws -> (toClient: [UInt8], toServer: [UInt8]) {
        var toClient = try Self.readAll(client)
        try server.feed(client.takeOutput())
        let toServer = try Self.readAll(server)
        try client.feed(server.takeOutput())
        toClient += try Self.readAll(client)
        return (toClient, toServer)
    }

    /// Reads until the session needs more input (or is closed).
    static func readAll(_ session: TLSSession) throws -> [UInt8] {
        var all = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 100)
        while case .plaintext(let n) = try session.read(into: &buffer) {
            all += buffer[..<n]
        }
        return all
    }
}

extension TLSSession {
    func read(into buffer: inout [UInt8]) throws(TLSError) -> ReadResult {
        try buffer.withUnsafeMutableBytes { b in Result { () throws(TLSError) in try read(into: b) } }.get()
    }
}

/// The `openssl` command and the certificates it makes for the tests.
enum TLSFixture {
    static let openssl: String? = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/bin/openssl"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    static let opensslMissing: Comment = "the openssl command is missing (Debian: apt-get install openssl)"

    struct Certificate: Sendable {
        let certificate: String
        let key: String
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static let directory: String = {
        let base = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("tls-session-tests.XXXXXX").path
        var template = Array(base.utf8CString)
        guard let path = mkdtemp(&template) else { return NSTemporaryDirectory() }
        // Removed when the test process exits.
        atexit { try? FileManager.default.removeItem(atPath: TLSFixture.directory) }
        return String(cString: path)
    }()

    /// CN=turn.test, and a second one, CN=turn2.test (the reload test; the wrong key).
    static let first: Result<Certificate, Failure> = make(name: "turn")
    static let second: Result<Certificate, Failure> = make(name: "turn2")

    static func serverContext() throws -> TLSContext {
        let c = try first.get()
        return try TLSContext(certificatePath: c.certificate, keyPath: c.key)
    }

    static func garbagePEM() throws -> String {
        let path = directory + "/garbage.pem"
        try "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private static func make(name: String) -> Result<Certificate, Failure> {
        guard let openssl else { return .failure(Failure(description: "no openssl")) }
        let c = Certificate(certificate: "\(directory)/\(name).crt", key: "\(directory)/\(name).key")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: openssl)
        process.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", "/CN=\(name).test", "-keyout", c.key, "-out", c.certificate,
        ]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return .failure(Failure(description: "cannot run \(openssl): \(error)"))
        }
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return .failure(Failure(description: "openssl req failed (\(process.terminationStatus)): \(text)"))
        }
        return .success(c)
    }
}
