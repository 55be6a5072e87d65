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
    /// the worker on them (`start(index:listeners:...)`).
    public static func start<P: DatagramProcessor>(
        index: Int, configuration: WorkerConfiguration, clock: RelayClock,
        reloads: ReloadMailbox<P.Reload>? = nil,
        makeProcessor: @escaping @Sendable (WorkerContext) -> P
    ) throws(RelayIOError) -> WorkerHandle {
        try start(index: index, configuration: configuration, listeners: WorkerListeners.open(configuration),
                  clock: clock, reloads: reloads, makeProcessor: makeProcessor)
    }

    /// Starts the worker thread on `listeners` (it owns them from here, failure included), which
    /// creates its ring (or epoll loop) there (a SINGLE_ISSUER ring belongs to the thread that
    /// made it) and its processor via `makeProcessor`.
    public static func start<P: DatagramProcessor>(
        index: Int, configuration: WorkerConfiguration, listeners opened: WorkerListeners, clock: RelayClock,
        reloads: ReloadMailbox<P.Reload>? = nil,
        makeProcessor: @escaping @Sendable (WorkerContext) -> P
    ) throws(RelayIOError) -> WorkerHandle {
        let addresses = opened.udpAddresses
        let streamAddresses = opened.streamAddresses.map { ($0.transport, $0.address) }
        let wake = cu_eventfd()
        guard wake >= 0 else {
            opened.close()
            throw .eventfd(errno: -wake)
        }
        let control = WorkerControl(wakeFD: wake)
        let receiver = reloads?.receiver(worker: index, wake: { control.wake() })
        configuration.streamHandoffs?.register(worker: index, wake: { control.wake() })
        let context = WorkerContext(index: index, listenerAddresses: addresses, clock: clock)
        let started = DispatchSemaphore(value: 0)
        let startError = Mutex<RelayIOError?>(nil)
        let sendableListeners = opened.udp
        let sendableStreamListeners = opened.streams
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
            opened.close()
            throw error
        }
        started.wait()
        if let error = startError.withLock({ $0 }) {
            pthread_join(thread, nil)
            throw error
        }
        let sockets = opened.udp.map { (family: $0.handle == .listener(.ipv4) ? AddressFamily.ipv4 : .ipv6, fd: $0.fd) }
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
