import Glibc
@testable import RelayIO
import RelayCore
import STUN
import Synchronization
import Testing
import TestSupport

@Suite(.dedicatedThread) struct RelayRuntimeTests {
    @Test func portRangeIsSplitIntoDisjointSlicesCoveringIt() {
        #expect(RelayRuntime.partition(49152...65535, into: 2) == [49152...57343, 57344...65535])
        #expect(RelayRuntime.partition(10...16, into: 3) == [10...12, 13...14, 15...16])
        #expect(RelayRuntime.partition(5...5, into: 1) == [5...5])
        #expect(RelayRuntime.partition(5...6, into: 3) == [])
        #expect(RelayRuntime.partition(0...65535, into: 4).map(\.count) == [16384, 16384, 16384, 16384])
    }

    @Test func tooSmallPortRangeIsAConfigurationError() {
        #expect(throws: RelayIOError.self) {
            try RelayRuntime.start(workers: 3, configuration: WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: 0),
                                   portRange: 5...6) { _, _ in EchoProcessor(events: EventLog()) }
        }
    }

    @Test(arguments: IOBackendKind.allCases) func workersShareTheTURNPortThroughReusePort(backend: IOBackendKind) throws {
        let port = try ListenPortClaims.freePort()
        let runtime = try RelayRuntime.start(
            workers: 2, configuration: { var c = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: port)
                c.ioBackend = backend
                return c
            }(),
            portRange: 50000...50009
        ) { _, _ in EchoProcessor(events: EventLog()) }
        #expect(runtime.workers.map(\.listenerAddresses) == [[TransportAddress(ip: .v4(.loopback), port: port)],
                                                              [TransportAddress(ip: .v4(.loopback), port: port)]])
        let client = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(.loopback), port: 0))
        client.send([9, 9], to: TransportAddress(ip: .v4(.loopback), port: port))
        #expect(client.receive()?.bytes == [9, 9])
        runtime.stop()
        #expect(runtime.join().reduce(0) { $0 + $1.datagramsSent } == 1)
    }

    @Test(arguments: IOBackendKind.allCases) func steeringByClientAddressSendsEverySocketOfAHostToOneWorker(backend: IOBackendKind) throws {
        let port = try ListenPortClaims.freePort()
        var configuration = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: port)
        configuration.ioBackend = backend
        configuration.steerByClientAddress = true
        configuration.receiveBuffers = 16
        configuration.ringEntries = 64
        let runtime = try RelayRuntime.start(workers: 2, configuration: configuration, portRange: 50000...50009) { _, _ in
            EchoProcessor(events: EventLog())
        }
        let server = TransportAddress(ip: .v4(.loopback), port: port)
        // Twelve client sockets (twelve source ports) on 127.0.0.1 and four on 127.0.0.2.
        for (host, count) in [(IPv4Address.loopback, 12), (IPv4Address(127, 0, 0, 2), 4)] {
            for i in 0..<count {
                let client = try BlockingUDPSocket(bindTo: TransportAddress(ip: .v4(host), port: 0))
                client.send([UInt8(i)], to: server)
                #expect(client.receive()?.bytes == [UInt8(i)])
            }
        }
        runtime.stop()
        // 0x7F000001 % 2 = 1 and 0x7F000002 % 2 = 0: each host lands on exactly one worker.
        #expect(runtime.join().map(\.datagramsReceived) == [4, 12])
    }

    @Test func backendChoiceResolvesAgainstTheProbe() {
        let why = "io_uring is unavailable: io_uring_setup was refused with EPERM"
        let refused: () -> IOUringProbe.Outcome = { .unavailable(why) }
        #expect(IOBackendChoice.auto.resolve(probe: refused) == .use(.batchedSyscalls, fallbackReason: why))
        #expect(IOBackendChoice.ioUring.resolve(probe: refused) == .refused(why))
        #expect(IOBackendChoice.auto.resolve(probe: { .available }) == .use(.ioUring, fallbackReason: nil))
        #expect(IOBackendChoice.ioUring.resolve(probe: { .available }) == .use(.ioUring, fallbackReason: nil))
        var probed = false
        #expect(IOBackendChoice.batchedSyscalls.resolve(probe: { probed = true; return .available })
                == .use(.batchedSyscalls, fallbackReason: nil))
        #expect(!probed)
    }

    @Test func probeMessagesNameCauseAndFix() {
        let sysctl = IOUringProbe.explain(errno: EPERM, stage: 1, opcode: -1, disabledSetting: 2)
        #expect(sysctl.contains("kernel.io_uring_disabled=2") && sysctl.contains("sysctl -w kernel.io_uring_disabled=0"))
        let seccomp = IOUringProbe.explain(errno: EPERM, stage: 1, opcode: -1, disabledSetting: 0)
        #expect(seccomp.contains("seccomp") && seccomp.contains("io_uring_setup"))
        let old = IOUringProbe.explain(errno: EINVAL, stage: 4, opcode: -1, disabledSetting: nil)
        #expect(old.contains("multishot recvmsg") && old.contains("Linux ≥ 6.0"))
    }
}

/// Every worker's listener joins the SO_REUSEPORT group before any worker serves: the kernel picks
/// a group member by hashing the client's address over the members bound *now*, so a worker that
/// answered while the next was still binding would see its clients' later requests hashed to
/// another worker, which holds no allocation for them and answers 437 (seen in full test runs on a
/// loaded machine, where the second worker bound tens of milliseconds after the first answered).
@Suite(.dedicatedThread) struct RelayRuntimeStartupTests {
    /// UDP sockets bound to 127.0.0.1:`port` in this network namespace, from /proc/net/udp. Only
    /// that address: other tests' sockets may hold the same port number on 127.0.0.2 and others
    /// (relay port ranges overlap the listen ports' range); none can hold 127.0.0.1:`port` beside
    /// the listeners, which bind it with SO_REUSEPORT.
    static func udpSocketsBound(port: UInt16) -> Int {
        // One read() for the whole file: read in pieces (stdio's 4 KiB), the kernel resumes each
        // piece by position, so sockets that other tests open or close meanwhile make lines skip
        // or repeat. Within one read the port's hash bucket is walked under its lock. Counted by
        // inode all the same.
        let fd = open("/proc/net/udp", O_RDONLY)
        guard fd >= 0 else { return -1 }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 8 << 20)
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return -1 }
        let hex = String(port, radix: 16, uppercase: true)
        let local = "0100007F:" + String(repeating: "0", count: 4 - hex.count) + hex
        var inodes = Set<Substring>()
        for line in String(decoding: bytes[0..<n], as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count > 9, fields[1] == local { inodes.insert(fields[9]) }
        }
        return inodes.count
    }

    @Test(arguments: IOBackendKind.allCases) func everyWorkersListenerIsBoundBeforeAnyWorkerServes(backend: IOBackendKind) throws {
        let port = try ListenPortClaims.freePort()
        var configuration = WorkerConfiguration(listenIPv4: .loopback, listenIPv6: nil, listenPort: port)
        configuration.ioBackend = backend
        let seen = Mutex<[Int: Int]>([:])
        // The processor is made on the worker's thread just before it starts serving.
        let runtime = try RelayRuntime.start(workers: 3, configuration: configuration, portRange: 50000...50011) { context, _ in
            let bound = Self.udpSocketsBound(port: port)
            seen.withLock { $0[context.index] = bound }
            return EchoProcessor(events: EventLog())
        }
        runtime.stop()
        runtime.join()
        #expect(seen.withLock { $0 } == [0: 3, 1: 3, 2: 3])
    }
}
