import Dispatch
import Glibc
import RelayCore
import RelayIO
import STUN
import Synchronization

/// Forwards every datagram back to its source from the socket it came in on, zero copy, and with
/// `tag` writes a 4-byte marker into the headroom before it (like a ChannelData header) and 3
/// bytes of tailroom after it, sending marker + payload + pad. Commands (first byte):
/// - 0xB0 n: send the payload n times (a GSO run from one received buffer);
/// - 0xA0 n: send n copies of the payload encoded in the arena (a GSO run from transmit buffers);
/// - 0x0E p p: ask for allocation socket 0 on 127.0.0.1:p (big-endian);
/// - 0x0C: close allocation socket 0;
/// - 0xBD: send from a buffer id that does not exist (must be dropped, not crash);
/// - 0xB2 n: send the payload n times to port 0 of the source's address (a GSO run the kernel
///   refuses for its destination: EINVAL, one by one too).
final class EchoProcessor: DatagramProcessor {
    let tag: Bool
    let gate: Gate?
    let events: EventLog

    init(tag: Bool = false, gate: Gate? = nil, events: EventLog) {
        self.tag = tag
        self.gate = gate
        self.events = events
    }

    func process(_ inbound: UnsafeBufferPointer<InboundDatagram>, now: Instant, into out: OutboundBatch) {
        gate?.passOnce()
        processed += inbound.count
        for d in inbound {
            let first: UInt8 = d.length > 0 ? d.bytes.load(as: UInt8.self) : 0
            let second = d.length > 1 ? Int(d.bytes.load(fromByteOffset: 1, as: UInt8.self)) : 0
            switch first {
            case 0xB0:
                for _ in 0..<second {
                    out.append(OutboundDatagram(socket: d.socket, destination: d.source, bytes: d.bytes,
                                                length: d.length, origin: .received(bufferID: d.bufferID)))
                }
            case 0xB2:
                let nowhere = TransportAddress(ip: d.source.ip, port: 0)
                for _ in 0..<second {
                    out.append(OutboundDatagram(socket: d.socket, destination: nowhere, bytes: d.bytes,
                                                length: d.length, origin: .received(bufferID: d.bufferID)))
                }
            case 0xA0:
                for _ in 0..<second {
                    guard let space = out.arenaSpace(maxBytes: d.length) else { break }
                    space.baseAddress!.copyMemory(from: d.bytes, byteCount: d.length)
                    out.commitArena(socket: d.socket, destination: d.source, length: d.length)
                }
            case 0x0E where d.length >= 3:
                let port = UInt16(d.bytes.load(fromByteOffset: 1, as: UInt8.self)) << 8
                    | UInt16(d.bytes.load(fromByteOffset: 2, as: UInt8.self))
                out.socketRequests.append(.open(.allocation(index: 0), family: .ipv4, port: port))
            case 0x0C:
                out.socketRequests.append(.close(.allocation(index: 0)))
            case 0x0D where d.length >= 3:
                // Close the allocation socket and take its route down, in one batch (the route
                // change appended last: the worker applies it first all the same).
                let port = UInt16(d.bytes.load(fromByteOffset: 1, as: UInt8.self)) << 8
                    | UInt16(d.bytes.load(fromByteOffset: 2, as: UInt8.self))
                out.socketRequests.append(.close(.allocation(index: 0)))
                out.routeChanges.append(.down(ChannelRoute(client: d.source, channel: 0x4000, peer: d.source,
                                                           relaySocket: .allocation(index: 0), relayPort: port)))
            case 0xBD:
                out.append(OutboundDatagram(socket: d.socket, destination: d.source, bytes: d.bytes,
                                            length: d.length, origin: .received(bufferID: 60000)))
            default:
                if tag {
                    let start = d.bytes - 4
                    start.storeBytes(of: 0x40, as: UInt8.self)
                    start.storeBytes(of: 0x00, toByteOffset: 1, as: UInt8.self)
                    start.storeBytes(of: UInt8(truncatingIfNeeded: d.length >> 8), toByteOffset: 2, as: UInt8.self)
                    start.storeBytes(of: UInt8(truncatingIfNeeded: d.length), toByteOffset: 3, as: UInt8.self)
                    for k in 0..<3 { (d.bytes + d.length + k).storeBytes(of: 0xEE, as: UInt8.self) }
                    out.append(OutboundDatagram(socket: d.socket, destination: d.source, bytes: UnsafeRawPointer(start),
                                                length: d.length + 7, origin: .received(bufferID: d.bufferID)))
                } else {
                    out.append(OutboundDatagram(socket: d.socket, destination: d.source, bytes: d.bytes,
                                                length: d.length, origin: .received(bufferID: d.bufferID)))
                }
            }
        }
    }

    func connectionClosed(_ handle: SocketHandle, client: TransportAddress, now: Instant, into out: OutboundBatch) {
        events.append("closed \(handle.raw)")
    }

    func peerConnected(attempt: UInt32, result: PeerConnectResult, now: Instant, into out: OutboundBatch) {
        events.append("connected \(attempt) \(result)")
    }

    func peerConnectionAccepted(_ handle: SocketHandle, on listener: SocketHandle, from peer: TransportAddress,
                                now: Instant, into out: OutboundBatch) {
        events.append("accepted \(handle.raw) on \(listener.raw)")
        out.socketRequests.append(.closeConnection(handle))
    }

    func socketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, into out: OutboundBatch) {
        events.append("opened \(handle.raw) \(result)")
    }

    func handleTimeout(now: Instant, into out: OutboundBatch) {}
    func nextTimeout() -> Instant? { nil }

    /// A reload: sends `bytes` to `destination` from the IPv4 listener and logs the thread it ran on.
    struct Reload: Sendable {
        var bytes: [UInt8]
        var destination: TransportAddress
    }

    func apply(_ reload: Reload, now: Instant, into out: OutboundBatch) {
        events.append("reload on \(currentThreadName())")
        guard let space = out.arenaSpace(maxBytes: reload.bytes.count) else { return }
        space.copyBytes(from: reload.bytes)
        out.commitArena(socket: .listener(.ipv4), destination: reload.destination, length: reload.bytes.count)
    }

    /// The processor's part of the worker's report: the datagrams it was handed.
    func report(now: Instant) -> (any Sendable)? { processed }
    private var processed = 0
}

/// The calling thread's name (`/proc/thread-self/comm`, as `cu_set_thread_name` set it).
func currentThreadName() -> String {
    guard let file = fopen("/proc/thread-self/comm", "r") else { return "?" }
    defer { fclose(file) }
    var name = [CChar](repeating: 0, count: 64)
    guard fgets(&name, Int32(name.count), file) != nil else { return "?" }
    return String(cString: name).trimmingSuffix("\n")
}

private extension String {
    func trimmingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}

/// Blocks the first `process` call until the test opens it (bounded: 5 s).
final class Gate: Sendable {
    let entered = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)
    let used = Atomic<Bool>(false)

    func passOnce() {
        guard !used.exchange(true, ordering: .relaxed) else { return }
        entered.signal()
        _ = release.wait(timeout: .now() + .seconds(5))
    }
}

/// What the processor saw, readable from the test thread.
final class EventLog: Sendable {
    let entries = Mutex<[String]>([])
    func append(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}
