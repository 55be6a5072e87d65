import ArgumentParser
import Glibc
import Logging
import RelayCore
import RelayIO
import STUN

/// `turn-relay [serve]`: run the relay until SIGTERM/SIGINT, then drain and exit 0.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the relay (the default command)."
    )

    @Option(help: "UDP port for STUN/TURN (default 3478). [env: LISTEN_PORT, as Firezone's]")
    var listenPort: UInt16?

    @Option(help: "IPv4 address to listen and relay on, or 'none' (default 0.0.0.0). [env: BIND_IP4, or Firezone's BIND_IP4_ADDR]")
    var bindIp4: String?

    @Option(help: "IPv6 address to listen and relay on, or 'none' (default ::). [env: BIND_IP6, or Firezone's BIND_IP6_ADDR]")
    var bindIp6: String?

    @Option(help: "IPv4 address advertised to clients as their relayed address (default: the bind address if specific, else 127.0.0.1; with a portal token, else IPv4 is not served). [env: PUBLIC_IP4, or Firezone's PUBLIC_IP4_ADDR]")
    var publicIp4: String?

    @Option(help: "IPv6 address advertised to clients (default: the bind address if specific, else ::1; with a portal token, else IPv6 is not served). [env: PUBLIC_IP6, or Firezone's PUBLIC_IP6_ADDR]")
    var publicIp6: String?

    @Option(help: "Lowest relay port (default 49152). [env: MIN_PORT, or Firezone's LOWEST_PORT]")
    var minPort: UInt16?

    @Option(help: "Highest relay port (default 65535). [env: MAX_PORT, or Firezone's HIGHEST_PORT]")
    var maxPort: UInt16?

    @Option(help: "Worker threads, each with its own ring and sockets (default: number of cores). [env: WORKERS, or Firezone's NUM_WORKER_THREADS]")
    var workers: Int?

    @Option(help: "Authentication realm (default turn-relay; firezone with a portal token). [env: REALM]")
    var realm: String?

    @Option(help: "Shared secret for TURN REST API credentials; repeat to rotate. [env: AUTH_SECRET, comma-separated]")
    var authSecret: [String] = []

    @Option(help: "A static user as name:password; repeatable. [env: USERS, comma-separated]")
    var user: [String] = []

    @Option(help: "Secret for Firezone-style credentials. [env: FIREZONE_SECRET]")
    var firezoneSecret: String?

    @Option(help: "Allocation lifetime when the client asks for none, in seconds (default 600). [env: DEFAULT_LIFETIME]")
    var defaultLifetime: UInt32?

    @Option(help: "Longest allocation lifetime granted, in seconds (default 3600). [env: MAX_LIFETIME]")
    var maxLifetime: UInt32?

    @Option(help: "Permission lifetime in seconds, 1-3600 (default 300, RFC 8656 §9: \"MUST be 300 seconds\"; any other value is non-standard, for tests or special deployments only). [env: PERMISSION_LIFETIME]")
    var permissionLifetime: UInt64?

    @Option(help: "Channel binding lifetime in seconds, 1-3600 (default 600, RFC 8656 §12: 10 minutes; any other value is non-standard, for tests or special deployments only). An expired channel stays reserved for half its lifetime, at most the RFC's 5 minutes. [env: CHANNEL_LIFETIME]")
    var channelLifetime: UInt64?

    @Option(help: "Most allocations of the whole process, all workers together; beyond it Allocate gets 508 (default 10000). [env: MAX_ALLOCATIONS]")
    var maxAllocations: Int?

    @Option(help: "Most allocations per username in the whole process, all workers together; beyond it Allocate gets 486 (default: no per-user limit below --max-allocations). Also bounds the user's EVEN-PORT reservations (default 10). [env: MAX_ALLOCATIONS_PER_USER]")
    var maxAllocationsPerUser: Int?

    @Option(help: "Most permissions per allocation (default 128). [env: MAX_PERMISSIONS]")
    var maxPermissions: Int?

    @Option(help: "Most channels per allocation (default 128). [env: MAX_CHANNELS]")
    var maxChannels: Int?

    @Option(help: "Unauthenticated error responses (401, 438) per second per source (an IPv4 address or an IPv6 /64), per worker, sustained (default 10, as coturn). The limit keeps spoofed requests from turning the relay into a reflector. [env: CHALLENGE_RATE_PER_SOURCE]")
    var challengeRatePerSource: Int?

    @Option(help: "401/438 responses a quiet source may receive at once before --challenge-rate-per-source applies, per worker (default 1000: an office of 1,000 clients behind one NAT address joining together; the budget refills at the rate). [env: CHALLENGE_BURST_PER_SOURCE]")
    var challengeBurstPerSource: Int?

    @Option(help: "Peer CIDR to allow even when denied by default (e.g. 127.0.0.0/8 for local tests); repeatable. [env: ALLOW_PEER, comma-separated]")
    var allowPeer: [String] = []

    @Option(help: "Peer CIDR to refuse (403) in addition to the built-in list; repeatable. [env: DENY_PEER, comma-separated]")
    var denyPeer: [String] = []

    @Option(help: "trace, debug, info, notice, warning, error or critical (default info). [env: LOG_LEVEL]")
    var logLevel: String?

    @Option(help: "human or json (default human). [env: LOG_FORMAT, as Firezone's]")
    var logFormat: String?

    @Option(help: "Seconds to keep relaying existing allocations after SIGTERM/SIGINT (default 30). [env: DRAIN_SECONDS]")
    var drainSeconds: UInt32?

    @Option(help: "Provided receive buffers per worker, a power of two (default 4096; each reserves ~73 KiB of address space, touched only as far as datagrams fill it: about 4 KiB resident per buffer with small datagrams). [env: RECEIVE_BUFFERS]")
    var receiveBuffers: Int?

    @Option(help: "Address of /healthz and /readyz as ip:port, or 'none' (default 127.0.0.1:8080). [env: HEALTH_CHECK_ADDR, as Firezone's]")
    var healthCheckAddr: String?

    @Option(help: "Address of the Prometheus /metrics endpoint, or 'none'; the health address shares one listener (default 127.0.0.1:9464). [env: METRICS_ADDR]")
    var metricsAddr: String?

    @Option(help: "File of secrets, users and peer rules, re-read on SIGHUP (see README). [env: CREDENTIALS_FILE]")
    var credentialsFile: String?

    @Option(help: "OTLP/gRPC collector host:port; metrics are exported there when set. [env: OTLP_GRPC_ENDPOINT, as Firezone's]")
    var otlpGrpcEndpoint: String?

    @Option(help: "service.instance.id resource attribute for OTLP export. [env: SERVICE_INSTANCE_ID]")
    var serviceInstanceId: String?

    @Option(help: "auto, io-uring or batched-syscalls (default auto: io_uring, else epoll with recvmmsg/sendmmsg, saying why). [env: IO_BACKEND]")
    var ioBackend: String?

    @Option(help: "Portal token (surrounding whitespace is ignored); when set the relay connects to the portal and waits for its init before relaying. [env: FIREZONE_TOKEN, as Firezone's]")
    var token: String?

    @Option(help: "Portal URL (ws://, wss://, http:// or https://); the relay connects to <url>/relay/websocket. [env: FIREZONE_API_URL, as Firezone's]")
    var apiUrl: String?

    @Option(help: "Name sent to the portal (default: the host name). [env: FIREZONE_NAME, as Firezone's]")
    var name: String?

    @Option(help: .hidden)
    var portalHeartbeatMs: Int?

    @Option(help: "Accepted for Firezone compatibility and ignored: randomness always comes from the system CSPRNG. [env: RNG_SEED]")
    var rngSeed: String?

    @Option(help: "Firezone's name for --xdp-interface (one interface). [env: EBPF_OFFLOADING]")
    var ebpfOffloading: String?

    @Option(help: "Attach the XDP fast path (ChannelData relayed in the kernel) to this interface; repeatable (default: off). Needs CAP_BPF and CAP_NET_ADMIN; without them the relay warns and serves everything on the io_uring path. [env: XDP_INTERFACE, comma-separated]")
    var xdpInterface: [String] = []

    @Option(help: "native (in the driver) or generic (any device, slower) (default native). [env: XDP_MODE, or Firezone's EBPF_ATTACH_MODE: driver or generic]")
    var xdpMode: String?

    @Option(help: "How the XDP program picks a relayed packet's next hop: fib (the kernel's routes and neighbours; needs IP forwarding on the interface; about twice the program's run time), swap (back to the sender of the received frame: right only where clients and peers are reached through the same next hop, e.g. a cloud host behind its gateway; one interface only) or auto (fib on several interfaces; on one, swap for channels whose client and peer are both off its link, the others left on the io_uring path) (default auto). [env: XDP_NEXT_HOP]")
    var xdpNextHop: String?

    @Option(help: "The XDP interface's IPv4 address on the wire, when it is not --bind-ip4 (default: --bind-ip4 if specific, else the interface's first IPv4 address). [env: XDP_IP4, or Firezone's EBPF_INT4_ADDR]")
    var xdpIp4: String?

    @Option(help: "The XDP interface's IPv6 address on the wire, when it is not --bind-ip6 (default: --bind-ip6 if specific, else the interface's first global IPv6 address). [env: XDP_IP6, or Firezone's EBPF_INT6_ADDR]")
    var xdpIp6: String?

    @Option(help: "The compiled XDP program (default: turn_router.bpf.o beside the executable, else /usr/lib/turn-relay/turn_router.bpf.o). [env: XDP_OBJECT]")
    var xdpObject: String?

    @Option(help: "Seconds without a portal connection after which the relay gives up and exits with status 1 (default 86400). [env: PORTAL_MAX_ELAPSED]")
    var portalMaxElapsed: Int?

    @Flag(help: "Do not batch sends with UDP_SEGMENT (GSO). [env: DISABLE_GSO=1]")
    var disableGso = false

    @Flag(help: "Do not coalesce receives with UDP_GRO. [env: DISABLE_GRO=1]")
    var disableGro = false

    @Option(help: "io_uring on Linux 6.12+: microseconds a worker waits to gather up to 64 completions before it handles what has come (default 0: wake on the first completion). Trades latency for CPU: 1000 roughly halved the CPU per packet at 20k-100k pps and added about 3 ms to the round trip; see BENCHMARKS.md before raising it. [env: BATCH_WAIT_US]")
    var batchWaitUs: Int?

    @Flag(help: "Send all traffic of one client IP address to one worker (one client's allocations then share a worker's caches; spreads worse behind NAT). Quotas and EVEN-PORT reservations are process-wide without it. [env: STEER_BY_CLIENT_IP=1]")
    var steerByClientIp = false

    @Flag(help: "Do not listen for TURN over TCP on the listen port (TCP is on by default, as in coturn). [env: NO_TCP=1]")
    var noTcp = false

    @Flag(help: "Refuse TCP allocations (RFC 6062: REQUESTED-TRANSPORT TCP, Connect, ConnectionBind); such an Allocate gets 442. [env: NO_TCP_RELAY=1]")
    var noTcpRelay = false

    @Option(help: "Most peer data connections of one TCP allocation (RFC 6062): connecting, waiting for ConnectionBind, or bound (default 32). [env: MAX_TCP_CONNECTIONS_PER_ALLOCATION]")
    var maxTcpConnectionsPerAllocation: Int?

    @Option(help: "TCP port for TURN over TLS (turns:), used when --tls-cert and --tls-key are set (default 5349; operators often use 443). [env: TLS_LISTEN_PORT]")
    var tlsListenPort: UInt16?

    @Option(help: "PEM certificate chain for TURN over TLS (leaf first); re-read on SIGHUP. [env: TLS_CERT]")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert; re-read on SIGHUP. [env: TLS_KEY]")
    var tlsKey: String?

    @Option(help: "Most TCP and TLS client connections open at once, all workers together (default 10000). [env: MAX_CONNECTIONS]")
    var maxConnections: Int?

    @Option(help: "Most TCP and TLS client connections open at once from one IP address, all workers together (default 100). [env: MAX_CONNECTIONS_PER_SOURCE]")
    var maxConnectionsPerSource: Int?

    @Option(help: "Most TLS handshakes in progress at once, all workers together (default 512). [env: MAX_TLS_HANDSHAKES]")
    var maxTlsHandshakes: Int?

    @Option(help: "Seconds a TLS handshake may take (default 10). [env: TLS_HANDSHAKE_TIMEOUT]")
    var tlsHandshakeTimeout: UInt64?

    @Option(help: "Seconds a message begun on a TCP/TLS connection may take to arrive whole (slowloris; default 10). [env: STREAM_MESSAGE_TIMEOUT]")
    var streamMessageTimeout: UInt64?

    @Option(help: "Seconds a TCP/TLS connection may stay without any message (default 900). [env: STREAM_IDLE_TIMEOUT]")
    var streamIdleTimeout: UInt64?

    @Option(help: "Bytes waiting to be sent to one TCP/TLS client; messages beyond are dropped and counted, and a client whose buffer stays full 30 s is closed (default 262144). [env: STREAM_WRITE_BUFFER]")
    var streamWriteBuffer: Int?

    @Flag(name: .customLong("rfc5766-channel-numbers"), help: "Accept RFC 5766 channel numbers 0x4000-0x7FFF (RFC 8656 allows only 0x4000-0x4FFF), for older clients such as coturn's turnutils_uclient. [env: RFC5766_CHANNEL_NUMBERS=1]")
    var rfc5766ChannelNumbers = false

    func run() throws {
        let settings = try RelaySettings(self)
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = settings.logFormat == "json"
                ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let logger = Logger(label: "turn-relay")
        let code = RelayProcess(settings: settings, logger: logger).run()
        if code != 0 { throw ExitCode(code) }
    }
}
