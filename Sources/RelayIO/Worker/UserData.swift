/// What a completion belongs to, in its 64-bit user data: kind in the top byte; for receives the
/// socket handle (low 32 bits) and its generation (next 16), for sends the send slot.
enum UserData {
    static let receiveKind: UInt64 = 1
    static let sendKind: UInt64 = 2
    static let cancelKind: UInt64 = 3
    static let wakeKind: UInt64 = 4

    @inline(__always) static func kind(_ value: UInt64) -> UInt64 { value >> 56 }
    @inline(__always) static func receive(_ raw: UInt32, generation: UInt16) -> UInt64 {
        receiveKind << 56 | UInt64(generation) << 32 | UInt64(raw)
    }
    @inline(__always) static func send(_ slot: Int) -> UInt64 { sendKind << 56 | UInt64(UInt32(truncatingIfNeeded: slot)) }
    static let cancel: UInt64 = cancelKind << 56
    static let wake: UInt64 = wakeKind << 56
}
