import Glibc
import Logging
import RelayCore
import RelayIO
import RelayOperations
import RelayOTel
import STUN

/// The relay's life: probe io_uring, start the workers, serve until SIGTERM/SIGINT, drain, exit.
struct RelayProcess {
    let settings: RelaySettings
    let logger: Logger

    func run() -> Int32 {
        var settings = self.settings
        switch settings.ioBackend.resolve() {
        case .refused(let why):
            logger.critical("--io-backend io-uring: \(why) Or run with --io-backend auto or batched-syscalls.")
            return 2
        case .use(let kind, let fallbackReason):
            if let fallbackReason {
                logger.warning("io backend batched-syscalls (epoll + recvmmsg/sendmmsg): \(fallbackReason)")
            } else {
                logger.info("io backend \(kind)")
            }
            settings.resolvedIOBackend = kind
        }
        raiseFileLimit(settings)
        // Signals are taken synchronously by this thread (sigtimedwait); block them before any
        // worker thread exists so every thread inherits the mask.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGTERM)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGHUP)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        var otlp: OTLPMetricsExporter?
        if let endpoint = settings.operations.otlpEndpoint {
            do {
                let timing = ["OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT"]
                    .reduce(into: [String: String]()) { $0[$1] = Environment.string($1) }
                otlp = try OTLPMetricsExporter(.init(endpoint: endpoint, serviceInstanceID: settings.operations.serviceInstanceID,
                                                     environment: timing), logger: logger)
            } catch {
                logger.critical("OTLP export to \(endpoint) cannot be set up: \(error)")
                return 1
            }
        }
        // TURN over TLS: the certificate must load before anything listens.
        var certificate: TLSCertificate?
        if let cert = settings.tlsCertificate, let key = settings.tlsKey {
            do throws(TLSError) {
                certificate = try TLSCertificate(certificatePath: cert, keyPath: key)
            } catch {
                logger.critical("--tls-cert \(cert) / --tls-key \(key) cannot be used: \(error)")
                return 1
            }
        }
        let operations = RelayOperationsContext(additionalFactories: otlp.map { [$0.factory] } ?? [])
        if let otlp { operations.attachOTLP { otlp.failedExports } }
        let xdp = startXDP(settings, operations: operations)
        defer { xdp?.close() }
        warnIfTheListenPortIsShared(settings)
        let runtime: RelayRuntime
        do {
            runtime = try start(settings, operations: operations, xdp: xdp, tls: certificate)
        } catch let error as RelayIOError {
            // No IPv6 on this host (or in this container): keep serving IPv4, say so.
            if case .socket(let address, let e) = error, address.family == .ipv6, settings.bindIPv4 != nil,
               e == EAFNOSUPPORT || e == EADDRNOTAVAIL {
                logger.warning("IPv6 unavailable (\(error)); serving IPv4 only. Set --bind-ip6 none to silence this.")
                settings.bindIPv6 = nil
                settings.publicIPv6 = nil
                do {
                    runtime = try start(settings, operations: operations, xdp: xdp, tls: certificate)
                } catch {
                    logger.critical("\(error)")
                    return 1
                }
            } else {
                logger.critical("\(error)")
                return 1
            }
        } catch {
            logger.critical("\(error)")
            return 1
        }
        announce(settings, runtime: runtime)
        // The portal's readiness check is registered before /readyz can be asked.
        let portal = settings.portal.map {
            PortalLink($0, operations: operations, credentials: settings.credentialStore, peerPolicy: settings.peerPolicy,
                       logger: logger)
        }
        let endpoints = startEndpoints(settings, operations: operations)
        portal?.start()
        if let otlp, let endpoint = settings.operations.otlpEndpoint {
            otlp.start(updating: operations.metrics)
            logger.notice("exporting metrics over OTLP/gRPC", metadata: ["endpoint": "\(endpoint)"])
        }

        var received: Int32 = 0
        while true {
            guard sigwait(&signals, &received) == 0 else { continue }
            if received != SIGHUP { break }
            reload(&settings, operations: operations, portal: portal)
            reloadCertificate(certificate)
        }
        operations.markDraining()
        logger.notice("received \(received == SIGTERM ? "SIGTERM" : "SIGINT"): draining for \(settings.drainSeconds) s (no new allocations; a second signal stops at once)")
        runtime.drain()
        // The portal stopped us before its first init: nothing was ever relayed, nothing to drain.
        let neverOpened = portal.map { $0.gaveUp && !$0.connection.hasBeenInitialized } ?? false
        var deadline = timespec(tv_sec: neverOpened ? 0 : Int(settings.drainSeconds), tv_nsec: 0)
        var info = siginfo_t()
        _ = sigtimedwait(&signals, &info, &deadline)
        runtime.stop()
        let stats = runtime.join()
        if let xdp {
            xdp.close()
            logger.notice("XDP fast path detached")
        }
        endpoints?.stop()
        portal?.stop()
        otlp?.stop()
        func total(_ field: (WorkerStatistics) -> UInt64) -> String { "\(stats.reduce(0) { $0 + field($1) })" }
        logger.notice("stopped", metadata: [
            "datagrams_received": "\(total(\.datagramsReceived))",
            "datagrams_sent": "\(total(\.datagramsSent))",
            "send_calls": "\(total(\.sendCalls))",
            "gso_sends": "\(total(\.segmentedSends))",
            "gro_receives": "\(total(\.coalescedReceives))",
            "allocation_sockets_opened": "\(total(\.allocationSocketsOpened))",
            "allocation_sockets_failed": "\(total(\.allocationSocketsFailed))",
            // Every drop reason a worker counts (`WorkerStatistics.metrics`), summed over workers.
            "dropped": "\(WorkerStatistics.total(.drops, over: stats))",
            "dropped_by_reason": "\(WorkerStatistics.nonZero(.drops, over: stats))",
            "send_errors": "\(total(\.sendErrors))",
            "receive_buffer_exhaustions": "\(total(\.receiveBuffersExhausted))",
        ])
        return portal?.gaveUp == true ? 1 : 0
    }

    /// The XDP fast path when interfaces are named and it attaches; otherwise one warning naming
    /// the cause and the fix, and nil: the io_uring path serves everything.
    func startXDP(_ settings: RelaySettings, operations: RelayOperationsContext) -> XDPFastPath? {
        guard let xdp = settings.xdpSettings else {
            logger.info("XDP fast path off (no --xdp-interface): the \(settings.resolvedIOBackend) path relays everything")
            operations.noteXDP("off")
            return nil
        }
        switch XDPFastPath.start(xdp) {
        case .success(let fastPath):
            logger.notice("XDP fast path \(fastPath.status)", metadata: [
                "object": "\(xdp.objectPath)", "route_entries": "\(fastPath.routeCapacity)", "route_entries_max": "\(fastPath.mostRouteCapacity)",
                "next_hop": "\(xdp.nextHop.usesFIB(interfaceCount: xdp.interfaces.count) ? "fib" : "swap")",
                "on_link_channels": "\(xdp.nextHop.onLinkChannels(interfaceCount: xdp.interfaces.count))",
                "relay_ipv4": "\(fastPath.encoding.relayIPv4?.description ?? "none")",
                "relay_ipv6": "\(fastPath.encoding.relayIPv6?.description ?? "none")",
            ])
            operations.attach(xdp: fastPath)
            warnIfForwardingIsOff(xdp)
            let logger = logger
            let links = fastPath.attached.map(\.name).joined(separator: ", ")
            fastPath.onRouteMapResize { resize in
                if let failure = resize.failure {
                    logger.warning("XDP route maps not resized from \(resize.from) to \(resize.to) entries at \(resize.routes) routes (\(resize.durationMilliseconds) ms): \(failure). They keep their size; channels beyond it stay on the io_uring path (relay_xdp_route_map_full_total).")
                } else {
                    logger.notice("XDP route maps resized from \(resize.from) to \(resize.to) entries at \(resize.routes) routes in \(resize.durationMilliseconds) ms")
                }
                if !resize.detached.isEmpty {
                    operations.noteXDP(fastPath.status)
                    logger.warning("XDP is no longer attached to \(resize.detached.joined(separator: ", ")): the interface was deleted while the relay ran (relay_xdp_interfaces_attached counts the rest). Traffic on an interface created again under that name is served by the io_uring path until the relay restarts (the links are not watched).")
                }
            }
            if let why = fastPath.linkWatchFailure {
                logger.warning("XDP does not watch its interfaces (\(why)): one deleted while the relay runs is dropped at the next resize of the route maps, and one created again under its name is served by the io_uring path until the relay restarts.")
            }
            fastPath.onLinkChange { change in
                operations.noteXDP(fastPath.status)
                if !change.detached.isEmpty {
                    logger.warning("XDP is no longer attached to \(change.detached.joined(separator: ", ")): the interface was deleted, renamed or moved to another network namespace while the relay ran; the \(settings.resolvedIOBackend) path serves its traffic, and XDP attaches again when an interface of that name is back (relay_xdp_interfaces_attached counts the attached ones).")
                }
                if !change.reattached.isEmpty {
                    logger.notice("XDP attached again to \(change.reattached.joined(separator: ", ")) (an interface of that name is back): \(fastPath.status)")
                }
                if let failure = change.configFailure {
                    logger.warning("XDP program's configuration not updated for the interfaces now attached (its MTU is the smallest of theirs): \(failure)")
                }
                for (name, why) in change.unattached.sorted(by: { $0.key < $1.key }) where !change.detached.contains(name) {
                    logger.warning("XDP not attached to \(name): \(why); the \(settings.resolvedIOBackend) path serves its traffic (checked again at each change of the links)")
                }
            }
            let leftOut = xdp.nextHop.leavesOnLinkChannelsToUserspace(interfaceCount: xdp.interfaces.count)
            fastPath.warnOnce { route in
                if leftOut {
                    logger.notice("XDP leaves the channel from client \(route.client.ip) to peer \(route.peer.ip) on the io_uring path, and every channel with an end on \(links)'s own subnet: it would swap MAC addresses (--xdp-next-hop auto on one interface), which sends each one's datagrams back to the MAC address they came from, wrong if they are different hosts on that link. To relay them in XDP: --xdp-next-hop fib (with IP forwarding on), or swap if every client and peer on that link is reached through one MAC address. Counted in relay_xdp_routes_on_link_total; said once.")
                    return
                }
                logger.warning("XDP swaps MAC addresses (--xdp-next-hop \(xdp.nextHop.rawValue) on one interface), and the channel from client \(route.client.ip) to peer \(route.peer.ip) has an end on \(links)'s own subnet. If they are different hosts on that link, the program sends each one's datagrams back to the MAC address they came from, and they are lost. For such links: --xdp-next-hop fib (with IP forwarding on). Said once.")
            }
            return fastPath
        case .failure(let failure):
            logger.warning("XDP fast path off: \(failure) Serving everything on the \(settings.resolvedIOBackend) path.")
            operations.noteXDP("failed (\(failure.cause))")
            return nil
        }
    }

    /// With the next hop from the FIB (several interfaces, or `--xdp-next-hop fib`) the program
    /// asks bpf_fib_lookup, which finds no route on an interface whose IP forwarding is off: those
    /// packets then pass to the io_uring path (reason `no_route`). Named once at start.
    func warnIfForwardingIsOff(_ xdp: XDPSettings) {
        guard xdp.nextHop.usesFIB(interfaceCount: xdp.interfaces.count) else { return }
        for family in ["ipv4", "ipv6"] {
            let off = xdp.interfaces.filter { name in
                let path = "/proc/sys/net/\(family)/conf/\(name)/forwarding"
                guard let file = fopen(path, "r") else { return false }
                defer { fclose(file) }
                return fgetc(file) == Int32(UInt8(ascii: "0"))
            }
            guard !off.isEmpty else { continue }
            logger.warning("XDP next hop from the FIB (\(xdp.interfaces.count) interface\(xdp.interfaces.count == 1 ? "" : "s"), --xdp-next-hop \(xdp.nextHop.rawValue)): \(family) forwarding is off on \(off.joined(separator: ", ")), so the packets the XDP program would relay find no route and are relayed by the userspace path instead (relay_xdp_passed_packets_total{reason=\"no_route\"}). To relay them in XDP: sysctl -w net.\(family).conf.all.forwarding=1 (and per interface).")
        }
    }

    /// Every client connection and every relayed address is a file descriptor: the soft limit
    /// (often 1024) is raised to the hard one, and a limit below what the options allow is named.
    func raiseFileLimit(_ settings: RelaySettings) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let needed = UInt64(settings.maxConnections) * (settings.tcp || settings.tlsCertificate != nil ? 1 : 0)
            + UInt64(settings.maxAllocations) * 2 + 256
        if UInt64(limit.rlim_cur) < needed {
            logger.warning("open files limit \(limit.rlim_cur) is below what --max-connections and --max-allocations allow (\(needed)); raise it (systemd: LimitNOFILE=) or lower them")
        }
    }

    /// SIGHUP: the TLS certificate and key are read again; connections open keep theirs.
    func reloadCertificate(_ certificate: TLSCertificate?) {
        guard let certificate else { return }
        do throws(TLSError) {
            try certificate.reload()
            logger.notice("SIGHUP: reloaded the TLS certificate \(certificate.certificatePath)")
        } catch {
            logger.error("SIGHUP: TLS certificate \(certificate.certificatePath) not reloaded, keeping the previous one: \(error)")
        }
    }

    /// Another socket on the listen port (a relay left running, or the one being drained during an
    /// upgrade): SO_REUSEPORT lets this relay bind anyway and the kernel shares the port's traffic
    /// between the two, so say so once.
    func warnIfTheListenPortIsShared(_ settings: RelaySettings) {
        var addresses: [TransportAddress] = []
        if let ip = settings.bindIPv4 { addresses.append(TransportAddress(ip: .v4(ip), port: settings.listenPort)) }
        if let ip = settings.bindIPv6 { addresses.append(TransportAddress(ip: .v6(ip), port: settings.listenPort)) }
        for address in ListenPortProbe.held(addresses) {
            logger.warning("UDP \(address) is already bound by another socket: another turn-relay (one being drained, or one left running) shares this port's traffic with this one (SO_REUSEPORT) until it exits. Stop the other process if it is not an upgrade by drain.")
        }
    }

    func start(_ settings: RelaySettings, operations: RelayOperationsContext, xdp: XDPFastPath?,
               tls: TLSCertificate?) throws -> RelayRuntime {
        var worker = WorkerConfiguration(listenIPv4: settings.bindIPv4, listenIPv6: settings.bindIPv6,
                                         listenPort: settings.listenPort)
        worker.receiveBuffers = settings.receiveBuffers
        worker.enableGSO = settings.enableGSO
        worker.enableGRO = settings.enableGRO
        worker.batchWaitMicroseconds = settings.batchWaitMicroseconds
        worker.steerByClientAddress = settings.steerByClientIP
        worker.ioBackend = settings.resolvedIOBackend
        worker.routeSink = xdp
        worker.streams = settings.streamSettings
        worker.streams.tls = tls
        var configured = settings.serverConfiguration
        // The core emits route changes only when something applies them.
        configured.emitsChannelRoutes = xdp != nil
        // Portal mode: no credentials (every Allocate refused) until the portal's init.
        if settings.portal != nil { configured.credentials = CredentialStore() }
        // The servers share the EVEN-PORT registry and the live relay ports; the listener port
        // and this host's addresses are never reachable as peers.
        let factory = TURNServerFactory(configuration: configured, listenerPorts: [settings.listenPort],
                                        localAddresses: HostAddresses.current())
        // Each worker's Server is wrapped for its histograms; its worker publishes its report
        // and applies the reloads posted to `operations.reloads`, on its own thread.
        let runtime = try RelayRuntime.start(workers: settings.workers, configuration: worker,
                                             portRange: configured.portRange, reloads: operations.reloads) {
            context, slice in
            operations.makeProcessor(worker: context.index, server: factory.makeServer(context, portRange: slice))
        }
        operations.attach(runtime)
        return runtime
    }

    /// The health and metrics listeners. A listener that cannot bind is logged and skipped: the
    /// relay itself keeps serving.
    func startEndpoints(_ settings: RelaySettings, operations: RelayOperationsContext) -> OperationsServer? {
        let ops = settings.operations
        guard let health = ops.healthAddress ?? ops.metricsAddress else { return nil }
        do throws(HTTPServerError) {
            // Only metrics configured: one listener on the metrics address serves everything.
            let server = try OperationsServer(
                healthAddress: health, metricsAddress: ops.healthAddress == nil ? nil : ops.metricsAddress,
                metrics: operations.metrics, readiness: operations.readiness, version: "turn-relay",
                servesMetrics: ops.metricsAddress != nil)
            logger.notice("operations endpoints", metadata: [
                "health": "\(ops.healthAddress.map { _ in server.health.boundAddress.description } ?? "off")",
                "metrics": "\(ops.metricsAddress == nil ? "off" : server.metricsAddress?.description ?? "not served")",
            ])
            if let failure = server.metricsFailure {
                logger.error("metrics not served (health and readiness are): \(failure). Set --metrics-addr to a free address.")
            }
            return server
        } catch {
            logger.error("operations endpoints not started: \(error)")
            return nil
        }
    }

    /// SIGHUP: re-read `--credentials-file` and hand the new credentials and peer policy to every
    /// worker. Allocations stay; their next request authenticates against the new credentials.
    func reload(_ settings: inout RelaySettings, operations: RelayOperationsContext, portal: PortalLink? = nil) {
        guard let path = settings.operations.credentialsPath else {
            logger.notice("SIGHUP: no --credentials-file configured; nothing to reload")
            return
        }
        do throws(CredentialsFile.ParseError) {
            settings.operations.credentialsFile = try CredentialsFile.load(path: path)
        } catch {
            logger.error("SIGHUP: \(path) not reloaded, keeping the previous credentials: \(error)")
            return
        }
        if let portal {
            let (generation, open) = portal.apply(credentials: settings.credentialStore, peerPolicy: settings.peerPolicy)
            logger.notice("SIGHUP: reloaded \(path)\(open ? "" : "; credentials open when the portal sends init")",
                          metadata: ["generation": "\(generation)"])
            return
        }
        let generation = operations.reloads.post(credentials: settings.credentialStore, peerPolicy: settings.peerPolicy)
        logger.notice("SIGHUP: reloaded \(path)", metadata: ["generation": "\(generation)"])
    }

    /// Where it listens, what it advertises, and how to get a credential.
    func announce(_ settings: RelaySettings, runtime: RelayRuntime) {
        var listening: [String] = []
        if let ip = settings.bindIPv4 { listening.append(TransportAddress(ip: .v4(ip), port: settings.listenPort).description) }
        if let ip = settings.bindIPv6 { listening.append(TransportAddress(ip: .v6(ip), port: settings.listenPort).description) }
        var advertised: [String] = []
        if settings.bindIPv4 != nil, let ip = settings.publicIPv4 { advertised.append(ip.description) }
        if settings.bindIPv6 != nil, let ip = settings.publicIPv6 { advertised.append(ip.description) }
        let streams = runtime.workers.first?.streamListenerAddresses ?? []
        let tcp = streams.filter { $0.transport == .tcp }.map(\.address.description)
        let tls = streams.filter { $0.transport == .tls }.map(\.address.description)
        logger.notice("turn-relay listening", metadata: [
            "udp": "\(listening.joined(separator: ", "))",
            "tcp": "\(tcp.isEmpty ? "off" : tcp.joined(separator: ", "))",
            "tls": "\(tls.isEmpty ? "off" : tls.joined(separator: ", "))",
            "relay_addresses": "\(advertised.joined(separator: ", "))",
            "relay_ports": "\(settings.portRange.lowerBound)-\(settings.portRange.upperBound)",
            "workers": "\(runtime.workers.count)",
            "realm": "\(settings.realm)",
        ])
        for family in settings.notServed {
            logger.notice("portal mode: not serving \(family)")
        }
        for note in settings.ignoredFirezoneOptions {
            logger.notice("\(note)")
        }
        if let warning = settings.nonStandardLifetimes {
            logger.warning("\(warning)")
        }
        for option in settings.defaultedPublic {
            logger.warning("no public address set: clients are told to use loopback, which only works on this machine. Set \(option.split(separator: " ").first ?? "") to this host's public address.")
        }
        if settings.generatedSecret, let secret = settings.restSecrets.first {
            logger.notice("no credentials configured: generated a REST secret for this run. Get a username and password with: turn-relay credential --secret \(secret) --ttl 86400")
            logger.notice("to keep credentials valid across restarts, start with --auth-secret <secret> (or AUTH_SECRET)")
        } else if !settings.restSecrets.isEmpty {
            logger.notice("REST credentials: turn-relay credential --secret <your --auth-secret> --ttl 86400 [--id name]")
        }
    }
}
