import Testing
import STUN

/// Stream framing (TURN over TCP/TLS): RFC 8656 §12.5, "Over TCP and TLS-over-TCP, the ChannelData
/// message MUST be padded to a multiple of four bytes in order to ensure the alignment of
/// subsequent messages."; RFC 8489 §5: a STUN length's "last 2 bits of this field are always zero".
@Suite struct StreamFramingTests {
    /// A Binding request with one 8-byte attribute (28 bytes), a ChannelData of 5 payload bytes
    /// (9 bytes, padded to 12), an empty ChannelData (4 bytes) and a Binding request without
    /// attributes (20 bytes).
    static let binding = message(type: 0x0001, attributes: tlv(0x8022, Array("software".utf8)))
    static let channelData: [UInt8] = [0x40, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]
    static let emptyChannelData: [UInt8] = [0x4F, 0xFF, 0x00, 0x00]
    static let bareBinding = message(type: 0x0001, attributes: [])
    static var stream: [UInt8] { binding + channelData + [0, 0, 0] + emptyChannelData + bareBinding }
    static var expected: [[UInt8]] { [binding, channelData, emptyChannelData, bareBinding] }

    /// Feeds `chunks` and collects the messages and the last result.
    static func run(_ chunks: [[UInt8]], max: Int = 2048, rfc5766: Bool = false)
        -> (messages: [[UInt8]], results: [StreamReassembler.ConsumeResult], reassembler: StreamReassembler) {
        var reassembler = StreamReassembler(maxMessageBytes: max, rfc5766Channels: rfc5766)
        var messages: [[UInt8]] = []
        var results: [StreamReassembler.ConsumeResult] = []
        for chunk in chunks {
            results.append(chunk.withUnsafeBytes { reassembler.consume($0) { messages.append(Array($0)) } })
        }
        return (messages, results, reassembler)
    }

    @Test func severalMessagesInOneRead() {
        let (messages, results, reassembler) = Self.run([Self.stream])
        #expect(messages == Self.expected)
        #expect(results == [.init(messages: 4, oversize: 0, invalid: nil)])
        #expect(!reassembler.hasPartialMessage && reassembler.bufferedBytes == 0)
    }

    @Test func splitAtEveryByteBoundary() {
        let stream = Self.stream
        for cut in 0...stream.count {
            let (messages, results, reassembler) = Self.run([Array(stream[..<cut]), Array(stream[cut...])])
            #expect(messages == Self.expected, "cut at \(cut)")
            #expect(results.allSatisfy { $0.invalid == nil && $0.oversize == 0 }, "cut at \(cut)")
            #expect(!reassembler.hasPartialMessage, "cut at \(cut)")
        }
    }

    @Test func oneByteAtATime() {
        let (messages, results, reassembler) = Self.run(Self.stream.map { [$0] })
        #expect(messages == Self.expected)
        #expect(results.reduce(0) { $0 + $1.messages } == 4)
        #expect(!reassembler.hasPartialMessage)
    }

    @Test func everyPairOfCuts() {
        // Three chunks, every pair of cut points: a header split from its body and a body split
        // across reads, in every combination.
        let stream = Self.stream
        for a in 0...stream.count {
            for b in a...stream.count where (a + b) % 3 == 0 {
                let (messages, _, _) = Self.run([Array(stream[..<a]), Array(stream[a..<b]), Array(stream[b...])])
                #expect(messages == Self.expected, "cuts at \(a), \(b)")
            }
        }
    }

    @Test func partialMessageIsReportedUntilItCompletes() {
        var reassembler = StreamReassembler(maxMessageBytes: 2048)
        let first = Self.binding.prefix(10)
        _ = Array(first).withUnsafeBytes { reassembler.consume($0) { _ in Issue.record("no message yet") } }
        #expect(reassembler.hasPartialMessage && reassembler.bufferedBytes == 10)
        var got = 0
        _ = Array(Self.binding.dropFirst(10)).withUnsafeBytes { reassembler.consume($0) { _ in got += 1 } }
        #expect(got == 1 && !reassembler.hasPartialMessage && reassembler.bufferedBytes == 0)
    }

    @Test func channelDataWithoutPaddingWaitsForIt() {
        // The padding is part of the stream: without it the next message would start misaligned.
        let (messages, results, reassembler) = Self.run([Self.channelData])
        #expect(messages.isEmpty && results[0].messages == 0)
        #expect(reassembler.hasPartialMessage)
    }

    @Test func garbageBeforeTheFirstMessageIsInvalid() {
        // A TLS ClientHello sent to the TCP port (0x16), a high bit, all ones.
        for garbage: [UInt8] in [[0x16, 0x03, 0x01, 0x00], [0x80], [0xFF, 0xFF], Array("POST / HTTP/1.1\r\n".utf8)] {
            let (messages, results, _) = Self.run([garbage + Self.stream])
            #expect(messages.isEmpty)
            #expect(results.last?.invalid == .unknownFirstByte)
        }
        // "GET" starts with 0x47: a ChannelData header on channel 0x4745 of length 0x5420, which
        // is what RFC 8656's demultiplexing makes of it. It is held as a partial message until
        // the message timeout closes the connection (or, completed, dropped by the core as
        // ChannelData without an allocation).
        let (messages, results, reassembler) = Self.run([Array("GET / HTTP/1.1\r\n\r\n".utf8)])
        #expect(messages.isEmpty && results[0].invalid == nil && reassembler.hasPartialMessage)
    }

    @Test func garbageAfterAMessageStopsThere() {
        let (messages, results, _) = Self.run([Self.bareBinding + [0x99, 0, 0, 0] + Self.bareBinding])
        #expect(messages == [Self.bareBinding])
        #expect(results[0].invalid == .unknownFirstByte && results[0].messages == 1)
    }

    @Test func stunLengthNotAMultipleOfFourIsInvalid() {
        // A length that would desynchronise the stream (coturn's CVE-2026-68552 was a truncated
        // length doing exactly that) is refused, not trusted.
        var bad = Self.bareBinding
        bad[3] = 2
        let (messages, results, _) = Self.run([bad + [0, 0]])
        #expect(messages.isEmpty && results[0].invalid == .stunLengthNotMultipleOfFour)
    }

    @Test func missingMagicCookieIsInvalid() {
        var bad = Self.bareBinding
        bad[4] = 0
        let (_, results, _) = Self.run([bad])
        #expect(results[0].invalid == .badMagicCookie)
        // Split inside the cookie: the verdict waits for the eighth byte.
        let (_, split, _) = Self.run([Array(bad[..<5]), Array(bad[5...])])
        #expect(split[0].invalid == nil && split[1].invalid == .badMagicCookie)
    }

    @Test func declaredLengthLargerThanAnyBufferIsSkippedNotBuffered() {
        // A STUN header declaring 65,532 bytes, then its body, then a good message: the body is
        // read past without being held, and the message after it is found.
        var huge = Self.bareBinding
        huge[2] = 0xFF
        huge[3] = 0xFC
        let body = [UInt8](repeating: 0x5A, count: 0xFFFC)
        let stream = huge + body + Self.bareBinding
        var reassembler = StreamReassembler(maxMessageBytes: 2048)
        var messages: [[UInt8]] = []
        var oversize = 0
        var largestBuffer = 0
        var at = 0
        while at < stream.count {
            let chunk = Array(stream[at..<min(stream.count, at + 1000)])
            at += chunk.count
            let r = chunk.withUnsafeBytes { reassembler.consume($0) { messages.append(Array($0)) } }
            #expect(r.invalid == nil)
            oversize += r.oversize
            largestBuffer = max(largestBuffer, reassembler.bufferedBytes)
        }
        #expect(oversize == 1)
        #expect(messages == [Self.bareBinding])
        #expect(largestBuffer <= 2048)
        #expect(!reassembler.hasPartialMessage)
    }

    @Test func oversizeChannelDataSplitAfterItsHeaderIsSkipped() {
        let header: [UInt8] = [0x40, 0x00, 0x10, 0x00]  // 4096 payload bytes: 4100 framed
        let payload = [UInt8](repeating: 1, count: 4096)
        let (messages, results, reassembler) = Self.run([Array(header[..<2]), Array(header[2...]) + payload, Self.bareBinding], max: 2048)
        #expect(messages == [Self.bareBinding])
        #expect(results.reduce(0) { $0 + $1.oversize } == 1)
        #expect(!reassembler.hasPartialMessage)
    }

    @Test func largestLegalMessagesPassWithALargeEnoughLimit() {
        let header: [UInt8] = [0x40, 0x00, 0xFF, 0xFF]
        let channelData = header + [UInt8](repeating: 7, count: 0xFFFF)
        let (messages, results, _) = Self.run([channelData + [0], Self.bareBinding], max: 4 + 0xFFFF + 3)
        #expect(messages == [channelData, Self.bareBinding])
        #expect(results.allSatisfy { $0.oversize == 0 && $0.invalid == nil })
    }

    @Test func rfc5766ChannelNumbersFrameOnlyWhenEnabled() {
        let high: [UInt8] = [0x7F, 0xFE, 0x00, 0x00]
        #expect(Self.run([high], rfc5766: true).messages == [high])
        #expect(Self.run([high]).results[0].invalid == .unknownFirstByte)
    }
}
