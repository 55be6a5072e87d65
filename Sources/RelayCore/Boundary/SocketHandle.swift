import STUN

/// Names a socket between the core and the shell without the core knowing file descriptors.
///
/// `listener(.ipv4)` and `listener(.ipv6)` are the UDP TURN port sockets of one worker.
/// `connection(index:)` names a client's stream connection (TCP or TLS over TCP, RFC 8656 §3.1)
/// that the shell accepted: the shell chooses these (a dense index of its own, top bit set) and
/// hands the core the messages it framed from the stream with that handle as their socket; what
/// the core sends to that handle the shell writes to the stream. Every other handle names an
/// allocation (relay) socket; the core chooses these handles itself (a dense index, so the shell
/// can keep its per-socket state in an array indexed by `allocationIndex`) and asks the shell to
/// open them with a `SocketRequest`.
public struct SocketHandle: Hashable, Sendable {
    public var raw: UInt32

    @inlinable public init(raw: UInt32) { self.raw = raw }

    @inlinable public static func listener(_ family: AddressFamily) -> SocketHandle {
        SocketHandle(raw: family == .ipv4 ? 0 : 1)
    }

    @inlinable public static func allocation(index: Int) -> SocketHandle {
        SocketHandle(raw: UInt32(index) + 2)
    }

    /// The top bit marks a stream connection's handle; the next one, a connection over TLS.
    public static let connectionBit: UInt32 = 0x8000_0000
    public static let tlsBit: UInt32 = 0x4000_0000

    /// A client connection (TCP, or TLS over TCP with `tls`), index < 2^30.
    @inlinable public static func connection(index: Int, tls: Bool = false) -> SocketHandle {
        SocketHandle(raw: connectionBit | (tls ? tlsBit : 0) | (UInt32(truncatingIfNeeded: index) & ~(connectionBit | tlsBit)))
    }

    /// A connection over TLS.
    @inlinable public var isTLSConnection: Bool { raw & (Self.connectionBit | Self.tlsBit) == Self.connectionBit | Self.tlsBit }

    @inlinable public var isListener: Bool { raw < 2 }

    /// A client's stream connection (TCP or TLS), accepted by the shell.
    @inlinable public var isConnection: Bool { raw & Self.connectionBit != 0 }

    /// The shell's dense index of a stream connection, or nil.
    @inlinable public var connectionIndex: Int? { isConnection ? Int(raw & ~(Self.connectionBit | Self.tlsBit)) : nil }

    /// The dense index of an allocation socket, or nil for a listener or a connection.
    @inlinable public var allocationIndex: Int? { raw < 2 || raw & Self.connectionBit != 0 ? nil : Int(raw - 2) }
}

/// What the core asks the shell to do with sockets. The shell answers every `.open` with
/// `Server.socketOpened(_:result:now:into:)`; bind failure is an answer, not a crash.
public enum SocketRequest: Hashable, Sendable {
    /// Bind a UDP socket for an allocation on the relay address of `family`, port `port`.
    case open(SocketHandle, family: AddressFamily, port: UInt16)
    /// A TCP allocation's relayed transport address (RFC 6062 §5.1: "A TCP relayed transport
    /// address MUST be allocated instead of a UDP one"): a TCP socket bound to the relay address of
    /// `family`, port `port`, listening. Answered with `socketOpened` like `.open`. Connections a
    /// peer makes to it are reported with `Server.peerConnectionAccepted`; nothing is read from
    /// them until the core splices them.
    case listen(SocketHandle, family: AddressFamily, port: UInt16)
    /// Close it; no datagram for this handle will be produced after this request.
    case close(SocketHandle)
    /// RFC 6062 §5.2: "the server MUST initiate an outgoing TCP connection. The local endpoint is
    /// the relayed transport address associated with the allocation. The remote endpoint is the
    /// one indicated by the XOR-PEER-ADDRESS attribute." `from` is the allocation's listening
    /// handle (its address and port). Answered, once, with `Server.peerConnected(attempt:...)`
    /// unless aborted first.
    case connect(attempt: UInt32, from: SocketHandle, to: TransportAddress)
    /// The core gave up `attempt` (timeout, allocation gone): close its socket whatever state it is
    /// in; no answer follows.
    case abortConnect(attempt: UInt32)
    /// RFC 6062 §5.4: "Data received on it MUST be sent as-is to the associated peer data
    /// connection. Data received on the associated peer data connection MUST be sent as-is on this
    /// client data connection." From now on the shell moves bytes between the two connections
    /// without the core; what the client sent after its ConnectionBind goes to the peer first, and
    /// the ConnectionBind response (in this batch) goes to the client before any peer byte. When
    /// either closes, the shell reports it with `connectionClosed` and the core closes the other.
    case splice(client: SocketHandle, peer: SocketHandle)
    /// Close the stream connection (a peer data connection, or a client data connection); no
    /// `connectionClosed` follows for it.
    case closeConnection(SocketHandle)
}

/// The shell's answer to `SocketRequest.connect`.
public enum PeerConnectResult: Hashable, Sendable {
    /// Connected; the connection's handle (a `SocketHandle.connection` of the shell's choosing).
    case connected(SocketHandle)
    /// Refused, unreachable, timed out in the kernel: the errno.
    case failed(errno: Int32)
}

public enum SocketOpenResult: Hashable, Sendable {
    case opened
    /// The bind failed with this errno (EADDRINUSE, EACCES, EMFILE, ...).
    case failed(errno: Int32)
}
