// swift-tools-version: 6.1
// The libFuzzer targets (RELIABILITY.md, "Fuzzing"). A package of its own so that the main
// package's `swift build`/`swift test` never see a fuzzer: `scripts/fuzz` builds it with
// `--scratch-path .build-fuzz` (top level). Sources/STUN, Sources/RelayCore and Tests/TURNRequests
// are the main package's own directories (symlinks), compiled here with libFuzzer's coverage
// instrumentation and AddressSanitizer; swift-crypto is built as usual (not instrumented).
import PackageDescription

let instrumented: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-enable-testing"])]
let fuzzTargets = [
    "stun-parse-roundtrip", "stun-integrity", "channeldata-framing", "peer-policy", "server-batches", "server-deep",
]

let package = Package(
    name: "swift-turn-relay-fuzz",
    platforms: [.macOS(.v14)],
    products: fuzzTargets.map { .executable(name: "fuzz-\($0)", targets: ["fuzz-\($0)"]) },
    dependencies: [
        // The version the main package resolves (Package.resolved); STUN and RelayCore need Crypto.
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "3.12.3"),
    ],
    targets: [
        .target(name: "STUN", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/STUN", swiftSettings: instrumented),
        .target(name: "RelayCore", dependencies: ["STUN", .product(name: "Crypto", package: "swift-crypto")],
                path: "Sources/RelayCore",
                swiftSettings: [.unsafeFlags(["-sanitize=fuzzer,address", "-enable-testing", "-enforce-exclusivity=unchecked"])]),
        .target(name: "TURNRequests", dependencies: ["STUN"], path: "Sources/TURNRequests", swiftSettings: instrumented),
        // What the targets share: a seeded generator, a byte reader over the fuzzer's input, the
        // server harness (clock, buffers, invariants).
        .target(name: "FuzzSupport", dependencies: ["STUN", "RelayCore", "TURNRequests"], path: "Support",
                swiftSettings: instrumented + [.swiftLanguageMode(.v5)]),
    ] + fuzzTargets.map { name in
        .executableTarget(
            name: "fuzz-\(name)",
            dependencies: ["FuzzSupport", "STUN", "RelayCore", "TURNRequests", .product(name: "Crypto", package: "swift-crypto")],
            path: "Targets/\(name)",
            swiftSettings: instrumented + [.unsafeFlags(["-parse-as-library"]), .swiftLanguageMode(.v5)],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]
        )
    }
)
