import RelayCore
import RelayIO
import RelayOperations
import STUN
import TURNRequests
import Testing
import TestSupport

/// Drives an `InstrumentedServer` (a real RelayCore `Server`) the way a worker would, on the test's
/// thread: a receive buffer with the shell's headroom, socket requests answered as opened.
final class CoreDriver {
    var now = Instant(seconds: 1_800_000_000)
    let processor: InstrumentedServer
    /// Called after every datagram fed (a test publishes the driver's snapshot there).
    var afterEachDatagram: () -> Void = {}
    let out = OutboundBatch(capacity: 256, arenaBytes: 256 * 1024)
    let buffer: UnsafeMutableRawPointer
    static let bufferSize = InboundDatagram.headroom + 4096 + InboundDatagram.tailroom
    static let realm = "example.org"
    static let relayAddress = IPv4Address(203, 0, 113, 10)

    /// `seed` seeds the server's generator (nonces, relay ports), so a test is the same on every run.
    init(users: [String: String] = ["alice": "alice-pw"], seed: UInt64 = 0xC0DE_D41E) {
        var c = ServerConfiguration(relayAddressIPv4: Self.relayAddress, relayAddressIPv6: nil)
        c.realm = Self.realm
        c.credentials = CredentialStore(staticUsers: users)
        let server = Server(configuration: c, random: SplitMix64(seed: seed), now: now)
        processor = InstrumentedServer(server: server)
        buffer = .allocate(byteCount: Self.bufferSize, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The worker's report of this processor, as a worker would publish it now.
    func snapshot() -> RelaySnapshot {
        RelaySnapshot(WorkerReport(processor: processor.report(now: now), publishedAt: now))
    }

    /// Feeds one datagram received on the listener; returns the datagrams sent back (copied).
    @discardableResult
    func receive(_ bytes: [UInt8], from source: TransportAddress) -> [[UInt8]] {
        out.reset()
        let payload = buffer + InboundDatagram.headroom
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { payload.copyMemory(from: base, byteCount: min(raw.count, 4096)) }
        }
        var datagram = InboundDatagram(socket: .listener(source.family), source: source, bytes: payload,
                                       length: min(bytes.count, 4096), bufferID: 1)
        withUnsafePointer(to: &datagram) {
            processor.process(UnsafeBufferPointer(start: $0, count: 1), now: now, into: out)
        }
        var sent = copySent()
        // The shell opens every socket the core asks for.
        var i = 0
        while i < out.socketRequests.count && i < 16 {
            if case .open(let handle, _, _) = out.socketRequests[i] {
                let before = out.count
                processor.socketOpened(handle, result: .opened, now: now, into: out)
                sent += copySent(from: before)
            }
            i += 1
        }
        afterEachDatagram()
        return sent
    }

    func copySent(from start: Int = 0) -> [[UInt8]] {
        var result: [[UInt8]] = []
        for index in start..<out.count {
            let d = out[index]
            result.append(Array(UnsafeRawBufferPointer(start: d.bytes, count: d.length)))
        }
        return result
    }

    // MARK: Requests

    static func transactionID(_ n: UInt8) -> TransactionID {
        TransactionID([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, n])
    }

    static func message(_ method: STUNMethod, id: UInt8, auth: (user: String, password: String, nonce: String)? = nil,
                        realm: String = CoreDriver.realm, _ body: (inout STUNMessageWriter) -> Void = { _ in }) -> [UInt8] {
        let credentials = auth.map { LongTermAuth(username: $0.user, realm: realm, nonce: $0.nonce, password: $0.password) }
        return TURNRequest.bytes(method, transactionID: transactionID(id), auth: credentials, capacity: 1024, body) ?? []
    }

    /// The response's class and error code (0 for success).
    static func outcome(_ bytes: [UInt8]) -> (success: Bool, code: Int, nonce: String?) {
        bytes.withUnsafeBytes { raw in
            guard let m = try? STUNMessage.parse(raw) else { return (false, -1, nil) }
            let code = (try? m.errorCode())??.code ?? 0
            return (m.type.messageClass == .successResponse, code, (try? m.nonce()) ?? nil)
        }
    }

    /// Allocate with long-term credentials: the 401 first, then the authenticated request.
    func allocate(from client: TransportAddress, user: String, password: String, id: UInt8) -> (success: Bool, code: Int) {
        let first = receive(Self.message(.allocate, id: id) { $0.appendRequestedTransport(17) }, from: client)
        guard let challenge = first.first.map(Self.outcome), let nonce = challenge.nonce else { return (false, -1) }
        let sent = receive(Self.message(.allocate, id: id &+ 1, auth: (user, password, nonce)) { $0.appendRequestedTransport(17) },
                           from: client)
        guard let last = sent.last else { return (false, -1) }
        let result = Self.outcome(last)
        return (result.success, result.code)
    }
}
