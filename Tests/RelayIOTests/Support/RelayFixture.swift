import Glibc
import RelayCore
import RelayIO
import TURNTestClient
import STUN

/// A TURN relay running in-process on 127.0.0.1: one worker (on the given I/O backend) with the real `Server`.
final class RelayFixture {
    static let secret = "integration-test-secret"
    /// Where test peers bind: loopback, but not the relay's own address.
    static let peerAddress = TransportAddress(ip: .v4(IPv4Address(127, 0, 0, 2)), port: 0)
    let runtime: RelayRuntime
    let address: TransportAddress

    init(backend: IOBackendKind = .ioUring, reloads: ReloadMailbox<TURNReload>? = nil,
         configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        var server = ServerConfiguration(relayAddressIPv4: .loopback, relayAddressIPv6: nil)
        server.credentials = CredentialStore(restSecrets: [Self.secret])
        // The peers in these tests live on loopback, which is denied by default.
        server.peerPolicy = PeerPolicy(allow: [CIDR("127.0.0.0/8")!])
        let base = UInt16(42000 + Int.random(in: 0..<300) * 20)
        server.portRange = base...(base + 19)
        configure(&server)
        var worker = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: 0)
        worker.receiveBuffers = 64
        worker.ringEntries = 256
        worker.ioBackend = backend
        runtime = try RelayRuntime.startTURN(workers: 1, configuration: worker, server: server, reloads: reloads)
        guard let address = runtime.workers.first?.listenerAddresses.first else {
            throw RelayIOError.configuration("no listener")
        }
        self.address = address
    }

    /// A client with a fresh REST credential (valid one hour).
    func client(id: String = "alice") throws -> TestTURNClient {
        let now = UInt64(time(nil))
        let credential = RESTCredential.make(secret: Self.secret, ttlSeconds: 3600, id: id, nowUnixSeconds: now)
        return try TestTURNClient(server: address, username: credential.username, password: credential.password)
    }

    func stop() -> [WorkerStatistics] {
        runtime.stop()
        return runtime.join()
    }

    deinit {
        runtime.stop()
        runtime.join()
    }
}
