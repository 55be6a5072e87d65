import Glibc
import RelayCore
import STUN

/// What the TURN `Server`s of one relay process share, and the one place a worker's `Server` is
/// made: its slice of the relay port range, the process-wide EVEN-PORT registry (a
/// RESERVATION-TOKEN is redeemable on any worker, RFC 8656 §7.2: "the reservation is a
/// server-wide reservation"), the process-wide allocation quotas (`--max-allocations` and
/// `--max-allocations-per-user` count the whole process, whichever worker holds an allocation), the
/// process-wide set of live relay ports (a peer on the relay's own
/// address is admitted only there: hairpin between clients of different workers), and the
/// listener ports and host addresses that no client may reach through an allocation.
public struct TURNServerFactory: Sendable {
    public let configuration: ServerConfiguration
    public let reservations: SharedReservationRegistry
    public let quota: SharedAllocationQuota
    public let liveRelayPorts: LiveRelayPorts

    /// `listenerPorts`: every port the relay listens on for clients; `localAddresses`: this host's
    /// addresses (e.g. `HostAddresses.current()`), added to the configuration's.
    public init(configuration: ServerConfiguration, listenerPorts: [UInt16], localAddresses: [IPAddress] = [],
                reservations: SharedReservationRegistry? = nil, quota: SharedAllocationQuota? = nil) {
        var configuration = configuration
        configuration.listenerPorts = Array(Set(configuration.listenerPorts + listenerPorts)).sorted()
        configuration.localAddresses += localAddresses
        self.configuration = configuration
        self.reservations = reservations ?? SharedReservationRegistry(capacity: configuration.maxReservations)
        self.quota = quota ?? SharedAllocationQuota()
        liveRelayPorts = LiveRelayPorts()
    }

    /// The `Server` of one worker, for its slice of the relay port range.
    public func makeServer(_ context: WorkerContext, portRange slice: ClosedRange<UInt16>) -> Server {
        var own = configuration
        own.portRange = slice
        own.connectionIDWorker = UInt8(truncatingIfNeeded: context.index)
        return Server(configuration: own, random: SystemRandomNumberGenerator(), now: context.clock.now(),
                      reservationRegistry: reservations, allocationQuota: quota, liveRelayPorts: liveRelayPorts)
    }
}
