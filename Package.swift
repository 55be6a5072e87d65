// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swift-turn-relay",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "turn-relay", targets: ["TurnRelay"]),
        .executable(name: "turn-bench", targets: ["TurnBench"]),
        .library(name: "STUN", targets: ["STUN"]),
        .library(name: "RelayCore", targets: ["RelayCore"]),
        .library(name: "RelayIO", targets: ["RelayIO"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // OTLP/gRPC only (no HTTP exporter, so no AsyncHTTPClient).
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPGRPC"]),
        .package(url: "https://github.com/hummingbird-project/swift-websocket.git", from: "1.6.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // Already there through swift-websocket; named for the portal client's own upgrade channel.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        // C, one target per job (docs/ARCHITECTURE.md, "C layer"). CUDP: the neutral UDP layer both
        // backends and the tools share (slot layout, cu_addr, cu_completion, sockets, steering,
        // eventfd, blocking helpers); plain syscalls.
        .target(name: "CUDP", path: "CShims/CUDP"),
        // The io_uring backend: the only target that includes <liburing.h> and links liburing.
        .target(
            name: "CURing",
            dependencies: ["CUDP"],
            path: "CShims/CURing",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        // Batched syscalls: the relay's second backend (epoll + recvmmsg/sendmmsg) and the plain
        // batch/epoll wrappers the benchmark's load generator drives.
        .target(name: "CBatched", dependencies: ["CUDP"], path: "CShims/CBatched"),
        // The XDP fast path's loader (BPF/turn_router.bpf.c): the only target that links libbpf.
        .target(
            name: "CXDP",
            dependencies: ["CUDP"],
            path: "CShims/CXDP",
            exclude: ["README.md"],
            linkerSettings: [.linkedLibrary("bpf")]
        ),
        // TLS as a sans-IO layer (OpenSSL memory BIOs) for TURN over TLS: the only target that
        // includes OpenSSL's headers and links libssl/libcrypto.
        .target(
            name: "CTLS",
            path: "CShims/CTLS",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        // Wire format: pure, no I/O.
        .target(
            name: "STUN",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // The one conversion between TransportAddress (STUN) and the kernel's socket addresses
        // (cu_addr: sockaddr_in / sockaddr_in6), for the runtime, the HTTP server and the benchmark.
        .target(name: "SocketAddressing", dependencies: ["CUDP", "STUN"]),
        // Sans-IO TURN server: no sockets, no clock, no randomness of its own.
        .target(
            name: "RelayCore",
            dependencies: ["STUN", .product(name: "Crypto", package: "swift-crypto")],
            // The per-packet path reads and writes the server's tables (class stored properties);
            // dynamic exclusivity checks on them were a fifth of its instructions. Static checks stay.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        // Runtime: workers over either backend (io_uring or batched syscalls), buffer pools, sockets.
        .target(
            name: "RelayIO",
            dependencies: [
                "RelayCore", "SocketAddressing", "CUDP", "CURing", "CBatched", "CXDP", "CTLS",
                .product(name: "Logging", package: "swift-log"),
            ],
            // The worker's tables (connections, sockets) are class stored properties touched per
            // completion; their dynamic exclusivity checks (swift_beginAccess) are left out of the
            // release build only: debug builds, and so every test, still check them.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "TurnRelay",
            dependencies: [
                "RelayIO", "RelayCore", "RelayOperations", "RelayOTel", "RelayPortal", "RelayPortalWebSocket",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Bench-only C: a malloc counter for the executable only.
        .target(name: "CMallocCounter", path: "CShims/CMallocCounter"),
        // Operations: metrics aggregation and Prometheus text, health/readiness HTTP, reload delivery.
        .target(
            name: "RelayOperations",
            dependencies: [
                "RelayCore", "RelayIO", "STUN", "SocketAddressing", "RelayPortal",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // OTLP/gRPC metrics export; its own target because swift-otel (gRPC, NIO, protobuf) takes
        // minutes to build and nothing else should wait for it.
        .target(
            name: "RelayOTel",
            dependencies: [
                "RelayOperations",
                .product(name: "OTel", package: "swift-otel"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Portal control plane: sans-IO Phoenix channel state machine (Foundation only).
        .target(name: "RelayPortal"),
        // Portal control plane: the WebSocket transport driving RelayPortal. WSClient is a thin layer
        // over SwiftNIO and NIOSSL, which swift-otel's gRPC transport already brings in.
        .target(
            name: "RelayPortalWebSocket",
            dependencies: [
                "RelayPortal",
                .product(name: "WSClient", package: "swift-websocket"),
                .product(name: "WSCore", package: "swift-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The benchmark's logic (load generator, statistics, result parsing), testable.
        .target(
            name: "TurnBenchKit",
            dependencies: [
                "RelayCore", "RelayIO", "STUN", "TURNRequests", "SocketAddressing", "CUDP", "CBatched",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/TurnBenchKit"
        ),
        .executableTarget(
            name: "TurnBench",
            dependencies: [
                "TurnBenchKit", "CMallocCounter",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/TurnBench"
        ),
        // What several test targets share: a seeded generator, and the `.dedicatedThread` trait.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // The one TURN request builder (method attributes, long-term credentials, FINGERPRINT) that
        // the tests and the benchmark share; STUN only.
        .target(name: "TURNRequests", dependencies: ["STUN"], path: "Tests/TURNRequests"),
        // A small blocking TURN client over real UDP sockets, for the socket and binary tests.
        .target(name: "TURNTestClient", dependencies: ["RelayIO", "STUN", "TURNRequests", "TestSupport", "SocketAddressing", "CUDP"],
                path: "Tests/TURNTestClient"),
        // What the operations, portal and binary tests share: a blocking HTTP client and Prometheus
        // text reader, the in-test Phoenix portal (phoenix_portal.py, run with Python), and a driver
        // of the instrumented core. Its declarations are internal; the tests `@testable import` it.
        .target(
            name: "OperationsTestSupport",
            dependencies: ["TestSupport", "TURNRequests", "RelayOperations", "RelayCore", "STUN"],
            path: "Tests/OperationsTestSupport",
            exclude: ["phoenix_portal.py"]
        ),
        // What the real-client tests share (InteropTests on loopback, XDPTests in network
        // namespaces): child processes, finding coturn's tools and the turn-relay binary, parsing
        // turnutils_uclient's report, a UDP echo peer, and the aioice client script. Internal
        // declarations; the tests `@testable import` it.
        .target(
            name: "InteropTestSupport",
            dependencies: ["TestSupport", "RelayIO", "STUN"],
            path: "Tests/InteropTestSupport",
            exclude: ["aioice_turn_client.py"]
        ),
        .testTarget(name: "TestSupportTests", dependencies: ["TestSupport"]),
        .testTarget(name: "STUNTests", dependencies: ["TestSupport", "STUN"]),
        .testTarget(name: "SocketAddressingTests", dependencies: ["SocketAddressing", "CUDP", "STUN"]),
        .testTarget(name: "RelayCoreTests", dependencies: ["TestSupport", "TURNRequests", "RelayCore", "STUN"]),
        .testTarget(name: "RelayIOTests", dependencies: ["TestSupport", "TURNTestClient", "RelayIO", "RelayCore", "STUN"]),
        .testTarget(
            name: "InteropTests",
            dependencies: ["TestSupport", "InteropTestSupport", "TURNTestClient", "RelayIO", "RelayCore", "STUN"]
        ),
        // End-to-end XDP fast path: the turn-relay binary in one network namespace, real clients
        // and peers in another (scripts/netns-lab), root only.
        .testTarget(
            name: "XDPTests",
            dependencies: [
                "TestSupport", "InteropTestSupport", "OperationsTestSupport", "TURNTestClient", "RelayIO",
                "RelayCore", "STUN",
            ]
        ),
        .testTarget(
            name: "RelayOperationsTests",
            dependencies: [
                "TestSupport", "OperationsTestSupport", "RelayOperations", "RelayCore", "RelayIO", "STUN",
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // The turn-relay executable as a process: reload, portal mode, Firezone drop-in.
        .testTarget(
            name: "TurnRelayTests",
            dependencies: ["TestSupport", "OperationsTestSupport", "RelayOperations", "RelayCore", "RelayIO", "STUN", "TURNTestClient",
                           "CUDP", "SocketAddressing", "TURNRequests"],
            exclude: ["deny_bpf.c", "otlp_faulty_collector.py"]
        ),
        .testTarget(name: "RelayOTelTests", dependencies: ["RelayOTel", "RelayOperations", "OperationsTestSupport"], exclude: ["otlp_receiver.py"]),
        .testTarget(name: "TurnBenchTests", dependencies: ["TurnBenchKit", "TURNRequests", "TestSupport"]),
        .testTarget(name: "RelayPortalTests", dependencies: ["RelayPortal"]),
        .testTarget(
            name: "RelayPortalWebSocketTests",
            dependencies: ["OperationsTestSupport", "RelayPortal", "RelayPortalWebSocket"]
        ),
    ]
)
