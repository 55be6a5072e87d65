import ArgumentParser
import Glibc
import Logging
import RelayIO
import RelayCore
import RelayOperations
import STUN

/// The serve command's options resolved against the environment and the defaults.
struct RelaySettings {
    var listenPort: UInt16
    var bindIPv4: IPv4Address?
    var bindIPv6: IPv6Address?
    var publicIPv4: IPv4Address?
    var publicIPv6: IPv6Address?
    /// Public addresses the operator did not set and that were defaulted to loopback.
    var defaultedPublic: [String] = []
    /// Portal mode: address families not served because they have no public address.
    var notServed: [String] = []
    /// Firezone options accepted for compatibility that this relay does not act on (logged at start).
    var ignoredFirezoneOptions: [String] = []
    var portRange: ClosedRange<UInt16>
    var workers: Int
    var realm: String
    var restSecrets: [String]
    var generatedSecret = false
    var staticUsers: [String: String]
    var firezoneSecrets: [String]
    var defaultLifetime: UInt32
    var maxLifetime: UInt32
    /// RFC 8656's 300 and 600 seconds unless an operator sets others (non-standard, for tests).
    var permissionLifetime: UInt64
    var channelLifetime: UInt64
    var maxAllocations: Int
    /// nil: no per-username bound below `maxAllocations` (the default).
    var maxAllocationsPerUser: Int?
    var maxPermissions: Int
    var maxChannels: Int
    var challengeRatePerSource: Int
    var challengeBurstPerSource: Int
    var allowPeers: [CIDR]
    var denyPeers: [CIDR]
    var logLevel: Logger.Level
    var logFormat: String
    var drainSeconds: UInt32
    var receiveBuffers: Int
    var enableGSO: Bool
    var enableGRO: Bool
    var batchWaitMicroseconds: Int
    var steerByClientIP: Bool
    var rfc5766ChannelNumbers: Bool
    var ioBackend: IOBackendChoice
    /// What `ioBackend` resolved to on this host (set at start-up).
    var resolvedIOBackend: IOBackendKind = .ioUring
    /// Interfaces the XDP fast path attaches to (empty: off), how, and the program's object file.
    var xdpInterfaces: [String]
    var xdpMode: XDPMode
    var xdpNextHop: XDPNextHop
    var xdpObject: String
    var xdpIPv4: IPv4Address?
    var xdpIPv6: IPv6Address?
    /// TURN over TCP on the listen port, and over TLS when a certificate is given.
    var tcp: Bool
    var tlsListenPort: UInt16
    /// TCP allocations (RFC 6062) and how many peer data connections each may have.
    var tcpRelay: Bool
    var maxTCPConnectionsPerAllocation: Int
    var tlsCertificate: String?
    var tlsKey: String?
    var maxConnections: Int
    var maxConnectionsPerSource: Int
    var maxTLSHandshakes: Int
    var tlsHandshakeTimeout: UInt64
    var streamMessageTimeout: UInt64
    var streamIdleTimeout: UInt64
    var streamWriteBuffer: Int
    var operations: OperationsSettings
    /// Set when a portal token is configured (see `PortalSettings`).
    var portal: PortalSettings?

    init(_ o: ServeCommand) throws {
        listenPort = try o.listenPort ?? Environment.value("LISTEN_PORT", as: UInt16.self) ?? 3478
        // Portal mode (a token is set) changes two defaults: the realm, and what happens when no
        // public address is known (see below).
        let portalMode = try PortalSettings.token(o) != nil

        let bind4 = o.bindIp4 ?? Environment.string("BIND_IP4", firezone: "BIND_IP4_ADDR") ?? "0.0.0.0"
        if bind4.lowercased() == "none" {
            bindIPv4 = nil
        } else {
            guard let ip = IPv4Address(bind4) else { throw ValidationError("--bind-ip4 \(bind4) is not an IPv4 address") }
            bindIPv4 = ip
        }
        let bind6 = o.bindIp6 ?? Environment.string("BIND_IP6", firezone: "BIND_IP6_ADDR") ?? "::"
        if bind6.lowercased() == "none" {
            bindIPv6 = nil
        } else {
            guard let ip = IPv6Address(bind6) else { throw ValidationError("--bind-ip6 \(bind6) is not an IPv6 address") }
            bindIPv6 = ip
        }
        guard bindIPv4 != nil || bindIPv6 != nil else {
            throw ValidationError("--bind-ip4 and --bind-ip6 are both 'none': nothing to listen on")
        }

        // Public addresses: given, else a specific bind address, else loopback (standalone) or
        // nothing (portal mode, below).
        var defaulted4 = false, defaulted6 = false
        if let text = o.publicIp4 ?? Environment.string("PUBLIC_IP4", firezone: "PUBLIC_IP4_ADDR") {
            guard let ip = IPv4Address(text) else { throw ValidationError("--public-ip4 \(text) is not an IPv4 address") }
            publicIPv4 = ip
        } else if let bind = bindIPv4 {
            publicIPv4 = bind == .any ? .loopback : bind
            defaulted4 = bind == .any
        }
        if let text = o.publicIp6 ?? Environment.string("PUBLIC_IP6", firezone: "PUBLIC_IP6_ADDR") {
            guard let ip = IPv6Address(text) else { throw ValidationError("--public-ip6 \(text) is not an IPv6 address") }
            publicIPv6 = ip
        } else if let bind = bindIPv6 {
            publicIPv6 = bind == .any ? .loopback : bind
            defaulted6 = bind == .any
        }
        if portalMode {
            // The portal hands these addresses to Firezone's clients and gateways: a silent
            // loopback default would make the relay useless to all of them. Like Firezone's relay,
            // serve only the families that have a public address; with none, refuse to start.
            // (An address the operator gave explicitly, even a loopback one, is taken as meant:
            // that is how a relay on one machine is tested.)
            if bindIPv4 != nil, publicIPv4 == .any {
                throw ValidationError("--public-ip4 (PUBLIC_IP4_ADDR) 0.0.0.0 is not an address clients can reach: set PUBLIC_IP4_ADDR to this host's public IPv4 address")
            }
            if bindIPv6 != nil, publicIPv6 == .any {
                throw ValidationError("--public-ip6 (PUBLIC_IP6_ADDR) :: is not an address clients can reach: set PUBLIC_IP6_ADDR to this host's public IPv6 address")
            }
            let usable4 = bindIPv4 != nil && !defaulted4
            let usable6 = bindIPv6 != nil && !defaulted6
            guard usable4 || usable6 else {
                throw ValidationError("""
                    with a portal token (FIREZONE_TOKEN) the relay needs its public address: set PUBLIC_IP4_ADDR \
                    (or --public-ip4 / PUBLIC_IP4) and/or PUBLIC_IP6_ADDR (or --public-ip6 / PUBLIC_IP6) to this \
                    host's internet-reachable address; without it the portal would hand clients a loopback address
                    """)
            }
            if defaulted4, bindIPv4 != nil {
                notServed.append("IPv4: no public IPv4 address (set PUBLIC_IP4_ADDR or --public-ip4 to serve it)")
                bindIPv4 = nil
                publicIPv4 = nil
            }
            if defaulted6, bindIPv6 != nil {
                notServed.append("IPv6: no public IPv6 address (set PUBLIC_IP6_ADDR or --public-ip6 to serve it)")
                bindIPv6 = nil
                publicIPv6 = nil
            }
        } else {
            if defaulted4 { defaultedPublic.append("--public-ip4 (using 127.0.0.1)") }
            if defaulted6 { defaultedPublic.append("--public-ip6 (using ::1)") }
        }

        let minPort = try o.minPort ?? Environment.value("MIN_PORT", firezone: "LOWEST_PORT", as: UInt16.self) ?? 49152
        let maxPort = try o.maxPort ?? Environment.value("MAX_PORT", firezone: "HIGHEST_PORT", as: UInt16.self) ?? 65535
        guard minPort >= 1, minPort <= maxPort else {
            throw ValidationError("the relay port range \(minPort)...\(maxPort) is empty (need 1 ≤ --min-port ≤ --max-port)")
        }
        portRange = minPort...maxPort
        // An allocation socket could otherwise take the listener's port on another address, and
        // a client could name the listener as a peer (TURN inside TURN).
        guard !portRange.contains(listenPort) else {
            throw ValidationError("--listen-port \(listenPort) lies inside the relay port range \(minPort)...\(maxPort); choose a listen port outside --min-port...--max-port")
        }

        let cores = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        workers = try o.workers ?? Environment.value("WORKERS", firezone: "NUM_WORKER_THREADS", as: Int.self) ?? cores
        guard workers >= 1, workers <= 1024 else { throw ValidationError("--workers must be between 1 and 1024") }
        guard portRange.count >= workers else {
            throw ValidationError("the relay port range \(minPort)...\(maxPort) has fewer ports than --workers \(workers)")
        }

        // Firezone's clients (connlib) hard-code the realm `firezone` and refuse a server that offers
        // another, so portal mode defaults to it.
        realm = o.realm ?? Environment.string("REALM") ?? (portalMode ? "firezone" : "turn-relay")
        guard !realm.isEmpty, realm.utf8.count < 128 else { throw ValidationError("--realm must be 1...127 bytes") }

        restSecrets = o.authSecret.isEmpty ? Environment.list("AUTH_SECRET") : o.authSecret
        var users: [String: String] = [:]
        for entry in o.user.isEmpty ? Environment.list("USERS") : o.user {
            guard let colon = entry.firstIndex(of: ":"), colon != entry.startIndex else {
                throw ValidationError("--user takes name:password")
            }
            users[String(entry[..<colon])] = String(entry[entry.index(after: colon)...])
        }
        staticUsers = users
        firezoneSecrets = (o.firezoneSecret ?? Environment.string("FIREZONE_SECRET")).map { [$0] } ?? []
        if restSecrets.isEmpty && staticUsers.isEmpty && firezoneSecrets.isEmpty {
            // Never run open: with no credentials configured, make a random REST secret and say so.
            restSecrets = [Self.randomSecret()]
            generatedSecret = true
        }

        defaultLifetime = try o.defaultLifetime ?? Environment.value("DEFAULT_LIFETIME", as: UInt32.self) ?? 600
        maxLifetime = try o.maxLifetime ?? Environment.value("MAX_LIFETIME", as: UInt32.self) ?? 3600
        guard defaultLifetime > 0, defaultLifetime <= maxLifetime else {
            throw ValidationError("--default-lifetime must be between 1 and --max-lifetime")
        }
        let standard = ServerConfiguration()
        permissionLifetime = try o.permissionLifetime ?? Environment.value("PERMISSION_LIFETIME", as: UInt64.self)
            ?? standard.permissionLifetime
        channelLifetime = try o.channelLifetime ?? Environment.value("CHANNEL_LIFETIME", as: UInt64.self)
            ?? standard.channelLifetime
        for (name, value, rfc) in [("--permission-lifetime", permissionLifetime, "RFC 8656 §9: \(standard.permissionLifetime)"),
                                   ("--channel-lifetime", channelLifetime, "RFC 8656 §12: \(standard.channelLifetime)")]
        where !Self.lifetimeBounds.contains(value) {
            throw ValidationError("\(name) \(value) must be between \(Self.lifetimeBounds.lowerBound) and \(Self.lifetimeBounds.upperBound) seconds (\(rfc))")
        }
        maxAllocations = try o.maxAllocations ?? Environment.value("MAX_ALLOCATIONS", as: Int.self) ?? 10000
        maxAllocationsPerUser = try o.maxAllocationsPerUser
            ?? Environment.value("MAX_ALLOCATIONS_PER_USER", as: Int.self)
        maxPermissions = try o.maxPermissions ?? Environment.value("MAX_PERMISSIONS", as: Int.self) ?? 128
        maxChannels = try o.maxChannels ?? Environment.value("MAX_CHANNELS", as: Int.self) ?? 128
        challengeRatePerSource = try o.challengeRatePerSource
            ?? Environment.value("CHALLENGE_RATE_PER_SOURCE", as: Int.self) ?? 10
        guard (1...1_000_000).contains(challengeRatePerSource) else {
            throw ValidationError("--challenge-rate-per-source \(challengeRatePerSource) must be between 1 and 1000000")
        }
        challengeBurstPerSource = try o.challengeBurstPerSource
            ?? Environment.value("CHALLENGE_BURST_PER_SOURCE", as: Int.self) ?? Self.defaultChallengeBurstPerSource
        guard (1...1_000_000).contains(challengeBurstPerSource) else {
            throw ValidationError("--challenge-burst-per-source \(challengeBurstPerSource) must be between 1 and 1000000")
        }
        for (name, value) in [("--max-allocations", maxAllocations), ("--max-allocations-per-user", maxAllocationsPerUser ?? 1),
                              ("--max-permissions", maxPermissions), ("--max-channels", maxChannels)] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }

        func cidrs(_ values: [String], _ option: String) throws -> [CIDR] {
            try values.map { text in
                guard let c = CIDR(text) else { throw ValidationError("\(option) \(text) is not a CIDR (e.g. 10.0.0.0/8)") }
                return c
            }
        }
        allowPeers = try cidrs(o.allowPeer.isEmpty ? Environment.list("ALLOW_PEER") : o.allowPeer, "--allow-peer")
        denyPeers = try cidrs(o.denyPeer.isEmpty ? Environment.list("DENY_PEER") : o.denyPeer, "--deny-peer")

        let level = (o.logLevel ?? Environment.string("LOG_LEVEL") ?? "info").lowercased()
        guard let parsedLevel = Logger.Level(rawValue: level) else {
            throw ValidationError("--log-level \(level) is not one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = parsedLevel
        logFormat = (o.logFormat ?? Environment.string("LOG_FORMAT") ?? "human").lowercased()
        guard logFormat == "human" || logFormat == "json" else { throw ValidationError("--log-format is human or json") }
        drainSeconds = try o.drainSeconds ?? Environment.value("DRAIN_SECONDS", as: UInt32.self) ?? 30
        receiveBuffers = try o.receiveBuffers ?? Environment.value("RECEIVE_BUFFERS", as: Int.self) ?? 4096
        guard receiveBuffers >= 2, receiveBuffers <= 32768, receiveBuffers & (receiveBuffers - 1) == 0 else {
            throw ValidationError("--receive-buffers must be a power of two between 2 and 32768")
        }
        enableGSO = !(o.disableGso || Environment.flag("DISABLE_GSO"))
        enableGRO = !(o.disableGro || Environment.flag("DISABLE_GRO"))
        batchWaitMicroseconds = try o.batchWaitUs ?? Environment.value("BATCH_WAIT_US", as: Int.self) ?? 0
        guard (0...10_000).contains(batchWaitMicroseconds) else {
            throw ValidationError("--batch-wait-us must be between 0 and 10000")
        }
        steerByClientIP = o.steerByClientIp || Environment.flag("STEER_BY_CLIENT_IP")
        rfc5766ChannelNumbers = o.rfc5766ChannelNumbers || Environment.flag("RFC5766_CHANNEL_NUMBERS")
        tcp = !(o.noTcp || Environment.flag("NO_TCP"))
        tcpRelay = !(o.noTcpRelay || Environment.flag("NO_TCP_RELAY"))
        maxTCPConnectionsPerAllocation = try o.maxTcpConnectionsPerAllocation
            ?? Environment.value("MAX_TCP_CONNECTIONS_PER_ALLOCATION", as: Int.self) ?? 32
        tlsListenPort = try o.tlsListenPort ?? Environment.value("TLS_LISTEN_PORT", as: UInt16.self) ?? 5349
        tlsCertificate = o.tlsCert ?? Environment.string("TLS_CERT")
        tlsKey = o.tlsKey ?? Environment.string("TLS_KEY")
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-cert and --tls-key go together (TURN over TLS needs both)")
        }
        if tlsCertificate != nil && tlsListenPort == listenPort && !tcp {
            // Allowed: TLS alone on the listen port's TCP side.
        } else if tlsCertificate != nil && tlsListenPort == listenPort {
            throw ValidationError("--tls-listen-port \(tlsListenPort) is the TCP listen port; choose another or pass --no-tcp")
        }
        maxConnections = try o.maxConnections ?? Environment.value("MAX_CONNECTIONS", as: Int.self) ?? 10_000
        maxConnectionsPerSource = try o.maxConnectionsPerSource
            ?? Environment.value("MAX_CONNECTIONS_PER_SOURCE", as: Int.self) ?? 100
        maxTLSHandshakes = try o.maxTlsHandshakes ?? Environment.value("MAX_TLS_HANDSHAKES", as: Int.self) ?? 512
        tlsHandshakeTimeout = try o.tlsHandshakeTimeout ?? Environment.value("TLS_HANDSHAKE_TIMEOUT", as: UInt64.self) ?? 10
        streamMessageTimeout = try o.streamMessageTimeout ?? Environment.value("STREAM_MESSAGE_TIMEOUT", as: UInt64.self) ?? 10
        streamIdleTimeout = try o.streamIdleTimeout ?? Environment.value("STREAM_IDLE_TIMEOUT", as: UInt64.self) ?? 900
        streamWriteBuffer = try o.streamWriteBuffer ?? Environment.value("STREAM_WRITE_BUFFER", as: Int.self) ?? 262_144
        for (name, value, bounds) in [("--max-connections", maxConnections, 1...10_000_000),
                                      ("--max-connections-per-source", maxConnectionsPerSource, 1...10_000_000),
                                      ("--max-tls-handshakes", maxTLSHandshakes, 1...1_000_000),
                                      ("--max-tcp-connections-per-allocation", maxTCPConnectionsPerAllocation, 1...10_000),
                                      ("--stream-write-buffer", streamWriteBuffer, 4096...(64 << 20))]
        where !bounds.contains(value) {
            throw ValidationError("\(name) \(value) must be between \(bounds.lowerBound) and \(bounds.upperBound)")
        }
        for (name, value) in [("--tls-handshake-timeout", tlsHandshakeTimeout), ("--stream-message-timeout", streamMessageTimeout),
                              ("--stream-idle-timeout", streamIdleTimeout)] where !(1...86_400).contains(value) {
            throw ValidationError("\(name) \(value) must be between 1 and 86400 seconds")
        }
        let backend = (o.ioBackend ?? Environment.string("IO_BACKEND") ?? "auto").lowercased()
        guard let choice = IOBackendChoice(rawValue: backend) else {
            throw ValidationError("--io-backend \(backend) is not one of auto, io-uring, batched-syscalls")
        }
        ioBackend = choice
        if let seed = o.rngSeed ?? Environment.string("RNG_SEED") {
            // Firezone's relay seeds its RNG (ports, nonces, its auth secret) with it, for tests.
            guard UInt64(seed.trimmingCharacters()) != nil else {
                throw ValidationError("--rng-seed (RNG_SEED) \(seed) is not an unsigned 64-bit integer")
            }
            ignoredFirezoneOptions.append("RNG_SEED=\(seed) is ignored: nonces, relay ports and the stamp secret always come from the system's CSPRNG")
        }
        // Each interface once: a second link on the same interface would be refused (EBUSY).
        var seen: Set<String> = []
        xdpInterfaces = (o.xdpInterface.isEmpty ? Environment.list("XDP_INTERFACE") : o.xdpInterface).filter { seen.insert($0).inserted }
        if xdpInterfaces.isEmpty, let interface = o.ebpfOffloading ?? Environment.string("EBPF_OFFLOADING") {
            xdpInterfaces = [interface]
        }
        // Firezone's EBPF_ATTACH_MODE takes driver (DRV_MODE) or generic (SKB_MODE).
        let mode = (o.xdpMode ?? Environment.string("XDP_MODE") ?? Environment.string("EBPF_ATTACH_MODE") ?? "native").lowercased()
        switch mode {
        case "native", "driver": xdpMode = .native
        case "generic": xdpMode = .generic
        default: throw ValidationError("--xdp-mode \(mode) is not one of native, generic (Firezone's EBPF_ATTACH_MODE: driver, generic)")
        }
        let nextHop = (o.xdpNextHop ?? Environment.string("XDP_NEXT_HOP") ?? "auto").lowercased()
        guard let hop = XDPNextHop(rawValue: nextHop) else {
            throw ValidationError("--xdp-next-hop \(nextHop) is not one of auto, fib, swap")
        }
        if hop == .swap && xdpInterfaces.count > 1 {
            throw ValidationError("--xdp-next-hop swap sends every packet back out of the interface it came in by; with \(xdpInterfaces.count) XDP interfaces use fib (or auto)")
        }
        xdpNextHop = hop
        xdpObject = o.xdpObject ?? Environment.string("XDP_OBJECT") ?? Self.defaultXDPObject()
        if let text = o.xdpIp4 ?? Environment.string("XDP_IP4", firezone: "EBPF_INT4_ADDR") {
            guard let ip = IPv4Address(text) else { throw ValidationError("--xdp-ip4 \(text) is not an IPv4 address") }
            xdpIPv4 = ip
        }
        if let text = o.xdpIp6 ?? Environment.string("XDP_IP6", firezone: "EBPF_INT6_ADDR") {
            guard let ip = IPv6Address(text) else { throw ValidationError("--xdp-ip6 \(text) is not an IPv6 address") }
            xdpIPv6 = ip
        }
        operations = try OperationsSettings(o)
        portal = try PortalSettings(o, publicIPv4: bindIPv4 == nil ? nil : publicIPv4?.description,
                                    publicIPv6: bindIPv6 == nil ? nil : publicIPv6?.description, listenPort: listenPort)
        if let portal {
            // Portal mode: credentials follow the Firezone scheme with the stamp secret.
            firezoneSecrets.append(portal.stampSecret)
            if generatedSecret {
                restSecrets = []
                generatedSecret = false
            }
        }
        if let file = operations.credentialsFile {
            // The file's credentials count as configured credentials: no generated secret then.
            if generatedSecret, file.hasCredentials {
                restSecrets = []
                generatedSecret = false
            }
        }
    }

    /// 32 bytes from the system CSPRNG (getrandom on Linux), hex.
    static func randomSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ -> String in
            let b = UInt8.random(in: 0...255, using: &generator)
            return (b < 16 ? "0" : "") + String(b, radix: 16)
        }.joined()
    }

    /// turn_router.bpf.o beside the executable (where `make run` puts it), else the packaged one.
    static func defaultXDPObject() -> String {
        let packaged = "/usr/lib/turn-relay/turn_router.bpf.o"
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &path, Int(PATH_MAX))
        guard n > 0 else { return packaged }
        let executable = String(decoding: path[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let slash = executable.lastIndex(of: "/") else { return packaged }
        let beside = String(executable[..<slash]) + "/turn_router.bpf.o"
        return access(beside, R_OK) == 0 ? beside : packaged
    }

    /// The XDP fast path's settings for this configuration, nil when no interface is named.
    var xdpSettings: XDPSettings? {
        guard !xdpInterfaces.isEmpty else { return nil }
        var x = XDPSettings(interfaces: xdpInterfaces, mode: xdpMode, objectPath: xdpObject, listenerPort: listenPort,
                            relayPorts: portRange, listenIPv4: bindIPv4, listenIPv6: bindIPv6)
        x.rfc5766Channels = rfc5766ChannelNumbers
        x.wireIPv4 = xdpIPv4
        x.nextHop = xdpNextHop
        x.wireIPv6 = xdpIPv6
        x.routeEntries = XDPSettings.routeEntries(allocations: maxAllocations, channels: maxChannels)
        return x
    }

    /// `--permission-lifetime` and `--channel-lifetime`: zero would expire what was just granted,
    /// and beyond an hour (RFC 8656 §7.2's recommended longest allocation) is no use.
    static let lifetimeBounds: ClosedRange<UInt64> = 1...3600

    /// A warning for `--permission-lifetime`/`--channel-lifetime` values other than RFC 8656's,
    /// nil when both are the RFC's.
    var nonStandardLifetimes: String? {
        let standard = ServerConfiguration()
        guard permissionLifetime != standard.permissionLifetime || channelLifetime != standard.channelLifetime else { return nil }
        var c = standard
        c.channelLifetime = channelLifetime
        return "non-standard lifetimes: permissions \(permissionLifetime) s (RFC 8656 §9: \(standard.permissionLifetime) s), "
            + "channels \(channelLifetime) s (RFC 8656 §12: \(standard.channelLifetime) s), an expired channel reserved "
            + "\(c.channelCooldown) s; clients expecting the RFC's values may lose permissions or channels. "
            + "For tests or special deployments only"
    }

    /// Outstanding EVEN-PORT reservations per username when `--max-allocations-per-user` is not given.
    static let defaultReservationsPerUser = 10

    /// 401/438 burst per source when `--challenge-burst-per-source` is not given: 1,000 clients behind
    /// one NAT address get their challenges at once (`turn-bench flood nat`: all had allocations
    /// within 0.1 s; at a burst of 10, 640 of them after 5 minutes, or all after 2 minutes when
    /// their retransmissions were jittered); the sustained rate stays 10 per second
    /// (RELIABILITY.md, Floods).
    static let defaultChallengeBurstPerSource = 1000

    /// The stream listeners and bounds of one worker (the process-wide counts divided among the
    /// workers); `tls` is set by the caller once the certificate is loaded.
    var streamSettings: StreamSettings {
        var s = StreamSettings()
        s.tcpPort = tcp ? listenPort : nil
        s.tlsPort = tlsCertificate != nil ? tlsListenPort : nil
        s.maxConnections = max(1, (maxConnections + workers - 1) / workers)
        s.maxConnectionsPerSource = maxConnectionsPerSource
        s.maxHandshakes = max(1, (maxTLSHandshakes + workers - 1) / workers)
        s.handshakeTimeoutNanoseconds = tlsHandshakeTimeout * 1_000_000_000
        s.messageTimeoutNanoseconds = streamMessageTimeout * 1_000_000_000
        s.idleTimeoutNanoseconds = streamIdleTimeout * 1_000_000_000
        s.writeBufferBytes = streamWriteBuffer
        s.rfc5766ChannelNumbers = rfc5766ChannelNumbers
        return s
    }

    /// The core's configuration (one worker's port slice is set by the runtime).
    var serverConfiguration: ServerConfiguration {
        var c = ServerConfiguration(relayAddressIPv4: bindIPv4 == nil ? nil : publicIPv4,
                                    relayAddressIPv6: bindIPv6 == nil ? nil : publicIPv6)
        c.portRange = portRange
        c.realm = realm
        c.credentials = credentialStore
        c.peerPolicy = peerPolicy
        c.defaultLifetime = defaultLifetime
        c.maxLifetime = maxLifetime
        c.permissionLifetime = permissionLifetime
        c.channelLifetime = channelLifetime
        // Both count the whole process: the workers' Servers share one `SharedAllocationQuota`
        // (made by `TURNServerFactory`), whichever worker the kernel's reuseport hash picks.
        c.maxAllocations = maxAllocations
        // No per-user bound unless asked for (coturn's `user-quota` defaults to none too): one REST
        // username is often shared by many allocations (`turnutils_uclient -m 40`, a media server).
        c.maxAllocationsPerUsername = maxAllocationsPerUser ?? maxAllocations
        // EVEN-PORT reservations per user stay bounded either way: one user must not fill the
        // process-wide registry (256) that every other user's RTP/RTCP pairs need.
        c.maxReservationsPerUsername = maxAllocationsPerUser ?? Self.defaultReservationsPerUser
        c.maxPermissionsPerAllocation = maxPermissions
        c.maxChannelsPerAllocation = maxChannels
        c.challengesPerSecondPerSource = challengeRatePerSource
        c.challengeBurstPerSource = challengeBurstPerSource
        c.rfc5766ChannelNumbers = rfc5766ChannelNumbers
        c.tcpAllocations = tcpRelay
        c.maxTCPConnectionsPerAllocation = maxTCPConnectionsPerAllocation
        return c
    }

    /// The command line's credentials plus those of `--credentials-file` as last read.
    var credentialStore: CredentialStore {
        let base = CredentialStore(staticUsers: staticUsers, restSecrets: restSecrets, firezoneSecrets: firezoneSecrets)
        return operations.credentialsFile?.credentials(addingTo: base) ?? base
    }

    var peerPolicy: PeerPolicy {
        operations.credentialsFile?.peerPolicy(addingTo: allowPeers, deny: denyPeers)
            ?? PeerPolicy(allow: allowPeers, deny: denyPeers)
    }
}
