import STUN

/// One datagram the core wants sent.
public struct OutboundDatagram {
    public enum Origin: Hashable, Sendable {
        /// `bytes` points into the received buffer `bufferID` (zero copy). The shell keeps that buffer
        /// until the send completes.
        case received(bufferID: UInt32)
        /// `bytes` points into the batch's arena; valid until `OutboundBatch.reset()`.
        case arena
    }

    public var socket: SocketHandle
    public var destination: TransportAddress
    public var bytes: UnsafeRawPointer
    public var length: Int
    public var origin: Origin

    @inlinable
    public init(socket: SocketHandle, destination: TransportAddress, bytes: UnsafeRawPointer, length: Int, origin: Origin) {
        self.socket = socket
        self.destination = destination
        self.bytes = bytes
        self.length = length
        self.origin = origin
    }
}

/// The core's output for one `process`/`handleTimeout`/`socketOpened` call: datagrams to send, in
/// order, socket requests and route changes. Owned and reused by the shell; fixed capacity, never grows on the
/// packet path. When full, further datagrams are dropped and counted in `droppedFull`.
public final class OutboundBatch: @unchecked Sendable {
    public let capacity: Int
    public let arenaCapacity: Int
    @usableFromInline var _count: Int = 0
    public var count: Int { _count }
    /// Datagrams the core could not add because the batch or its arena was full.
    @usableFromInline var _droppedFull: Int = 0
    public var droppedFull: Int { _droppedFull }
    /// Socket requests, in the order the shell must carry them out.
    public var socketRequests: [SocketRequest] = []
    /// Route changes for the kernel fast path, in order; the shell applies them before the socket
    /// requests and the datagrams. Empty unless `ServerConfiguration.emitsChannelRoutes`.
    public var routeChanges: [RouteChange] = []

    @usableFromInline let storage: UnsafeMutablePointer<OutboundDatagram>
    @usableFromInline let arena: UnsafeMutableRawPointer
    @usableFromInline var arenaUsed: Int = 0

    public init(capacity: Int = 1024, arenaBytes: Int = 256 * 1024) {
        precondition(capacity > 0 && arenaBytes > 0)
        self.capacity = capacity
        self.arenaCapacity = arenaBytes
        storage = .allocate(capacity: capacity)
        arena = .allocate(byteCount: arenaBytes, alignment: 16)
        socketRequests.reserveCapacity(64)
    }

    deinit {
        storage.deinitialize(count: count)
        storage.deallocate()
        arena.deallocate()
    }

    @inlinable public subscript(index: Int) -> OutboundDatagram {
        precondition(index >= 0 && index < count)
        return storage[index]
    }

    /// Datagrams as a buffer, valid until `reset()`.
    @inlinable public var datagrams: UnsafeBufferPointer<OutboundDatagram> {
        UnsafeBufferPointer(start: storage, count: count)
    }

    public func reset() {
        storage.deinitialize(count: count)
        _count = 0
        arenaUsed = 0
        _droppedFull = 0
        socketRequests.removeAll(keepingCapacity: true)
        routeChanges.removeAll(keepingCapacity: true)
    }

    /// Appends a datagram; false (and counted) when the batch is full.
    @inlinable @discardableResult
    public func append(_ datagram: OutboundDatagram) -> Bool {
        guard count < capacity else {
            _droppedFull &+= 1
            return false
        }
        (storage + count).initialize(to: datagram)
        _count &+= 1
        return true
    }

    /// Scratch space for encoding one datagram in the arena, at most `maxBytes` long; nil when the
    /// arena or the batch is full. Commit what was written with `commitArena`.
    @inlinable
    public func arenaSpace(maxBytes: Int) -> UnsafeMutableRawBufferPointer? {
        guard count < capacity, arenaUsed + maxBytes <= arenaCapacity else {
            _droppedFull &+= 1
            return nil
        }
        return UnsafeMutableRawBufferPointer(start: arena + arenaUsed, count: maxBytes)
    }

    /// Appends the datagram just encoded at the start of the last `arenaSpace`.
    @inlinable
    public func commitArena(socket: SocketHandle, destination: TransportAddress, length: Int) {
        let start = arena + arenaUsed
        arenaUsed += (length + 15) & ~15
        append(OutboundDatagram(socket: socket, destination: destination, bytes: UnsafeRawPointer(start), length: length, origin: .arena))
    }
}
