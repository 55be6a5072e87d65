import STUN

/// Bytes from whitespace-separated hex, as the RFCs print them. Traps on a typo in a test literal.
func hex(_ text: String) -> [UInt8] {
    text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { part in
        guard let b = UInt8(part, radix: 16) else { fatalError("bad hex literal \(part)") }
        return b
    }
}

/// Parses `bytes` and hands the message to `body` while the bytes are alive.
func parsed<T>(_ bytes: [UInt8], _ body: (STUNMessage) throws -> T) throws -> T {
    try bytes.withUnsafeBytes { raw in try body(try STUNMessage.parse(raw)) }
}

/// The parse error for `bytes`, or nil when they parse.
func parseError(_ bytes: [UInt8]) -> STUNParseError? {
    bytes.withUnsafeBytes { raw in
        do throws(STUNParseError) {
            _ = try STUNMessage.parse(raw)
            return nil
        } catch {
            return error
        }
    }
}

/// Encodes a message with `STUNMessageWriter` into a fresh buffer of `capacity` bytes.
func encode(_ type: STUNMessageType, _ id: TransactionID, capacity: Int = 1500,
            _ build: (inout STUNMessageWriter) -> Void) -> [UInt8]? {
    var storage = [UInt8](repeating: 0xEE, count: capacity)
    let n: Int? = storage.withUnsafeMutableBytes { buffer in
        var w = STUNMessageWriter(into: buffer, type: type, transactionID: id)
        build(&w)
        return w.finish()
    }
    guard let n else { return nil }
    return Array(storage[0..<n])
}

/// A message header followed by the given raw attribute bytes, with the length field set.
func message(type: UInt16 = 0x0001, id: [UInt8] = Array(repeating: 0xAB, count: 12), attributes: [UInt8]) -> [UInt8] {
    let n = attributes.count
    return [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(n >> 8), UInt8(n & 0xFF), 0x21, 0x12, 0xA4, 0x42] + id + attributes
}

/// One attribute TLV with zero padding.
func tlv(_ type: UInt16, _ value: [UInt8]) -> [UInt8] {
    let padding = (4 - value.count % 4) % 4
    return [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)]
        + value + Array(repeating: 0, count: padding)
}

let bindingRequest = STUNMessageType(method: .binding, messageClass: .request)
let bindingSuccess = STUNMessageType(method: .binding, messageClass: .successResponse)
