import RelayCore
import RelayIO
import STUN
import Synchronization

/// One worker on 127.0.0.1 (port chosen by the kernel) running an `EchoProcessor`, and a client socket.
final class WorkerFixture {
    let handle: WorkerHandle
    let client: BlockingUDPSocket
    let listener: TransportAddress
    let events = EventLog()
    let reloads = ReloadMailbox<EchoProcessor.Reload>()

    init(backend: IOBackendKind = .ioUring, tag: Bool = false, gate: Gate? = nil, configure: (inout WorkerConfiguration) -> Void = { _ in }) throws {
        var configuration = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: 0)
        configuration.receiveBuffers = 64
        configuration.transmitBuffers = 128
        configuration.ringEntries = 256
        configuration.ioBackend = backend
        configure(&configuration)
        let events = self.events
        handle = try WorkerHandle.start(index: 0, configuration: configuration, clock: RelayClock(),
                                        reloads: reloads) { _ in
            EchoProcessor(tag: tag, gate: gate, events: events)
        }
        guard let address = handle.listenerAddresses.first else { throw RelayIOError.configuration("no listener") }
        listener = address
        client = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
    }

    /// Stops the worker and returns its final statistics.
    func stop() -> WorkerStatistics {
        handle.stop()
        return handle.join()
    }

    deinit {
        handle.stop()
        handle.join()
    }
}

func payload(_ index: Int, length: Int) -> [UInt8] {
    (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index &* 31 &+ 1) }
}

