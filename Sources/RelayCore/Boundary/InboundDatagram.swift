import STUN

/// One received datagram, as the shell hands it to the core.
///
/// The bytes are borrowed: valid only during the `process` call, except where the core forwards
/// from them (an `OutboundDatagram` with origin `.received(bufferID)`), in which case the shell keeps
/// the buffer until that send completes.
///
/// Layout guarantee from the shell: `InboundDatagram.headroom` writable bytes directly before
/// `bytes` and `InboundDatagram.tailroom` writable bytes directly after `bytes + length`, so the core
/// can prepend a ChannelData header (4 bytes) or a Data indication header, and pad, in place.
public struct InboundDatagram {
    public static let headroom = 64
    public static let tailroom = 8

    public var socket: SocketHandle
    public var source: TransportAddress
    public var bytes: UnsafeMutableRawPointer
    public var length: Int
    /// The shell's identity for the buffer; echoed in outbound datagrams that reuse it.
    public var bufferID: UInt32

    @inlinable
    public init(socket: SocketHandle, source: TransportAddress, bytes: UnsafeMutableRawPointer, length: Int, bufferID: UInt32) {
        self.socket = socket
        self.source = source
        self.bytes = bytes
        self.length = length
        self.bufferID = bufferID
    }
}
