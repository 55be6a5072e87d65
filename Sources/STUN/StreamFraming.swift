/// STUN messages and ChannelData over a byte stream (TURN over TCP or TLS, RFC 8656 §3.1).
///
/// A stream carries one message after another with nothing between them, so the receiver finds
/// each message's end from its own header:
/// - a STUN message (first two bits 0) is its 20-byte header plus the header's length field,
///   which RFC 8489 §5 says is always a multiple of 4 ("the last 2 bits of this field are always
///   zero"), and carries the magic cookie 0x2112A442 at bytes 4–7;
/// - ChannelData (first byte 0x40–0x4F, or up to 0x7F with RFC 5766 channel numbers) is its
///   4-byte header plus the length field, padded: RFC 8656 §12.5, "Over TCP and TLS-over-TCP, the
///   ChannelData message MUST be padded to a multiple of four bytes in order to ensure the
///   alignment of subsequent messages."
///
/// Anything else at a message boundary means the stream is not a TURN stream (or lost its
/// framing): there is no way to find the next message, so the connection is closed.
public enum StreamFrame: Equatable, Sendable {
    /// Fewer bytes than the header needs; at least `atLeast` are needed to know more.
    case needMore(atLeast: Int)
    /// A message of `length` bytes (what the core sees: ChannelData without its padding) that
    /// occupies `consumed` bytes of the stream.
    case message(length: Int, consumed: Int)
    /// Not a message boundary of a TURN stream.
    case invalid(StreamFramingError)

    /// What the bytes at the start of `bytes` (a message boundary) frame to.
    public static func frame(_ bytes: UnsafeRawBufferPointer, rfc5766Channels: Bool = false) -> StreamFrame {
        guard let first = bytes.first else { return .needMore(atLeast: 4) }
        switch DatagramKind(firstByte: first, rfc5766Channels: rfc5766Channels) {
        case .stun:
            guard bytes.count >= 8 else { return .needMore(atLeast: 8) }
            let length = Int(bytes[2]) << 8 | Int(bytes[3])
            guard length & 3 == 0 else { return .invalid(.stunLengthNotMultipleOfFour) }
            guard bytes[4] == 0x21, bytes[5] == 0x12, bytes[6] == 0xA4, bytes[7] == 0x42 else {
                return .invalid(.badMagicCookie)
            }
            return .message(length: STUNMessage.headerLength + length, consumed: STUNMessage.headerLength + length)
        case .channelData:
            guard bytes.count >= 4 else { return .needMore(atLeast: 4) }
            let length = ChannelData.headerLength + (Int(bytes[2]) << 8 | Int(bytes[3]))
            return .message(length: length, consumed: (length + 3) & ~3)
        case .other:
            return .invalid(.unknownFirstByte)
        }
    }
}

/// Why a stream lost its framing (the connection is closed).
public enum StreamFramingError: String, Equatable, Sendable {
    /// A first byte that starts neither STUN (0x00–0x03) nor ChannelData (RFC 8656 §12, Table 3).
    case unknownFirstByte = "unknown_first_byte"
    /// A STUN length field that is not a multiple of 4 (RFC 8489 §5).
    case stunLengthNotMultipleOfFour = "stun_length"
    /// A STUN header without the magic cookie (RFC 8489 §5: it "MUST contain the fixed value 0x2112A442").
    case badMagicCookie = "magic_cookie"
}

/// Turns the chunks a stream delivers (however the sender's writes were cut by TCP, TLS records or
/// the receiver's reads) back into messages.
///
/// Bounded: it holds at most one partial message, never more than `maxMessageBytes`. A message
/// whose framed size is larger is skipped as it streams past (its bytes are read and dropped,
/// counted by the caller from `ConsumeResult.oversize`), so a declared length larger than any
/// buffer costs nothing but the bytes. An idle connection's reassembler holds no buffer.
public struct StreamReassembler: Sendable {
    public let maxMessageBytes: Int
    public let rfc5766Channels: Bool
    /// The partial message (its first bytes); empty between messages.
    private var partial: [UInt8] = []
    /// Bytes of an oversize message still to skip.
    private var discarding = 0

    public init(maxMessageBytes: Int, rfc5766Channels: Bool = false) {
        precondition(maxMessageBytes >= 24)
        self.maxMessageBytes = maxMessageBytes
        self.rfc5766Channels = rfc5766Channels
    }

    /// Part of a message has arrived and the rest has not (a slow or stalled sender).
    public var hasPartialMessage: Bool { !partial.isEmpty || discarding > 0 }
    /// Bytes held for the partial message.
    public var bufferedBytes: Int { partial.count }

    public struct ConsumeResult: Equatable, Sendable {
        /// Messages handed to the body.
        public var messages = 0
        /// Messages skipped because their framed size exceeds `maxMessageBytes`.
        public var oversize = 0
        /// Set when the stream lost its framing; nothing after it was looked at. Close the connection.
        public var invalid: StreamFramingError?
        /// Set when the body asked to stop: the bytes of the chunk consumed up to the end of that
        /// message. The rest of the chunk was not looked at (it is the caller's).
        public var stoppedAfter: Int?

        public init(messages: Int = 0, oversize: Int = 0, invalid: StreamFramingError? = nil) {
            self.messages = messages
            self.oversize = oversize
            self.invalid = invalid
        }
    }

    /// Feeds one chunk; `body` gets every message it completes, in order. A message that lies
    /// whole in `chunk` is passed without a copy; the bytes passed are valid during `body` only.
    public mutating func consume(_ chunk: UnsafeRawBufferPointer,
                                 _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows -> ConsumeResult {
        try consume(chunk, stoppingAfter: { message in
            try body(message)
            return false
        })
    }

    /// `consume`, where `body` returns true to stop after the message it was given (a
    /// ConnectionBind, after which the stream may stop being STUN: RFC 6062 §5.4). The bytes after
    /// it stay unread in `chunk` (`ConsumeResult.stoppedAfter`); the reassembler holds nothing.
    public mutating func consume(_ chunk: UnsafeRawBufferPointer,
                                 stoppingAfter body: (UnsafeRawBufferPointer) throws -> Bool) rethrows -> ConsumeResult {
        var result = ConsumeResult()
        guard let base = chunk.baseAddress else { return result }
        var at = 0
        let end = chunk.count
        while at < end {
            if discarding > 0 {
                let n = min(discarding, end - at)
                discarding -= n
                at += n
                continue
            }
            if partial.isEmpty {
                let rest = UnsafeRawBufferPointer(start: base + at, count: end - at)
                switch StreamFrame.frame(rest, rfc5766Channels: rfc5766Channels) {
                case .needMore:
                    partial.append(contentsOf: rest)
                    return result
                case .invalid(let error):
                    result.invalid = error
                    return result
                case .message(let length, let consumed):
                    if consumed > maxMessageBytes {
                        result.oversize += 1
                        discarding = consumed
                        continue
                    }
                    guard rest.count >= consumed else {
                        partial.reserveCapacity(consumed)
                        partial.append(contentsOf: rest)
                        return result
                    }
                    let stop = try body(UnsafeRawBufferPointer(start: base + at, count: length))
                    result.messages += 1
                    at += consumed
                    if stop {
                        result.stoppedAfter = at
                        return result
                    }
                }
            } else {
                let framed = partial.withUnsafeBytes { StreamFrame.frame($0, rfc5766Channels: rfc5766Channels) }
                switch framed {
                case .needMore(let atLeast):
                    let n = min(atLeast - partial.count, end - at)
                    partial.append(contentsOf: UnsafeRawBufferPointer(start: base + at, count: n))
                    at += n
                case .invalid(let error):
                    result.invalid = error
                    partial = []
                    return result
                case .message(let length, let consumed):
                    if consumed > maxMessageBytes {
                        result.oversize += 1
                        discarding = consumed - partial.count
                        partial = []
                        continue
                    }
                    if partial.capacity < consumed { partial.reserveCapacity(consumed) }
                    let n = min(consumed - partial.count, end - at)
                    partial.append(contentsOf: UnsafeRawBufferPointer(start: base + at, count: n))
                    at += n
                    guard partial.count == consumed else { return result }
                    let stop = try partial.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
                    result.messages += 1
                    // Nothing kept between messages: an idle connection holds no buffer.
                    partial = []
                    if stop {
                        result.stoppedAfter = at
                        return result
                    }
                }
            }
        }
        return result
    }
}
