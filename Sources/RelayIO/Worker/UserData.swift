import CUDP

/// What a completion belongs to, in its 64-bit user data: kind in the top byte; for receives the
/// socket handle (low 32 bits) and its generation (next 16), for sends the send slot.
enum UserData {
    static let receiveKind: UInt64 = 1
    static let sendKind: UInt64 = 2
    static let cancelKind: UInt64 = 3
    static let wakeKind: UInt64 = 4
    /// A stream listener's accepts: the listener's index (low 32 bits).
    static let acceptKind: UInt64 = 5
    /// A stream connection's receive (the C backends recognise this kind): connection index
    /// (low 32 bits) and generation (next 16).
    static let streamReceiveKind: UInt64 = UInt64(CU_KIND_STREAM_RECEIVE)
    /// A stream connection's send: connection index and generation.
    static let streamSendKind: UInt64 = 7
    /// A TCP allocation's listening socket (RFC 6062): its accepts; socket handle and generation
    /// like a receive.
    static let relayAcceptKind: UInt64 = 8
    /// A TCP allocation's outgoing connection became writable: connection index and generation.
    static let connectKind: UInt64 = 9

    @inline(__always) static func kind(_ value: UInt64) -> UInt64 { value >> 56 }
    @inline(__always) static func receive(_ raw: UInt32, generation: UInt16) -> UInt64 {
        receiveKind << 56 | UInt64(generation) << 32 | UInt64(raw)
    }
    @inline(__always) static func send(_ slot: Int) -> UInt64 { sendKind << 56 | UInt64(UInt32(truncatingIfNeeded: slot)) }
    @inline(__always) static func accept(_ listener: Int) -> UInt64 { acceptKind << 56 | UInt64(UInt32(truncatingIfNeeded: listener)) }
    @inline(__always) static func streamReceive(_ index: Int, generation: UInt16) -> UInt64 {
        streamReceiveKind << 56 | UInt64(generation) << 32 | UInt64(UInt32(truncatingIfNeeded: index))
    }
    @inline(__always) static func streamSend(_ index: Int, generation: UInt16) -> UInt64 {
        streamSendKind << 56 | UInt64(generation) << 32 | UInt64(UInt32(truncatingIfNeeded: index))
    }
    @inline(__always) static func relayAccept(_ raw: UInt32, generation: UInt16) -> UInt64 {
        relayAcceptKind << 56 | UInt64(generation) << 32 | UInt64(raw)
    }
    @inline(__always) static func connect(_ index: Int, generation: UInt16) -> UInt64 {
        connectKind << 56 | UInt64(generation) << 32 | UInt64(UInt32(truncatingIfNeeded: index))
    }
    static let cancel: UInt64 = cancelKind << 56
    static let wake: UInt64 = wakeKind << 56
}
