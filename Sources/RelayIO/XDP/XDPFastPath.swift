import CXDP
import Glibc
import RelayCore
import STUN
import Synchronization

/// Where a worker applies the core's route changes (`OutboundBatch.routeChanges`), in order,
/// before anything else in the batch. Called on worker threads; must be thread-safe.
public protocol ChannelRouteSink: AnyObject, Sendable {
    func apply(_ change: RouteChange)
}

public enum XDPMode: String, Sendable, CaseIterable {
    /// In the driver (XDP_FLAGS_DRV_MODE): the fast one; the driver must support XDP.
    case native
    /// In the kernel's generic receive path (XDP_FLAGS_SKB_MODE): any device, slower.
    case generic

    /// The loader's mode (`cx_attach`).
    var loaderMode: Int32 { self == .generic ? Int32(CX_MODE_GENERIC) : Int32(CX_MODE_NATIVE) }
}

/// How the XDP program picks the Ethernet next hop of a packet it relays.
public enum XDPNextHop: String, Sendable, CaseIterable {
    /// `fib` on several interfaces (a route may leave by another one); on one, `swap` for the
    /// channels whose client and peer are both off the attached link (reached through a router,
    /// as from a cloud host behind its gateway), while a channel with an end on the link (another
    /// host there may have its own MAC address) stays on the io_uring path.
    case auto
    /// The kernel's FIB and neighbour table (bpf_fib_lookup): right for any topology; about twice
    /// the program's run time (BPF/README.md, "Run time"); needs IP forwarding on the interfaces.
    case fib
    /// The received frame's MAC addresses swapped, sent back out of the interface it came in by:
    /// right only where clients and peers are reached through the same next hop (a cloud host
    /// behind its gateway, or one host on the link); one interface only. Every channel's route is
    /// installed: the operator says the swap is right for all of them.
    case swap

    /// Whether a channel with its client or peer on an attached link is left on the io_uring path:
    /// `auto` swapping (one interface).
    public func leavesOnLinkChannelsToUserspace(interfaceCount: Int) -> Bool {
        self == .auto && !usesFIB(interfaceCount: interfaceCount)
    }

    /// Whether the program takes the next hop from the FIB, attached to `interfaceCount` interfaces.
    public func usesFIB(interfaceCount: Int) -> Bool {
        switch self {
        case .auto: interfaceCount > 1
        case .fib: true
        case .swap: false
        }
    }

    /// Who relays a channel with an end on an attached link's own subnet, as the start-up log
    /// says it: `xdp` (next hop from the FIB), `userspace` (left out, `auto` on one interface) or
    /// `xdp-swapped` (installed with the MAC addresses swapped, `swap`).
    public func onLinkChannels(interfaceCount: Int) -> String {
        if usesFIB(interfaceCount: interfaceCount) { return "xdp" }
        return leavesOnLinkChannelsToUserspace(interfaceCount: interfaceCount) ? "userspace" : "xdp-swapped"
    }
}

/// What the fast path is started with.
public struct XDPSettings: Sendable, Equatable {
    /// Interface names; each gets the same program (one set of maps for all).
    public var interfaces: [String]
    public var mode: XDPMode = .native
    public var nextHop: XDPNextHop = .auto
    /// The compiled BPF/turn_router.bpf.c.
    public var objectPath: String
    /// The most entries each route map may grow to (one per channel binding).
    public var routeEntries: UInt32 = UInt32(TR_ROUTES_DEFAULT_ENTRIES)
    /// Entries each route map starts with (at most `routeEntries`). The maps grow fourfold when
    /// three quarters are used, and shrink back when a sixteenth is (`resizedRouteCapacity`):
    /// the program's lookups miss the caches less in small maps (BENCHMARKS.md, "XDP program run
    /// time"), and the kernel memory they pin follows the routes.
    public var initialRouteEntries: UInt32 = 4096
    /// After a resize, how long the maps wait before they may shrink, and after a failed one
    /// before any other try. Each resize loads the program again (the verifier runs, every route
    /// is copied), so clients that bind and drop channels around the thresholds must not make the
    /// relay reload it over and over; growing after a success is never delayed.
    public var routeResizeInterval: Duration = .seconds(60)
    public var listenerPort: UInt16
    public var relayPorts: ClosedRange<UInt16>
    /// Accept RFC 5766 channel numbers 0x5000-0x7FFF, as the core does with the same option.
    public var rfc5766Channels = false
    /// The addresses the listener and the allocation sockets are bound to (nil: family off;
    /// a wildcard is replaced by the first attached interface's address of that family).
    public var listenIPv4: IPv4Address?
    public var listenIPv6: IPv6Address?
    public var relayBindIPv4: IPv4Address?
    public var relayBindIPv6: IPv6Address?
    /// The attached interface's own address of each family on the wire, when the derived one
    /// (the bound address, else the interface's first) is not it; only used for a family the
    /// relay serves.
    public var wireIPv4: IPv4Address?
    public var wireIPv6: IPv6Address?
    /// Watch the links (rtnetlink): drop a link whose interface is deleted at once, and attach
    /// again to an interface created again under a name in `interfaces` (`XDPLinkWatch`). Off:
    /// a deleted interface's link is dropped at the next resize, and nothing is attached again.
    public var watchLinks = true
    /// How often the watch checks the links when no change is announced (a safety net: the
    /// announcements are multicast, and the kernel drops them for a socket that lags).
    public var linkRecheckInterval: Duration = .seconds(10)

    /// `interfaces` in the order their names have in `self.interfaces`.
    func ordered(_ interfaces: [XDPInterfaces.Interface]) -> [XDPInterfaces.Interface] {
        interfaces.sorted { a, b in
            (self.interfaces.firstIndex(of: a.name) ?? 0) < (self.interfaces.firstIndex(of: b.name) ?? 0)
        }
    }

    public init(interfaces: [String], mode: XDPMode = .native, objectPath: String, listenerPort: UInt16,
                relayPorts: ClosedRange<UInt16>, listenIPv4: IPv4Address?, listenIPv6: IPv6Address?,
                relayBindIPv4: IPv4Address? = nil, relayBindIPv6: IPv6Address? = nil) {
        self.interfaces = interfaces
        self.mode = mode
        self.objectPath = objectPath
        self.listenerPort = listenerPort
        self.relayPorts = relayPorts
        self.listenIPv4 = listenIPv4
        self.listenIPv6 = listenIPv6
        self.relayBindIPv4 = relayBindIPv4
        self.relayBindIPv6 = relayBindIPv6
    }

    /// The capacity the route maps should have for `installed` routes, one more about to be added
    /// (`adding`), when it is not `capacity`; nil to keep it. Grows fourfold once the maps would be
    /// more than three quarters full, up to `most`; shrinks fourfold once under a sixteenth full,
    /// down to `least` (so a shrunk map is under a quarter full, far from growing again).
    public static func resizedRouteCapacity(installed: Int, adding: Bool, capacity: UInt32, least: UInt32,
                                            most: UInt32) -> UInt32? {
        let wanted = installed + (adding ? 1 : 0)
        if adding, UInt64(wanted) * 4 > UInt64(capacity) * 3, capacity < most {
            return UInt32(min(UInt64(most), UInt64(capacity) * 4))
        }
        if !adding, UInt64(installed) * 16 < UInt64(capacity), capacity > least {
            return max(least, capacity / 4)
        }
        return nil
    }

    /// Route map entries for `allocations` × `channels` bindings, between 1,024 and 262,144.
    public static func routeEntries(allocations: Int, channels: Int) -> UInt32 {
        let wanted = allocations.multipliedReportingOverflow(by: channels)
        return UInt32(min(max(wanted.overflow ? Int.max : wanted.partialValue, 1024), 262_144))
    }
}

/// Why the fast path is off: the cause, and what to do about it. The relay logs it once and
/// serves everything on the io_uring path.
public struct XDPFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var cause: String
    public var fix: String

    public var description: String { "\(cause). \(fix)" }
}

/// The loaded XDP program and its maps, shared by every worker: one program attached through a
/// BPF link to each interface, one set of maps. Route changes from any worker go to the maps;
/// `close()` (or the end of the process: the links die with their fds) detaches it.
public final class XDPFastPath: ChannelRouteSink, @unchecked Sendable {
    // @unchecked: the C object is only touched under `state`'s lock.
    public let settings: XDPSettings
    public let encoding: XDPRouteEncoding
    /// The interfaces the program is attached to now, in the order of `settings.interfaces`: one
    /// deleted leaves (at the link watch's next check, else at the next resize), one created
    /// again under its name comes back (`checkLinks`).
    public var attached: [XDPInterfaces.Interface] { state.withLock { $0.interfaces } }
    /// Entries each route map holds now (it grows and shrinks with the routes).
    public var routeCapacity: UInt32 { state.withLock { $0.fastPath.map(cx_route_capacity) ?? 0 } }
    /// The running program's kernel id (`bpftool prog show id N`); a resize loads a new one.
    public var programID: UInt32 { state.withLock { $0.fastPath.map(cx_program_id) ?? 0 } }
    /// What each route map starts with, and the most it grows to.
    public let leastRouteCapacity: UInt32
    public let mostRouteCapacity: UInt32

    private struct State: @unchecked Sendable {
        // @unchecked: the C object pointer is only used under the Mutex that holds this state.
        var fastPath: OpaquePointer?
        var interfaces: [XDPInterfaces.Interface]
        /// Interfaces in the settings not attached now, and why, as last reported (`checkLinks`).
        var unattached: [String: String] = [:]
        var installed: Set<ChannelRoute> = []
        var routeMapFull: UInt64 = 0
        var routesNotInstalled: UInt64 = 0
        var routesLeftOnLink: UInt64 = 0
        var routeMapResizes: UInt64 = 0
        var routeMapResizeFailures: UInt64 = 0
        /// The last resize tried, and whether it failed (`XDPSettings.routeResizeInterval`).
        var lastResize: (at: ContinuousClock.Instant, failed: Bool)?
        /// The resize in flight on its own thread, if any (one at a time).
        var resizing: Resizing?
        var lastResizeEvent: RouteMapResize?
        /// Set by `close`: no resize starts, one in flight is abandoned at its commit.
        var closing = false
        /// Tests: run by the resizing thread after the copy, before it takes the lock to replay.
        var afterCopy: (@Sendable () -> Void)?
        /// The new maps of a resize whose program is being swapped onto the links: route changes
        /// are made on them too.
        var dualWrite: SendablePointer?
        /// Told of each resize of the route maps, and of each failed one (with the loader's message).
        var onResize: (@Sendable (RouteMapResize) -> Void)?
        /// Told once: a route installed while the MAC addresses are swapped, whose client or peer
        /// is on an attached link (`onLinkPrefixes`).
        var onLinkWarning: (@Sendable (ChannelRoute) -> Void)?
        var onLinkWarned = false
        /// Told of each check of the links that changed something (`checkLinks`).
        var onLinkChange: (@Sendable (LinkChange) -> Void)?
        var watch: XDPLinkWatch?
    }

    /// With the MAC addresses swapped (no `TR_CONFIG_FIB`): the prefixes on the attached links.
    /// A client or peer inside one is a host on the link, reached through no router; if the
    /// other end of its channel is another host, the swap sends to the wrong one. Empty when the
    /// next hop comes from the FIB.
    let onLinkPrefixes: [CIDR]
    /// `XDPNextHop.auto` swapping: routes that `swapMaySendToTheWrongHost` flags are not installed.
    let leavesOnLinkRoutesOut: Bool

    private let state: Mutex<State>

    /// A resize in flight: what it goes from and to, and the route changes applied to the
    /// running maps since its copy began, replayed onto the new maps before the swap.
    struct Resizing {
        var from: UInt32
        var to: UInt32
        var routes: Int
        var journal: [RouteChange] = []
        /// Recording into `journal` (while the routes are copied); once replayed, changes go to
        /// both maps (`State.dualWrite`) until the swap is done.
        var journaling = true
        /// More changes than `journalLimit` came meanwhile: the resize is abandoned (and counted
        /// as failed) rather than holding them all.
        var overflowed = false
        static let journalLimit = 1 << 18

        mutating func record(_ change: RouteChange) {
            guard journaling else { return }
            if journal.count < Self.journalLimit { journal.append(change) } else { overflowed = true }
        }
    }

    private init(settings: XDPSettings, fastPath: OpaquePointer, encoding: XDPRouteEncoding,
                 attached: [XDPInterfaces.Interface]) {
        self.settings = settings
        self.encoding = encoding
        leastRouteCapacity = cx_route_capacity(fastPath)
        mostRouteCapacity = max(settings.routeEntries, leastRouteCapacity)
        onLinkPrefixes = settings.nextHop.usesFIB(interfaceCount: attached.count) ? [] : attached.flatMap(\.prefixes)
        leavesOnLinkRoutesOut = settings.nextHop.leavesOnLinkChannelsToUserspace(interfaceCount: attached.count)
        state = Mutex(State(fastPath: fastPath, interfaces: attached))
    }

    deinit { close() }

    /// Loads the program, attaches it to every interface in `settings` and writes its
    /// configuration; all or nothing (a failure leaves nothing attached).
    public static func start(_ settings: XDPSettings) -> Result<XDPFastPath, XDPFailure> {
        var interfaces: [XDPInterfaces.Interface] = []
        for name in settings.interfaces {
            switch XDPInterfaces.lookup(name) {
            case .success(let interface): interfaces.append(interface)
            case .failure(let error):
                return .failure(XDPFailure(cause: "\(error)", fix: "Name an existing interface with --xdp-interface."))
            }
        }
        guard !interfaces.isEmpty else {
            return .failure(XDPFailure(cause: "no interface given", fix: "Name one with --xdp-interface."))
        }
        var message = [CChar](repeating: 0, count: 512)
        var fastPath: OpaquePointer?
        var rc = cx_open(settings.objectPath, min(settings.initialRouteEntries, settings.routeEntries),
                         UInt32(interfaces.count), &fastPath, &message, message.count)
        guard rc == 0, let fastPath else {
            return .failure(failure(-rc, message: text(message), settings: settings, interface: nil))
        }
        for interface in interfaces {
            rc = cx_attach(fastPath, interface.index, settings.mode.loaderMode, &message, message.count)
            if rc != 0 {
                cx_close(fastPath)
                return .failure(failure(-rc, message: text(message), settings: settings, interface: interface.name))
            }
        }
        let encoding = wireEncoding(settings, interfaces: interfaces)
        var config = config(settings, interfaces: interfaces)
        rc = cx_set_config(fastPath, &config, &message, message.count)
        if rc != 0 {
            cx_close(fastPath)
            return .failure(failure(-rc, message: text(message), settings: settings, interface: nil))
        }
        let started = XDPFastPath(settings: settings, fastPath: fastPath, encoding: encoding, attached: interfaces)
        if settings.watchLinks {
            switch XDPLinkWatch.start(for: started, recheck: settings.linkRecheckInterval) {
            case .success(let watch): started.state.withLock { $0.watch = watch }
            case .failure(let why): started.linkWatchFailure = why.text
            }
        }
        return .success(started)
    }

    /// Why the links are not watched (`XDPSettings.watchLinks` on, but the rtnetlink socket could
    /// not be opened): the relay then says so, and a deleted interface is dropped at the next
    /// resize only. Set once, at `start`.
    public private(set) var linkWatchFailure: String?

    /// The program's configuration for `interfaces` (the MTU is the smallest of theirs).
    static func config(_ settings: XDPSettings, interfaces: [XDPInterfaces.Interface]) -> tr_config {
        var config = tr_config()
        config.listener_ports.0 = settings.listenerPort.bigEndian
        config.relay_port_min = settings.relayPorts.lowerBound.bigEndian
        config.relay_port_max = settings.relayPorts.upperBound.bigEndian
        config.mtu = UInt16(clamping: interfaces.map(\.mtu).min() ?? 1500).bigEndian
        config.flags = configFlags(settings, interfaceCount: settings.interfaces.count).bigEndian
        return config
    }

    /// `tr_config.flags` (host order): the RFC 5766 channel numbers when asked for, and
    /// `TR_CONFIG_FIB` when the next hop comes from the FIB (`XDPNextHop`): by default when the
    /// program is attached to more than one interface, where a route may leave by another interface
    /// than the packet came in by. The program then takes the next hop from the kernel's FIB and
    /// redirects there; without it it swaps the MAC addresses and sends the packet back out, which
    /// costs less than half as much (BPF/README.md, "Next hop") but is right only where clients
    /// and peers sit behind the same next hop.
    static func configFlags(_ s: XDPSettings, interfaceCount: Int) -> UInt32 {
        (s.rfc5766Channels ? UInt32(TR_CONFIG_RFC5766_CHANNELS) : 0)
            | (s.nextHop.usesFIB(interfaceCount: interfaceCount) ? UInt32(TR_CONFIG_FIB) : 0)
    }

    /// Whether the program may redirect to `interface` (it is in `tr_egress`); nil when unknown.
    public func redirects(to interface: XDPInterfaces.Interface) -> Bool? {
        state.withLock { state in
            guard let fastPath = state.fastPath else { return nil }
            let rc = cx_egress_contains(fastPath, interface.index)
            return rc < 0 ? nil : rc == 1
        }
    }

    /// The relay's addresses on the wire: `wireIPv4`/`wireIPv6` when given, else the bound ones,
    /// a wildcard replaced by the first attached interface's address of that family (IPv6: not
    /// link-local). A family the relay does not serve has none.
    static func wireEncoding(_ s: XDPSettings, interfaces: [XDPInterfaces.Interface]) -> XDPRouteEncoding {
        let all = interfaces.flatMap(\.addresses)
        let v4 = all.lazy.compactMap { if case .v4(let a) = $0 { a } else { nil } }.first
        let v6 = all.lazy.compactMap { if case .v6(let a) = $0, a.high >> 54 != 0x3FA { a } else { nil } }.first
        func wire4(_ a: IPv4Address?) -> IPv4Address? { a == nil ? nil : s.wireIPv4 ?? (a == .any ? v4 : a) }
        func wire6(_ a: IPv6Address?) -> IPv6Address? { a == nil ? nil : s.wireIPv6 ?? (a == .any ? v6 : a) }
        return XDPRouteEncoding(relayIPv4: wire4(s.relayBindIPv4 ?? s.listenIPv4), relayIPv6: wire6(s.relayBindIPv6 ?? s.listenIPv6),
                                listenerIPv4: wire4(s.listenIPv4), listenerIPv6: wire6(s.listenIPv6),
                                listenerPort: s.listenerPort)
    }

    /// The C side's NUL-terminated message.
    static func text(_ message: [CChar]) -> String {
        String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Which of the capabilities the fast path needs this process lacks (CapEff in
    /// /proc/self/status): CAP_BPF and CAP_NET_ADMIN to load and attach (CAP_SYS_ADMIN stands in
    /// for CAP_BPF). The program needs no CAP_PERFMON: it does no pointer arithmetic that the
    /// verifier reserves for it (BPF/README.md).
    public static func missingCapabilities() -> [String] {
        guard let status = try? String(decoding: readAll("/proc/self/status"), as: UTF8.self),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).trimmingPrefix(while: { $0 == "\t" || $0 == " " }), radix: 16)
        else { return [] }
        func has(_ bit: UInt64) -> Bool { mask & (1 << bit) != 0 }
        let sysAdmin = has(21)
        var missing: [String] = []
        if !has(39) && !sysAdmin { missing.append("CAP_BPF") }
        if !has(12) { missing.append("CAP_NET_ADMIN") }
        return missing
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw XDPFailure(cause: path, fix: "") }
        defer { Glibc.close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n <= 0 { break }
            bytes += chunk[..<n]
        }
        return bytes
    }

    static func failure(_ errno: Int32, message: String, settings: XDPSettings, interface: String?) -> XDPFailure {
        let missing = missingCapabilities()
        let privileges = (missing.isEmpty ? "" : "This process lacks \(missing.joined(separator: ", ")). ")
            + "Run as root, or give the process CAP_BPF and CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_BPF CAP_NET_ADMIN), and let a seccomp filter allow bpf (SystemCallFilter=bpf)."
        if message.hasPrefix("open the BPF object") {
            return XDPFailure(cause: "cannot read the XDP program \(settings.objectPath): \(message)",
                              fix: "Build it with scripts/build-bpf (make run does) or point --xdp-object at turn_router.bpf.o.")
        }
        if let interface {
            switch errno {
            case EPERM, EACCES:
                return XDPFailure(cause: "attaching XDP to \(interface) was refused: \(message)", fix: privileges)
            case EBUSY, EEXIST:
                return XDPFailure(cause: "another XDP program is attached to \(interface): \(message)",
                                  fix: "Detach it (ip link set dev \(interface) xdp off) or choose another interface.")
            case EOPNOTSUPP where settings.mode == .native, EINVAL where settings.mode == .native:
                return XDPFailure(cause: "the driver of \(interface) has no native XDP: \(message)",
                                  fix: "Use --xdp-mode generic (slower) or a driver with XDP support.")
            default:
                return XDPFailure(cause: "cannot attach XDP to \(interface): \(message)",
                                  fix: "Check the kernel log (dmesg); the fast path needs Linux 5.18 or later.")
            }
        }
        switch errno {
        case EPERM,
             EACCES where !missing.isEmpty:
            return XDPFailure(cause: "the kernel refused bpf(): \(message)", fix: privileges)
        case EACCES:
            return XDPFailure(cause: "the kernel's verifier refused the XDP program: \(message)",
                              fix: "Run scripts/test-bpf on this kernel for the verifier's log; Linux 5.18 or later is needed.")
        case ENOSYS:
            return XDPFailure(cause: "bpf() is not available: \(message)",
                              fix: "Use a kernel with CONFIG_BPF_SYSCALL, and a seccomp filter that allows bpf.")
        default:
            return XDPFailure(cause: "the kernel did not load the XDP program: \(message)",
                              fix: "Check the kernel version (5.18+: XDP links, bpf_xdp_get_buff_len) and the verifier's message above; run scripts/test-bpf for details.")
        }
    }

    /// "attached on eth0, eth1 (native mode)": the interfaces the program is attached to, and
    /// after a semicolon those of the settings it is not attached to now, with why
    /// ("attached on eth0 (native mode); not on eth1: no network interface named eth1").
    public var status: String {
        let (names, unattached) = state.withLock { state in (state.interfaces.map(\.name), state.unattached) }
        let missing = settings.interfaces.compactMap { name in unattached[name].map { "\(name): \($0)" } }
        return "attached on \(names.isEmpty ? "no interface" : names.joined(separator: ", ")) (\(settings.mode.rawValue) mode)"
            + (missing.isEmpty ? "" : "; not on \(missing.joined(separator: "; "))")
    }

    // MARK: - Links

    /// What a check of the links changed (`checkLinks`).
    public struct LinkChange: Sendable, Equatable {
        /// Interfaces whose link was dropped: deleted (the kernel had released the link), moved to
        /// another network namespace, or renamed. The program no longer runs there.
        public var detached: [String] = []
        /// Interfaces of the settings attached again (created again under their name).
        public var reattached: [String] = []
        /// Interfaces of the settings not attached, with why, when the why is new since the last
        /// check (a deleted interface: "no network interface named ..."; one whose addresses no
        /// longer match the routes; the kernel refusing the attachment).
        public var unattached: [String: String] = [:]
        /// The program's configuration (its MTU, the smallest of the attached interfaces') could
        /// not be written for the interfaces now attached: the loader's message.
        public var configFailure: String?

        public var isEmpty: Bool { detached.isEmpty && reattached.isEmpty && unattached.isEmpty && configFailure == nil }
    }

    /// Called on the link watch's thread after each check of the links that changed something.
    public func onLinkChange(_ handler: @escaping @Sendable (LinkChange) -> Void) {
        state.withLock { $0.onLinkChange = handler }
    }

    /// Checks the program's links against `settings.interfaces`: a link the kernel released (its
    /// interface deleted), or whose interface left this network namespace or its name, is closed
    /// and its interface leaves `attached` and tr_egress; an interface of the settings not
    /// attached is attached again when one of that name exists and the routes fit it (`refusal`:
    /// the relay's addresses on the wire are still the ones the routes were written with).
    /// Runs on the link watch's thread (`XDPLinkWatch`) at each link or address change; nil while
    /// a resize is in flight (its swap walks the links): the watch checks again after it.
    @discardableResult
    func checkLinks() -> LinkChange? {
        let (change, handler) = state.withLock { state -> (LinkChange?, (@Sendable (LinkChange) -> Void)?) in
            guard let fastPath = state.fastPath, !state.closing else { return (LinkChange(), nil) }
            guard state.resizing == nil else { return (nil, nil) }
            var change = LinkChange()
            var i: Int32 = 0
            while i < cx_attached_count(fastPath) {
                let index = cx_attached_ifindex(fastPath, i)
                let name = state.interfaces.first { $0.index == index }?.name
                let now = cx_link_ifindex_now(fastPath, i)
                // Kept while the kernel still holds the link on that interface and the interface
                // carries its name in this namespace: a device moved to another namespace keeps
                // its link (and its ifindex number), a renamed one no longer answers to the name
                // the relay was given; closing the link takes the program off either.
                if now < 0 || (now == index && name != nil && XDPInterfaces.name(of: index) == name) {
                    i += 1
                    continue
                }
                _ = cx_drop_link(fastPath, i)
                change.detached.append(name ?? "ifindex \(index)")
                state.interfaces.removeAll { $0.index == index }
            }
            for name in settings.interfaces where !state.interfaces.contains(where: { $0.name == name }) {
                let reason: String
                switch XDPInterfaces.lookup(name) {
                case .failure(let error):
                    reason = "\(error)"
                case .success(let found):
                    if let refusal = Self.refusal(toAttach: found, beside: state.interfaces, settings: settings, encoding: encoding) {
                        reason = refusal
                    } else if let failure = attach(fastPath, found) {
                        reason = failure
                    } else {
                        state.interfaces = settings.ordered(state.interfaces + [found])
                        state.unattached[name] = nil
                        change.reattached.append(name)
                        continue
                    }
                }
                if state.unattached[name] != reason {
                    state.unattached[name] = reason
                    change.unattached[name] = reason
                }
            }
            if !change.reattached.isEmpty || !change.detached.isEmpty, !state.interfaces.isEmpty {
                var config = Self.config(settings, interfaces: state.interfaces)
                var message = [CChar](repeating: 0, count: 512)
                if cx_set_config(fastPath, &config, &message, message.count) != 0 { change.configFailure = Self.text(message) }
            }
            return (change, change.isEmpty ? nil : state.onLinkChange)
        }
        if let change { handler?(change) }
        return change
    }

    /// Why `interface` (of the settings, found again) may not run the program beside `others`,
    /// nil when it may: the routes in the maps carry the relay's addresses on the wire as derived
    /// at start (`wireEncoding`, here `encoding`); with a wildcard bind they come from the
    /// interfaces' own addresses, and an interface created again without them (yet), or with
    /// others, would derive other ones. (With the MAC addresses swapped, the on-link prefixes that
    /// choose which routes are left out stay those of the start, as for an address added later
    /// to an interface that never went.)
    static func refusal(toAttach interface: XDPInterfaces.Interface, beside others: [XDPInterfaces.Interface],
                        settings: XDPSettings, encoding: XDPRouteEncoding) -> String? {
        let wire = wireEncoding(settings, interfaces: settings.ordered(others + [interface]))
        guard wire != encoding else { return nil }
        func text(_ e: XDPRouteEncoding) -> String {
            let addresses = [e.relayIPv4?.description, e.relayIPv6?.description, e.listenerIPv4?.description, e.listenerIPv6?.description]
            let unique = addresses.compactMap { $0 }.reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            return unique.isEmpty ? "none" : unique.joined(separator: ", ")
        }
        return "the relay's addresses on the wire would be \(text(wire)), not \(text(encoding)) as the routes were written with (a wildcard bind takes them from the interfaces); attached once they are, else at a restart"
    }

    /// Attaches the program to `interface` (under the state's lock, no resize in flight); the
    /// loader's message when the kernel refuses.
    private func attach(_ fastPath: OpaquePointer, _ interface: XDPInterfaces.Interface) -> String? {
        var message = [CChar](repeating: 0, count: 512)
        let rc = cx_attach(fastPath, interface.index, settings.mode.loaderMode, &message, message.count)
        return rc == 0 ? nil : Self.text(message)
    }

    // MARK: - Routes

    /// A change of the route maps' size: from, to, and the loader's message when it failed (the
    /// maps then stay as they were). `detached`: attached interfaces found deleted while the
    /// program was swapped (the kernel had released their links); the program no longer counts
    /// them as attached.
    public struct RouteMapResize: Sendable, Equatable {
        public var from: UInt32
        public var to: UInt32
        public var routes: Int
        public var failure: String?
        public var detached: [String] = []
        /// How long the resize took (load, copy, swap), failed or not; route changes went on
        /// meanwhile on the running program's maps.
        public var duration: Duration = .zero
        /// How long of it route changes waited: replaying those made meanwhile onto the new maps,
        /// and adopting them (the program is swapped on the links without holding them up).
        public var blocking: Duration = .zero
        /// `duration` in whole milliseconds, rounded up (for the log).
        public var durationMilliseconds: Int64 {
            let c = duration.components
            return c.seconds * 1000 + (c.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        }

        /// Equal when the sizes, routes, failure and detached interfaces are (not the duration).
        public static func == (a: Self, b: Self) -> Bool {
            a.from == b.from && a.to == b.to && a.routes == b.routes && a.failure == b.failure && a.detached == b.detached
        }
    }

    /// Applies a route change to the maps. A route that finds them full while they grow (a burst
    /// of channel bindings outran the resize's load and copy) waits for the growth and goes in
    /// then, rather than staying on the io_uring path for good; only then does a worker wait.
    public func apply(_ change: RouteChange) {
        while true {
            let (warning, resize, waitForGrowth) = applyOnce(change)
            if let warning, case .up(let route) = change { warning(route) }
            resize?()
            guard waitForGrowth else { return }
            settle()
        }
    }

    private func applyOnce(_ change: RouteChange) -> ((@Sendable (ChannelRoute) -> Void)?, (@Sendable () -> Void)?, Bool) {
        state.withLock { state in
            guard let fastPath = state.fastPath else { return (nil, nil, false) }
            var resized: (@Sendable () -> Void)?
            switch change {
            case .up(let route):
                guard case .success(var e) = encoding.entries(for: route) else {
                    state.routesNotInstalled &+= 1
                    return (nil, nil, false)
                }
                let onLink = Self.swapMaySendToTheWrongHost(route, onLink: onLinkPrefixes)
                if onLink && leavesOnLinkRoutesOut {
                    state.routesLeftOnLink &+= 1
                    guard !state.onLinkWarned else { return (nil, nil, false) }
                    state.onLinkWarned = true
                    return (state.onLinkWarning, nil, false)
                }
                if !state.installed.contains(route) { resized = resizeIfDue(&state, fastPath, adding: true) }
                switch install(&state, fastPath, route, &e) {
                case .installed:
                    state.resizing?.record(change)
                    if !state.onLinkWarned && onLink {
                        state.onLinkWarned = true
                        return (state.onLinkWarning, resized, false)
                    }
                case .full:
                    if let growing = state.resizing, growing.to > cx_route_capacity(fastPath) { return (nil, resized, true) }
                    state.routeMapFull &+= 1
                case .failed: state.routesNotInstalled &+= 1
                }
            case .down(let route):
                guard state.installed.remove(route) != nil, case .success(var e) = encoding.entries(for: route) else { return (nil, nil, false) }
                _ = cx_route_delete(fastPath, &e.clientKey, &e.peerKey)
                if let resize = state.dualWrite { _ = cx_resize_route_delete(resize.pointer, &e.clientKey, &e.peerKey) }
                state.resizing?.record(change)
                resized = resizeIfDue(&state, fastPath, adding: false)
            }
            return (nil, resized, false)
        }
    }

    enum Installed { case installed, full, failed }

    /// Puts `route` in the running maps, and in a resize's new maps while its program is being
    /// swapped onto the links (under the lock).
    private func install(_ state: inout State, _ fastPath: OpaquePointer, _ route: ChannelRoute,
                         _ e: inout XDPRouteEntries) -> Installed {
        let rc = cx_route_add(fastPath, &e.clientKey, &e.clientValue, &e.peerKey, &e.peerValue)
        guard rc == 0 else { return rc == CX_ROUTE_MAP_FULL ? .full : .failed }
        if let resize = state.dualWrite,
           cx_resize_route_add(resize.pointer, &e.clientKey, &e.clientValue, &e.peerKey, &e.peerValue) != 0 {
            // Not in the maps about to replace these (a shrink the routes outgrew): out of both.
            _ = cx_route_delete(fastPath, &e.clientKey, &e.peerKey)
            state.installed.remove(route)
            return .full
        }
        state.installed.insert(route)
        return .installed
    }

    /// Starts growing or shrinking the route maps when `resizedRouteCapacity` says so (under the
    /// lock), unless one is in flight. Returns what to call once the lock is released: the
    /// notification of a resize that could not start.
    private func resizeIfDue(_ state: inout State, _ fastPath: OpaquePointer, adding: Bool) -> (@Sendable () -> Void)? {
        guard state.resizing == nil, !state.closing else { return nil }
        let capacity = cx_route_capacity(fastPath)
        guard let wanted = XDPSettings.resizedRouteCapacity(installed: state.installed.count, adding: adding, capacity: capacity,
                                                     least: leastRouteCapacity, most: mostRouteCapacity) else { return nil }
        let now = ContinuousClock.now
        if let last = state.lastResize, now - last.at < settings.routeResizeInterval, !adding || last.failed { return nil }
        return startResize(&state, fastPath, to: wanted, at: now)
    }

    /// Starts a resize to `entries` on a thread of its own (under the lock): loading the program
    /// and copying the routes take long (a fifth of a second for 49,152 routes), and route
    /// changes, which workers apply in their loops, go on meanwhile on the running maps (see
    /// `runResize`).
    private func startResize(_ state: inout State, _ fastPath: OpaquePointer, to entries: UInt32,
                             at now: ContinuousClock.Instant) -> (@Sendable () -> Void)? {
        let capacity = cx_route_capacity(fastPath)
        state.lastResize = (now, false)
        state.resizing = Resizing(from: capacity, to: entries, routes: state.installed.count)
        let handle = SendablePointer(fastPath)
        do {
            let thread = try spawnThread { [self] in self.runResize(handle.pointer) }
            pthread_detach(thread)
            return nil
        } catch {
            state.resizing = nil
            state.lastResize = (now, true)
            state.routeMapResizeFailures &+= 1
            let event = RouteMapResize(from: capacity, to: entries, routes: state.installed.count,
                                       failure: "start the resizing thread: \(error)")
            state.lastResizeEvent = event
            guard let handler = state.onResize else { return nil }
            return { handler(event) }
        }
    }

    /// The resizing thread: load and copy without the lock; replay the route changes made
    /// meanwhile with it; swap the program on the links without it (route changes made on both
    /// maps meanwhile); adopt the new maps with it; then free the old object, notify, and let the
    /// next resize start.
    private func runResize(_ fastPath: OpaquePointer) {
        let clock = ContinuousClock()
        let started = clock.now
        var blocking = Duration.zero
        let (entries, hook) = state.withLock { ($0.resizing?.to ?? 0, $0.afterCopy) }
        var message = [CChar](repeating: 0, count: 512)
        var prepared: OpaquePointer?
        var failure: String?
        if cx_resize_prepare(fastPath, entries, &prepared, &message, message.count) != 0 { failure = Self.text(message) }
        hook?()
        let linked = state.withLock { state -> [Int32] in
            let locked = clock.now
            defer { blocking += clock.now - locked }
            state.resizing?.journaling = false
            guard let prepared, failure == nil else { return [] }
            if state.closing || state.fastPath == nil {
                failure = "the fast path was closed meanwhile"
            } else if state.resizing?.overflowed == true {
                failure = "more than \(Resizing.journalLimit) route changes while the routes were copied"
            } else if let replayFailure = replay(state.resizing?.journal ?? [], onto: prepared) {
                failure = replayFailure
            } else {
                state.dualWrite = SendablePointer(prepared)
            }
            state.resizing?.journal = []
            return (0..<cx_attached_count(fastPath)).map { cx_attached_ifindex(fastPath, $0) }
        }
        if failure == nil, let prepared, cx_resize_swap_links(fastPath, prepared, &message, message.count) != 0 {
            failure = Self.text(message)
        }
        let (event, handler) = state.withLock { state -> (RouteMapResize, (@Sendable (RouteMapResize) -> Void)?) in
            let locked = clock.now
            defer { blocking += clock.now - locked }
            state.dualWrite = nil
            let resizing = state.resizing ?? Resizing(from: 0, to: entries, routes: 0)
            var event = RouteMapResize(from: resizing.from, to: resizing.to, routes: resizing.routes)
            if let failure {
                state.lastResize = (state.lastResize?.at ?? .now, true)
                state.routeMapResizeFailures &+= 1
                event.failure = failure
            } else if let prepared {
                cx_resize_adopt(fastPath, prepared)
                state.routeMapResizes &+= 1
                let still = Set((0..<cx_attached_count(fastPath)).map { cx_attached_ifindex(fastPath, $0) })
                event.detached = linked.filter { !still.contains($0) }.map { index in
                    state.interfaces.first { $0.index == index }?.name ?? "ifindex \(index)"
                }
                for name in event.detached where state.unattached[name] == nil { state.unattached[name] = "deleted while the relay ran" }
                state.interfaces.removeAll { !still.contains($0.index) }
            }
            return (event, state.onResize)
        }
        cx_resize_finish(prepared) // the old object after a swap, else the new one
        var finished = event
        finished.duration = clock.now - started
        finished.blocking = blocking
        handler?(finished)
        let chained = state.withLock { state -> (@Sendable () -> Void)? in
            state.lastResizeEvent = finished
            state.resizing = nil
            // The routes went on changing meanwhile: the next resize may be due already (the maps
            // only grew fourfold, or more routes went down than the shrink counted on).
            guard finished.failure == nil, let current = state.fastPath else { return nil }
            let grow = resizeIfDue(&state, current, adding: true)
            return state.resizing == nil && grow == nil ? resizeIfDue(&state, current, adding: false) : grow
        }
        chained?()
    }

    /// Replays route changes made during a resize's copy onto its new maps (with the lock held);
    /// the failure, if one did not go in (more routes than the new size holds, when shrinking).
    private func replay(_ journal: [RouteChange], onto prepared: OpaquePointer) -> String? {
        for change in journal {
            switch change {
            case .up(let route):
                guard case .success(var e) = encoding.entries(for: route) else { continue }
                let rc = cx_resize_route_add(prepared, &e.clientKey, &e.clientValue, &e.peerKey, &e.peerValue)
                if rc == CX_ROUTE_MAP_FULL {
                    return "the routes added while they were copied do not fit in \(cx_resize_capacity(prepared)) entries"
                }
                if rc != 0 { return "a route added while the routes were copied: \(String(cString: strerror(-rc)))" }
            case .down(let route):
                guard case .success(var e) = encoding.entries(for: route) else { continue }
                let rc = cx_resize_route_delete(prepared, &e.clientKey, &e.peerKey)
                if rc != 0 { return "a route removed while the routes were copied: \(String(cString: strerror(-rc)))" }
            }
        }
        return nil
    }

    /// Returns once no resize of the route maps is in flight.
    public func settle() {
        while state.withLock({ $0.resizing != nil }) { usleep(1000) }
    }

    /// Resizes the route maps to `entries` now, whatever the policy says (tests: a size the
    /// kernel refuses), and waits for it; nil when one was in flight or the fast path is closed.
    func resizeRoutes(to entries: UInt32) -> RouteMapResize? {
        settle()
        let notify = state.withLock { state -> (started: Bool, (@Sendable () -> Void)?) in
            guard let fastPath = state.fastPath, state.resizing == nil, !state.closing else { return (false, nil) }
            state.lastResizeEvent = nil
            return (true, startResize(&state, fastPath, to: entries, at: .now))
        }
        guard notify.started else { return nil }
        notify.1?()
        settle()
        return state.withLock { $0.lastResizeEvent }
    }

    /// Tests: `body` runs on the resizing thread after the copy, before the replay and the swap.
    func afterResizeCopies(_ body: (@Sendable () -> Void)?) {
        state.withLock { $0.afterCopy = body }
    }

    /// Called after each resize of the route maps (and each failed one), on the thread that
    /// applied the route change.
    public func onRouteMapResize(_ handler: @escaping @Sendable (RouteMapResize) -> Void) {
        state.withLock { $0.onResize = handler }
    }

    /// Whether a channel's client or peer is a host on an attached link (inside `onLink`), and
    /// the other end has another address: swapping the MAC addresses then sends each one's
    /// datagrams to the MAC address they came from, which is right only if both addresses live
    /// on one host (or behind one router). The loader cannot tell which; it says so once.
    static func swapMaySendToTheWrongHost(_ route: ChannelRoute, onLink: [CIDR]) -> Bool {
        guard !onLink.isEmpty, route.client.ip != route.peer.ip else { return false }
        return onLink.contains { $0.contains(route.client.ip) || $0.contains(route.peer.ip) }
    }

    /// Called once, on the thread that applies the route, for the first route whose client or
    /// peer is on an attached link while the MAC addresses are swapped (see
    /// `swapMaySendToTheWrongHost`): installed with `XDPNextHop.swap`, left out with `.auto`.
    public func warnOnce(whenSwappingOnLink handler: @escaping @Sendable (ChannelRoute) -> Void) {
        state.withLock { $0.onLinkWarning = handler }
    }

    /// The two map entries installed for `route`, as their bytes (tests, diagnostics): the
    /// client → peer value and the peer → client value, nil where the map has none.
    public func installedValues(for route: ChannelRoute) -> (client: [UInt8]?, peer: [UInt8]?) {
        guard case .success(var e) = encoding.entries(for: route) else { return (nil, nil) }
        return state.withLock { state in
            guard let fastPath = state.fastPath else { return (nil, nil) }
            var cv = tr_client_value(), pv = tr_peer_value()
            let c = cx_lookup_client(fastPath, &e.clientKey, &cv) == 0 ? Self.bytes(of: cv) : nil
            let p = cx_lookup_peer(fastPath, &e.peerKey, &pv) == 0 ? Self.bytes(of: pv) : nil
            return (c, p)
        }
    }

    static func bytes<T>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    // MARK: - Counters and life

    /// The program's counters summed over the CPUs, and the loader's.
    public var counters: XDPCounters {
        state.withLock { state in
            var c = XDPCounters()
            c.routeMapFull = state.routeMapFull
            c.routesNotInstalled = state.routesNotInstalled
            c.routesLeftOnLink = state.routesLeftOnLink
            c.routeMapResizes = state.routeMapResizes
            c.routeMapResizeFailures = state.routeMapResizeFailures
            c.routesInstalled = state.installed.count
            c.interfacesConfigured = settings.interfaces.count
            guard let fastPath = state.fastPath else { return c }
            c.routeCapacity = Int(cx_route_capacity(fastPath))
            c.interfacesAttached = Int(cx_attached_count(fastPath))
            _ = c.program.withUnsafeMutableBufferPointer { cx_read_counters(fastPath, $0.baseAddress!) }
            return c
        }
    }

    /// Detaches from every interface and frees the maps. Route changes after this are ignored.
    public func close() {
        let watch = state.withLock { state in
            state.closing = true
            defer { state.watch = nil }
            return state.watch
        }
        watch?.stop()
        settle() // the resizing thread uses the loader until it is done
        state.withLock { state in
            cx_close(state.fastPath)
            state.fastPath = nil
            state.installed.removeAll()
        }
    }
}

/// A loader pointer handed to the resizing thread or kept in the state (used only while
/// `XDPFastPath.close` waits for the resize, or under the state's lock).
fileprivate struct SendablePointer: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}
