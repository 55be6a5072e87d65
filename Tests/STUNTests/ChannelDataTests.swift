import Testing
import STUN

@Suite struct ChannelDataTests {
    func parse(_ bytes: [UInt8]) -> (channel: UInt16, payloadLength: Int)? {
        bytes.withUnsafeBytes { ChannelData.parse($0) }
    }

    @Test func parsesChannelAndLength() {
        let r = parse([0x40, 0x00, 0x00, 0x03, 1, 2, 3])
        #expect(r?.channel == 0x4000 && r?.payloadLength == 3)
        let top = parse([0x4F, 0xFF, 0x00, 0x00])
        #expect(top?.channel == 0x4FFF && top?.payloadLength == 0)
    }

    @Test func channelsOutsideTheRangeAreRejected() {
        #expect(parse([0x3F, 0xFF, 0x00, 0x00]) == nil)
        #expect(parse([0x50, 0x00, 0x00, 0x00]) == nil)
        #expect(parse([0x00, 0x01, 0x00, 0x00]) == nil)
        #expect(parse([0xFF, 0xFF, 0x00, 0x00]) == nil)
    }

    @Test func shortOrOverlongIsRejected() {
        #expect(parse([]) == nil)
        #expect(parse([0x40, 0x00, 0x00]) == nil)
        #expect(parse([0x40, 0x00, 0x00, 0x04, 1, 2, 3]) == nil)
        #expect(parse([0x40, 0x00, 0xFF, 0xFF] + Array(repeating: 0, count: 100)) == nil)
    }

    @Test func extraPaddingIsAccepted() {
        // RFC 8656 §12.5: over UDP "the padding is not required but MAY be included".
        let r = parse([0x40, 0x01, 0x00, 0x01, 0xAA, 0, 0, 0])
        #expect(r?.channel == 0x4001 && r?.payloadLength == 1)
        let more = parse([0x40, 0x01, 0x00, 0x01, 0xAA] + Array(repeating: 0, count: 11))
        #expect(more?.payloadLength == 1)
    }

    @Test func writeHeaderAtAnyAlignment() {
        var buffer = [UInt8](repeating: 0, count: 9)
        buffer.withUnsafeMutableBytes { ChannelData.writeHeader(to: $0.baseAddress! + 1, channel: 0x4ABC, payloadLength: 0x0102) }
        #expect(buffer == [0, 0x4A, 0xBC, 0x01, 0x02, 0, 0, 0, 0])
    }

    @Test func rfc5766RangeOnlyWhenAskedFor() {
        func parse(_ bytes: [UInt8], highest: UInt16) -> (channel: UInt16, payloadLength: Int)? {
            bytes.withUnsafeBytes { ChannelData.parse($0, highestChannel: highest) }
        }
        let at671D: [UInt8] = [0x67, 0x1D, 0x00, 0x01, 0xAA]
        #expect(parse(at671D, highest: 0x4FFF) == nil)
        #expect(parse(at671D, highest: 0x7FFF)?.channel == 0x671D)
        #expect(parse(at671D, highest: 0x7FFF)?.payloadLength == 1)
        #expect(parse([0x7F, 0xFF, 0, 0], highest: 0x7FFF)?.channel == 0x7FFF)
        #expect(parse([0x80, 0x00, 0, 0], highest: 0x7FFF) == nil)
        #expect(parse([0x3F, 0xFF, 0, 0], highest: 0x7FFF) == nil)
        #expect(parse([0x67, 0x1D, 0x00, 0x02, 0xAA], highest: 0x7FFF) == nil, "length beyond the datagram")
        // A highest number below 0x4FFF never narrows RFC 8656's range.
        #expect(parse([0x4F, 0xFF, 0, 0], highest: 0)?.channel == 0x4FFF)
        #expect(parse([0x40, 0x00, 0, 0], highest: 0x4FFF)?.channel == 0x4000)
        #expect(parse(at671D, highest: 0x4FFF) == nil)
    }

    @Test func datagramKindWithRFC5766Channels() {
        for b in 0...255 {
            let strict = DatagramKind(firstByte: UInt8(b), rfc5766Channels: false)
            let wide = DatagramKind(firstByte: UInt8(b), rfc5766Channels: true)
            #expect(strict == DatagramKind(firstByte: UInt8(b)), "first byte \(b)")
            switch b {
            case 0...3: #expect(wide == .stun)
            case 0x40...0x7F: #expect(wide == .channelData, "first byte \(b)")
            default: #expect(wide == .other, "first byte \(b)")
            }
        }
    }

    @Test func datagramKindFromFirstByte() {
        for b in 0...255 {
            let kind = DatagramKind(firstByte: UInt8(b))
            switch b {
            case 0...3: #expect(kind == .stun)
            case 0x40...0x4F: #expect(kind == .channelData)
            default: #expect(kind == .other, "first byte \(b)")
            }
        }
    }
}
