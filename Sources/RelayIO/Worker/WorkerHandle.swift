import CUDP
import Dispatch
import Glibc
import RelayCore
import STUN
import SocketAddressing
import Synchronization
/// A running worker thread, seen from outside: ask it to drain or stop, wait for it, read its
/// published report.
public final class WorkerHandle: Sendable {
    public let index: Int
    public let listenerAddresses: [TransportAddress]
    /// The listener sockets (owned by the worker thread; only used here for group-wide options).
    let listenerSockets: [(family: AddressFamily, fd: Int32)]
    let control: WorkerControl
    let thread: pthread_t
    let joined = Mutex(false)

    /// The stream listeners' bound addresses (TURN over TCP and TLS).
    public let streamListenerAddresses: [(transport: StreamTransport, address: TransportAddress)]

    init(index: Int, listenerAddresses: [TransportAddress], listenerSockets: [(family: AddressFamily, fd: Int32)],
         control: WorkerControl, thread: pthread_t, streamListenerAddresses: [(StreamTransport, TransportAddress)] = []) {
        self.streamListenerAddresses = streamListenerAddresses.map { (transport: $0.0, address: $0.1) }
        self.index = index
        self.listenerAddresses = listenerAddresses
        self.listenerSockets = listenerSockets
        self.control = control
        self.thread = thread
    }

    /// Opens the listener sockets on the calling thread (so bind errors surface here), then starts
    /// the worker thread, which creates its ring (or epoll loop) there (a SINGLE_ISSUER ring belongs to the thread
    /// that made it) and its processor via `makeProcessor`.
    public static func start<P: DatagramProcessor>(
        index: Int, configuration: WorkerConfiguration, clock: RelayClock,
        reloads: ReloadMailbox<P.Reload>? = nil,
        makeProcessor: @escaping @Sendable (WorkerContext) -> P
    ) throws(RelayIOError) -> WorkerHandle {
        var listeners: [(SocketHandle, Int32)] = []
        var addresses: [TransportAddress] = []
        func closeAll() { for (_, fd) in listeners { _ = cu_close(fd) } }
        var binds: [(SocketHandle, IPAddress)] = []
        if let ip = configuration.listenIPv4 { binds.append((.listener(.ipv4), .v4(ip))) }
        if let ip = configuration.listenIPv6 { binds.append((.listener(.ipv6), .v6(ip))) }
        for (handle, ip) in binds {
            var address = cu_addr(ip: ip, port: configuration.listenPort)
            var options = Int32(CU_SO_REUSEPORT.rawValue) | Int32(CU_SO_V6ONLY.rawValue)
            if configuration.enableGRO { options |= Int32(CU_SO_GRO.rawValue) }
            if configuration.disableChecksumsForTesting { options |= Int32(CU_SO_NO_CHECK.rawValue) }
            var gro: Int32 = 0
            let fd = cu_udp_socket(&address, options, Int32(clamping: configuration.socketBufferBytes), &gro)
            guard fd >= 0 else {
                closeAll()
                throw .socket(TransportAddress(ip: ip, port: configuration.listenPort), errno: -fd)
            }
            listeners.append((handle, fd))
            var local = cu_addr()
            if cu_local_address(fd, &local) == 0, let bound = local.transportAddress {
                addresses.append(bound)
            }
        }
        // Stream listeners (TURN over TCP and TLS), one per worker per address and port, like the
        // UDP ones (SO_REUSEPORT spreads connections across the workers).
        var streamListeners: [(fd: Int32, transport: StreamTransport)] = []
        var streamPorts: [(UInt16, StreamTransport)] = []
        if let port = configuration.streams.tcpPort { streamPorts.append((port, .tcp)) }
        if let port = configuration.streams.tlsPort, configuration.streams.tls != nil { streamPorts.append((port, .tls)) }
        var streamAddresses: [(StreamTransport, TransportAddress)] = []
        for (requested, transport) in streamPorts {
            for (handle, ip) in binds {
                // TCP on "the listen port": with port 0 (tests), the one the UDP listener got.
                var port = requested
                if port == 0 && transport == .tcp, let udp = addresses.first(where: { $0.family == (handle == .listener(.ipv4) ? .ipv4 : .ipv6) }) {
                    port = udp.port
                }
                var address = cu_addr(ip: ip, port: port)
                let options = Int32(CU_SO_REUSEPORT.rawValue) | Int32(CU_SO_V6ONLY.rawValue)
                let fd = cu_tcp_listener(&address, options, configuration.streams.backlog)
                guard fd >= 0 else {
                    closeAll()
                    for l in streamListeners { _ = cu_close(l.fd) }
                    throw .socket(TransportAddress(ip: ip, port: port), errno: -fd)
                }
                streamListeners.append((fd, transport))
                var local = cu_addr()
                if cu_local_address(fd, &local) == 0, let bound = local.transportAddress {
                    streamAddresses.append((transport, bound))
                }
            }
        }
        let wake = cu_eventfd()
        guard wake >= 0 else {
            closeAll()
            for l in streamListeners { _ = cu_close(l.fd) }
            throw .eventfd(errno: -wake)
        }
        let control = WorkerControl(wakeFD: wake)
        let receiver = reloads?.receiver(worker: index, wake: { control.wake() })
        configuration.streamHandoffs?.register(worker: index, wake: { control.wake() })
        let context = WorkerContext(index: index, listenerAddresses: addresses, clock: clock)
        let started = DispatchSemaphore(value: 0)
        let startError = Mutex<RelayIOError?>(nil)
        let sendableListeners = listeners.map { SendableListener(handle: $0.0, fd: $0.1) }
        let sendableStreamListeners = streamListeners.map { SendableStreamListener(fd: $0.fd, transport: $0.transport) }
        let thread: pthread_t
        do throws(RelayIOError) {
            thread = try spawnThread {
                cu_set_thread_name("relay-worker-\(index)")
                func serve<B: IOBackend>(_: B.Type) {
                    let worker: Worker<P, B>
                    do throws(RelayIOError) {
                        worker = try Worker(index: index, configuration: configuration,
                                            listeners: sendableListeners.map { ($0.handle, $0.fd) },
                                            processor: makeProcessor(context), clock: clock, control: control,
                                            reloads: receiver,
                                            streamListeners: sendableStreamListeners.map { ($0.fd, $0.transport) })
                    } catch {
                        for l in sendableListeners { _ = cu_close(l.fd) }
                        for l in sendableStreamListeners { _ = cu_close(l.fd) }
                        startError.withLock { $0 = error }
                        started.signal()
                        return
                    }
                    started.signal()
                    worker.run()
                }
                switch configuration.ioBackend {
                case .ioUring: serve(IOUringBackend.self)
                case .batchedSyscalls: serve(BatchedSyscallBackend.self)
                }
            }
        } catch {
            closeAll()
            for l in streamListeners { _ = cu_close(l.fd) }
            throw error
        }
        started.wait()
        if let error = startError.withLock({ $0 }) {
            pthread_join(thread, nil)
            throw error
        }
        let sockets = listeners.map { (family: $0.0 == .listener(.ipv4) ? AddressFamily.ipv4 : .ipv6, fd: $0.1) }
        return WorkerHandle(index: index, listenerAddresses: addresses, listenerSockets: sockets, control: control,
                            thread: thread, streamListenerAddresses: streamAddresses)
    }

    /// Stop taking new work (the processor's `drain`); relaying continues.
    public func drain() { control.request(WorkerControl.drainFlag) }

    /// Ask the loop to end (it closes its sockets and ring on the way out).
    public func stop() { control.request(WorkerControl.stopFlag) }

    /// Waits for the thread to end; returns its final statistics.
    @discardableResult
    public func join() -> WorkerStatistics {
        let mustJoin = joined.withLock { done -> Bool in
            defer { done = true }
            return !done
        }
        if mustJoin { pthread_join(thread, nil) }
        return statistics
    }

    /// The report last published (about once a second, and at exit).
    public var report: WorkerReport { control.published.withLock { $0 } }

    /// The worker's own counters from its last report.
    public var statistics: WorkerStatistics { report.statistics }
}
