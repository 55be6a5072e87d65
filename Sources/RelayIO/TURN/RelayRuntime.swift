import CUDP
import Glibc
import RelayCore
import STUN

/// Every worker of one relay process. Each worker gets its own slice of the relay port range, so
/// workers never race for a port, and its own processor.
public final class RelayRuntime: Sendable {
    public let workers: [WorkerHandle]
    public let clock: RelayClock

    init(workers: [WorkerHandle], clock: RelayClock) {
        self.workers = workers
        self.clock = clock
    }

    /// Starts `count` workers. `makeProcessor` runs on each worker's thread with that worker's
    /// index and port range slice; updates posted to `reloads` reach every worker's processor.
    public static func start<P: DatagramProcessor>(
        workers count: Int, configuration: WorkerConfiguration, portRange: ClosedRange<UInt16>,
        clock: RelayClock = RelayClock(), reloads: ReloadMailbox<P.Reload>? = nil,
        makeProcessor: @escaping @Sendable (WorkerContext, ClosedRange<UInt16>) -> P
    ) throws(RelayIOError) -> RelayRuntime {
        guard count >= 1 else { throw .configuration("at least one worker is needed") }
        let slices = partition(portRange, into: count)
        guard slices.count == count else {
            throw .configuration("the relay port range \(portRange) has fewer ports than workers (\(count))")
        }
        var configuration = configuration
        if count > 1 && configuration.streamHandoffs == nil {
            // RFC 6062 data connections reach any worker; they move to the one that holds their peer.
            configuration.streamHandoffs = StreamHandoffHub(workers: min(count, 64))
        }
        // Every worker's listeners join their SO_REUSEPORT groups before any worker serves, so the
        // kernel's choice of worker for a client address never changes after the client is answered.
        var opened: [WorkerListeners] = []
        for _ in 0..<count {
            do throws(RelayIOError) {
                opened.append(try WorkerListeners.open(configuration))
            } catch {
                for l in opened { l.close() }
                throw error
            }
        }
        if configuration.steerByClientAddress && count > 1, let first = opened.first {
            // The program belongs to the whole reuseport group; member i is worker i, the i-th to bind.
            for listener in first.udp {
                let rc = cu_steer_by_source_ip(listener.fd, listener.handle == .listener(.ipv4) ? 4 : 6, UInt32(count))
                if rc < 0 {
                    for l in opened { l.close() }
                    throw .configuration("cannot attach the client-address steering program: \(RelayIOError.text(-rc))")
                }
            }
        }
        var started: [WorkerHandle] = []
        for index in 0..<count {
            let slice = slices[index]
            do throws(RelayIOError) {
                started.append(try WorkerHandle.start(index: index, configuration: configuration, listeners: opened[index],
                                                      clock: clock, reloads: reloads) {
                    makeProcessor($0, slice)
                })
            } catch {
                // Worker `index` closed its own listeners; the later ones were never handed over.
                for l in opened[(index + 1)...] { l.close() }
                for w in started { w.stop() }
                for w in started { w.join() }
                throw error
            }
        }
        return RelayRuntime(workers: started, clock: clock)
    }

    /// Starts `count` workers each running a TURN `Server` made by `TURNServerFactory` from
    /// `server` (listening on `configuration.listenPort`).
    public static func startTURN(
        workers count: Int, configuration: WorkerConfiguration, server: ServerConfiguration,
        clock: RelayClock = RelayClock(), reservations: SharedReservationRegistry? = nil,
        reloads: ReloadMailbox<TURNReload>? = nil
    ) throws(RelayIOError) -> RelayRuntime {
        let factory = TURNServerFactory(configuration: server, listenerPorts: [configuration.listenPort],
                                        reservations: reservations)
        return try start(workers: count, configuration: configuration, portRange: server.portRange, clock: clock,
                         reloads: reloads) {
            factory.makeServer($0, portRange: $1)
        }
    }

    /// Splits `range` into `parts` contiguous, disjoint, near-equal slices (empty when the range has
    /// fewer ports than parts).
    public static func partition(_ range: ClosedRange<UInt16>, into parts: Int) -> [ClosedRange<UInt16>] {
        let total = Int(range.upperBound) - Int(range.lowerBound) + 1
        guard parts >= 1, total >= parts else { return [] }
        var slices: [ClosedRange<UInt16>] = []
        var start = Int(range.lowerBound)
        for i in 0..<parts {
            let size = total / parts + (i < total % parts ? 1 : 0)
            slices.append(UInt16(start)...UInt16(start + size - 1))
            start += size
        }
        return slices
    }

    public func drain() { for w in workers { w.drain() } }
    public func stop() { for w in workers { w.stop() } }

    @discardableResult
    public func join() -> [WorkerStatistics] { workers.map { $0.join() } }

    public var statistics: [WorkerStatistics] { workers.map(\.statistics) }

    /// Every worker's last report.
    public var reports: [WorkerReport] { workers.map(\.report) }
}
