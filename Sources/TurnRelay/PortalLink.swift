import Glibc
import Logging
import RelayCore
import RelayIO
import RelayOperations
import RelayPortal
import RelayPortalWebSocket
import Synchronization

/// The running portal connection of `turn-relay` (see `PortalSettings`): adds the "portal"
/// readiness check (connected, joined and initialised), opens the credentials on the first
/// `init`, and stops the relay (SIGTERM to itself, exit status 1) when the connection gives up.
final class PortalLink: Sendable {
    let connection: PortalConnection
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let gaveUpFlag = Atomic<Bool>(false)
    /// The credentials the workers get on the first `init` (kept up to date by SIGHUP reloads
    /// before it), and whether that `init` came. One lock, so a reload and the first `init` cannot
    /// interleave and post an older set last.
    private let gate: Mutex<(opened: Bool, credentials: CredentialStore, peerPolicy: PeerPolicy)>
    private let operations: RelayOperationsContext
    private let logger: Logger

    init(_ portal: PortalSettings, operations: RelayOperationsContext, credentials: CredentialStore,
         peerPolicy: PeerPolicy, logger: Logger) {
        connection = PortalConnection(url: portal.url, token: portal.token, stampSecret: portal.stampSecret,
                                      configuration: portal.configuration, logger: logger)
        gate = Mutex((false, credentials, peerPolicy))
        self.operations = operations
        self.logger = logger
        let connection = self.connection
        operations.attachPortal(isConnected: { connection.isConnected }, statistics: { connection.statistics })
    }

    var gaveUp: Bool { gaveUpFlag.load(ordering: .acquiring) }

    func start() {
        let connection = self.connection
        logger.notice("connecting to the portal", metadata: ["url": "\(connection.url)"])
        let running = Task.detached { [self] in
            let reason = await connection.run { self.open() }
            if let reason {
                // Fatal answers (401, a refused join, token_expired) and an exhausted retry
                // policy alike: stop, exit status 1, the reason in the log.
                logger.critical("portal connection gave up (\(reason)); stopping")
                gaveUpFlag.store(true, ordering: .releasing)
                kill(getpid(), SIGTERM)
            }
        }
        task.withLock { $0 = running }
    }

    /// The portal sent `init`: on the first one, hand the workers their credentials.
    private func open() {
        gate.withLock { gate in
            guard !gate.opened else { return }
            gate.opened = true
            let generation = operations.reloads.post(credentials: gate.credentials, peerPolicy: gate.peerPolicy)
            logger.notice("portal init: relaying enabled", metadata: ["generation": "\(generation)"])
        }
    }

    /// A SIGHUP reload. The peer policy applies at once; the credentials only once the portal has
    /// sent `init` (until then they are kept for it). Returns the generation posted to the workers.
    func apply(credentials: CredentialStore, peerPolicy: PeerPolicy) -> (generation: UInt64, credentialsOpen: Bool) {
        gate.withLock { gate in
            gate.credentials = credentials
            gate.peerPolicy = peerPolicy
            let open = gate.opened
            let generation = operations.reloads.post(credentials: open ? credentials : CredentialStore(),
                                                     peerPolicy: peerPolicy)
            return (generation, open)
        }
    }

    func stop() {
        task.withLock { $0?.cancel() }
    }
}
