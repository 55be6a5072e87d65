import CUDP
import Glibc
import Histogram
import SocketAddressing
import STUN

/// One client socket's TURN control state: its credentials and what the server told it.
public final class ControlClient: @unchecked Sendable {
    public let index: Int
    public let fd: Int32
    public let username: String
    public let password: String
    public var auth: ControlAuth?
    public var relayedAddress: TransportAddress?
    public var mappedAddress: TransportAddress?

    public init(index: Int, fd: Int32, username: String, password: String) {
        self.index = index
        self.fd = fd
        self.username = username
        self.password = password
    }
}

/// A sequence of requests one client sends, each after the previous one succeeded.
public struct ControlJob {
    public var client: ControlClient
    public var steps: [ControlRequest]
    public init(client: ControlClient, steps: [ControlRequest]) {
        self.client = client
        self.steps = steps
    }
}

/// Runs control jobs with up to `window` in flight at once: retransmits on a fixed timeout,
/// answers 401 challenges (long-term credentials) and 438 stale nonces, and times every request.
public final class ControlPipeline {
    public let server: TransportAddress
    public var retransmitNanoseconds: UInt64 = 250_000_000
    /// Doubles the wait after each send of a request (RFC 8489 §6.2.1: RTO, 2 RTO, 4 RTO ...), up
    /// to `maxRetransmitNanoseconds`; false: a fixed `retransmitNanoseconds`.
    public var retransmitBackoff = false
    public var maxRetransmitNanoseconds: UInt64 = 8_000_000_000
    /// Each wait is scaled by a random factor in 1 ± this (0: exact), so that clients that
    /// started together do not retransmit in lockstep.
    public var retransmitJitter = 0.0
    public var maxAttempts = 6
    /// Request → final answer, nanoseconds, for requests that succeeded.
    public private(set) var latency = LatencyHistogram.make()
    public private(set) var requests: UInt64 = 0
    public private(set) var retransmits: UInt64 = 0
    public private(set) var challenges: UInt64 = 0
    public private(set) var completedJobs = 0
    public private(set) var failedJobs = 0
    public private(set) var failures: [String: Int] = [:]

    private var onFinish: ((ControlJob, Bool) -> Void)?
    private let serverAddress: cu_addr
    private var generator = SystemRandomNumberGenerator()
    private let sendBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 8)
    private let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)

    struct InFlight {
        var job: ControlJob
        var step: Int
        var transactionID: [UInt8]
        var firstSent: UInt64
        var lastSent: UInt64
        var attempts: Int
        var authRetries: Int
        /// How long after `lastSent` to retransmit.
        var wait: UInt64 = 0
    }

    public init(server: TransportAddress) {
        self.server = server
        serverAddress = cu_addr(server)
    }

    deinit {
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
    }

    /// Runs jobs from `next` until it returns nil and all finished, or until `deadline`
    /// (monotonic ns; unfinished jobs then count as failed).
    /// `finished` is called once per job with whether it succeeded.
    public func run(window: Int, deadline: UInt64, next: () -> ControlJob?, finished: (ControlJob, Bool) -> Void = { _, _ in }) {
        withoutActuallyEscaping(finished) { finished in
            onFinish = finished
            runJobs(window: window, deadline: deadline, next: next)
            onFinish = nil
        }
    }

    private func runJobs(window: Int, deadline: UInt64, next: () -> ControlJob?) {
        var slots: [InFlight] = []
        var exhausted = false
        var pollFDs: [pollfd] = []
        while true {
            while !exhausted && slots.count < window {
                guard let job = next() else { exhausted = true; break }
                if job.steps.isEmpty { completedJobs += 1; continue }
                var f = InFlight(job: job, step: 0, transactionID: [], firstSent: 0, lastSent: 0, attempts: 0, authRetries: 0)
                if start(&f) { slots.append(f) }
            }
            if slots.isEmpty && exhausted { return }
            let now = monotonicNanoseconds()
            if now >= deadline {
                for f in slots { fail(f, "deadline") }
                return
            }
            pollFDs.removeAll(keepingCapacity: true)
            for f in slots { pollFDs.append(pollfd(fd: f.job.client.fd, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&pollFDs, nfds_t(pollFDs.count), 5)
            var i = 0
            while i < slots.count {
                var keep = true
                if pollFDs.count > i && pollFDs[i].revents != 0 {
                    keep = receive(&slots[i])
                }
                if keep {
                    let t = monotonicNanoseconds()
                    if t - slots[i].lastSent >= slots[i].wait {
                        if slots[i].attempts >= maxAttempts {
                            fail(slots[i], "timeout")
                            keep = false
                        } else {
                            retransmits += 1
                            keep = send(&slots[i], fresh: false)
                        }
                    }
                }
                if keep {
                    i += 1
                } else {
                    slots.remove(at: i)
                    if pollFDs.count > i { pollFDs.remove(at: i) }
                }
            }
        }
    }

    private func wait(afterAttempts attempts: Int) -> UInt64 {
        guard retransmitBackoff else { return retransmitNanoseconds }
        return min(retransmitNanoseconds << UInt64(min(max(attempts - 1, 0), 20)), maxRetransmitNanoseconds)
    }

    private func start(_ f: inout InFlight) -> Bool {
        f.transactionID = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
        f.attempts = 0
        return send(&f, fresh: true)
    }

    private func send(_ f: inout InFlight, fresh: Bool) -> Bool {
        let request = f.job.steps[f.step]
        guard let n = ControlCodec.encode(request, transactionID: f.transactionID, auth: f.job.client.auth, into: sendBuffer) else {
            fail(f, "encode")
            return false
        }
        let now = monotonicNanoseconds()
        if fresh { f.firstSent = now; requests += 1 }
        f.lastSent = now
        f.attempts += 1
        f.wait = wait(afterAttempts: f.attempts)
        if retransmitJitter > 0 {
            f.wait = UInt64(Double(f.wait) * (1 + Double.random(in: -retransmitJitter...retransmitJitter, using: &generator)))
        }
        let rc = serverAddress.withSockaddr { sendto(f.job.client.fd, sendBuffer.baseAddress, n, 0, $0, $1) }
        if rc < 0 && errno != EAGAIN && errno != ENOBUFS {
            fail(f, "sendto errno \(errno)")
            return false
        }
        return true
    }

    /// Drains the socket; returns false when the job is over (done or failed).
    private func receive(_ f: inout InFlight) -> Bool {
        for _ in 0..<64 {
            let n = recv(f.job.client.fd, receiveBuffer.baseAddress, receiveBuffer.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return true }
            guard let r = ControlCodec.decode(UnsafeRawBufferPointer(rebasing: receiveBuffer[0..<n])),
                  r.transactionID == f.transactionID else { continue }
            return handle(r, &f)
        }
        return true
    }

    private func handle(_ r: ControlResponse, _ f: inout InFlight) -> Bool {
        let client = f.job.client
        if r.isSuccess {
            latency.record(monotonicNanoseconds() - f.firstSent)
            if case .allocate = f.job.steps[f.step] {
                client.relayedAddress = r.relayedAddress
                client.mappedAddress = r.mappedAddress
                if r.relayedAddress == nil { fail(f, "no XOR-RELAYED-ADDRESS"); return false }
            }
            f.step += 1
            if f.step == f.job.steps.count {
                completedJobs += 1
                onFinish?(f.job, true)
                return false
            }
            f.authRetries = 0
            return start(&f)
        }
        let code = r.errorCode ?? 0
        if (code == 401 || code == 438), let nonce = r.nonce, f.authRetries < 2 {
            // RFC 8489 §9.2.4: on 401 with REALM and NONCE, retry with the long-term credentials;
            // on 438 (Stale Nonce), retry with the new NONCE.
            let realm = r.realm ?? client.auth?.realm ?? ""
            let key: [UInt8]
            if let known = client.auth, known.realm == realm {
                key = known.key
            } else {
                key = ControlCodec.longTermKey(username: client.username, realm: realm, password: client.password)
            }
            client.auth = ControlAuth(username: client.username, realm: realm, nonce: nonce, key: key)
            challenges += 1
            f.authRetries += 1
            f.transactionID = (0..<12).map { _ in UInt8.random(in: 0...255, using: &generator) }
            f.attempts = 0
            return send(&f, fresh: false)
        }
        fail(f, "error \(code) on method 0x\(String(r.method, radix: 16))")
        return false
    }

    private func fail(_ f: InFlight, _ why: String) {
        failedJobs += 1
        failures[why, default: 0] += 1
        onFinish?(f.job, false)
    }
}
