import FuzzSupport
import STUN

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

/// Parse → encode → parse is stable.
///
/// Arbitrary bytes are parsed; whatever parses has every accessor read, and is then written again
/// with `STUNMessageWriter`, attribute by attribute (the attributes that count, RFC 8489
/// §14.5-§14.7), and parsed again:
/// - the second parse succeeds, with the same type (and the same 16-bit type field), transaction
///   ID and attributes (types and values, in order), the same integrity attributes present;
/// - encoding the second parse gives the same bytes again (the writer is a fixed point);
/// - every typed accessor decodes the same value from both; and every value that decodes, written
///   again with its typed writer (`appendXorAddress`, `appendErrorCode`, ...), decodes to itself.
/// ChannelData.parse and DatagramKind run on the same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    _ = ChannelData.parse(input)
    if let first = input.first { _ = DatagramKind(firstByte: first) }
    guard let m = try? STUNMessage.parse(input) else { return 0 }
    _ = exerciseAccessors(m)
    fuzzCheck(m.type.rawValue == UInt16(input[0]) << 8 | UInt16(input[1]), "type field \(m.type) does not encode back")
    fuzzCheck(m.bytes.count == size, "parse kept \(m.bytes.count) of \(size) bytes")

    let first = reencode(m)
    first.withUnsafeBytes { raw in
        guard let again = try? STUNMessage.parse(raw) else { fuzzCheck(false, "re-encoded message does not parse"); return }
        fuzzCheck(again.type == m.type && again.transactionID == m.transactionID, "type or transaction ID changed")
        fuzzCheck(attributes(again) == attributes(m), "attributes changed: \(attributes(m).map(\.0)) -> \(attributes(again).map(\.0))")
        fuzzCheck(again.hasMessageIntegrity == m.hasMessageIntegrity && again.hasMessageIntegritySHA256 == m.hasMessageIntegritySHA256
                  && again.hasFingerprint == m.hasFingerprint, "integrity attributes changed")
        fuzzCheck(reencode(again) == first, "encoding is not a fixed point")
        compareTyped(m, again)
        typedRoundTrip(again)
    }
    return 0
}

/// The attributes that count, as (type, value).
func attributes(_ m: STUNMessage) -> [(UInt16, [UInt8])] {
    var out: [(UInt16, [UInt8])] = []
    m.forEachAttribute { t, v in out.append((t.rawValue, Array(v))) }
    return out
}

func == (a: [(UInt16, [UInt8])], b: [(UInt16, [UInt8])]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
}

func reencode(_ m: STUNMessage) -> [UInt8] {
    var storage = [UInt8](repeating: 0xAA, count: m.bytes.count + 4)
    let n = storage.withUnsafeMutableBytes { buffer -> Int? in
        var w = STUNMessageWriter(into: buffer, type: m.type, transactionID: m.transactionID)
        m.forEachAttribute { t, v in w.append(t, bytes: v) }
        return w.finish()
    }
    guard let n else { fuzzCheck(false, "re-encoding overflowed \(m.bytes.count + 4) bytes"); return [] }
    fuzzCheck(n <= m.bytes.count, "re-encoding grew from \(m.bytes.count) to \(n) bytes")
    return Array(storage[0..<n])
}

/// The typed accessors as comparable text ("-" absent, "!" malformed).
func typedValues(_ m: STUNMessage) -> [String] {
    func show<T>(_ f: () throws -> T?) -> String {
        do { return try f().map { "\($0)" } ?? "-" } catch { return "!" }
    }
    return [
        show { try m.username() }, show { try m.realm() }, show { try m.nonce() }, show { try m.software() },
        show { try m.userhash().map { Array($0) } }, show { try m.xorMappedAddress() }, show { try m.mappedAddress() },
        show { try m.alternateServer() }, show { try m.xorPeerAddresses() }, show { try m.xorRelayedAddresses() },
        show { try m.lifetime() }, show { try m.channelNumber() }, show { try m.requestedTransport() },
        show { try m.requestedAddressFamily() }, show { try m.additionalAddressFamily() },
        show { try m.draftAdditionalAddressFamily() }, show { try m.evenPort() }, show { try m.reservationToken() },
        show { try m.errorCode() }, show { try m.passwordAlgorithm().map { ($0.algorithm, Array($0.parameters)) } },
        show { try m.passwordAlgorithms() }, show { try m.addressErrorCode() }, show { try m.unknownAttributes() },
        show { try m.icmp() }, show { m.data().map { Array($0) } }, "\(m.hasDontFragment)",
        "\(m.unknownComprehensionRequired(known: { _ in false }))",
    ]
}

func compareTyped(_ a: STUNMessage, _ b: STUNMessage) {
    let x = typedValues(a), y = typedValues(b)
    fuzzCheck(x == y, "typed values changed: \(x) -> \(y)")
}

/// Each decodable value, written with its typed writer into a fresh message, decodes to itself.
func typedRoundTrip(_ m: STUNMessage) {
    var storage = [UInt8](repeating: 0, count: 4096)
    storage.withUnsafeMutableBytes { buffer in
        var w = STUNMessageWriter(into: buffer, type: m.type, transactionID: m.transactionID)
        for (type, text) in [(AttributeType.username, try? m.username()), (.realm, try? m.realm()),
                             (.nonce, try? m.nonce()), (.software, try? m.software())] {
            if let text = text ?? nil { w.append(type, string: text) }
        }
        if let a = try? m.xorMappedAddress() { w.appendXorAddress(.xorMappedAddress, a) }
        if let a = try? m.mappedAddress() { w.appendMappedAddress(a) }
        if let peers = try? m.xorPeerAddresses() { for p in peers { w.appendXorAddress(.xorPeerAddress, p) } }
        if let relays = try? m.xorRelayedAddresses() { for r in relays { w.appendXorAddress(.xorRelayedAddress, r) } }
        if let l = try? m.lifetime() { w.appendUInt32(.lifetime, l) }
        if let c = try? m.channelNumber() { w.appendChannelNumber(c) }
        if let t = try? m.requestedTransport() { w.appendRequestedTransport(t) }
        if let f = try? m.requestedAddressFamily() { w.appendAddressFamily(.requestedAddressFamily, f) }
        if let f = try? m.additionalAddressFamily() { w.appendAddressFamily(.additionalAddressFamily, f) }
        if let e = try? m.evenPort() { w.appendEvenPort(reserveNext: e.reserveNext) }
        if let t = try? m.reservationToken() { w.appendUInt64(.reservationToken, t) }
        if let e = try? m.errorCode() { w.appendErrorCode(e.code, reason: e.reason) }
        if let e = try? m.addressErrorCode() { w.appendAddressErrorCode(family: e.family, code: e.code, reason: e.reason) }
        if let u = try? m.unknownAttributes(), !u.isEmpty { w.appendUnknownAttributes(u) }
        if let i = try? m.icmp() { w.appendICMP(type: i.type, code: i.code, errorData: i.errorData) }
        guard let n = w.finish() else { return }
        guard let back = try? STUNMessage.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) else {
            fuzzCheck(false, "typed re-encoding does not parse")
            return
        }
        func same<T: Equatable>(_ name: String, _ a: () throws -> T?, _ b: () throws -> T?) {
            guard let x = (try? a()) ?? nil else { return }
            let y = (try? b()) ?? nil
            fuzzCheck(y == x, "\(name): \(x) re-encoded decodes as \(String(describing: y))")
        }
        same("username", { try m.username() }, { try back.username() })
        same("realm", { try m.realm() }, { try back.realm() })
        same("nonce", { try m.nonce() }, { try back.nonce() })
        same("software", { try m.software() }, { try back.software() })
        same("xor-mapped", { try m.xorMappedAddress() }, { try back.xorMappedAddress() })
        same("mapped", { try m.mappedAddress() }, { try back.mappedAddress() })
        same("xor-peer", { try m.xorPeerAddresses() }, { try back.xorPeerAddresses() })
        same("xor-relayed", { try m.xorRelayedAddresses() }, { try back.xorRelayedAddresses() })
        same("lifetime", { try m.lifetime() }, { try back.lifetime() })
        same("channel", { try m.channelNumber() }, { try back.channelNumber() })
        same("transport", { try m.requestedTransport() }, { try back.requestedTransport() })
        same("requested family", { try m.requestedAddressFamily() }, { try back.requestedAddressFamily() })
        same("additional family", { try m.additionalAddressFamily() }, { try back.additionalAddressFamily() })
        same("even port", { try m.evenPort() }, { try back.evenPort() })
        same("token", { try m.reservationToken() }, { try back.reservationToken() })
        same("error code", { try m.errorCode().map { "\($0)" } }, { try back.errorCode().map { "\($0)" } })
        same("address error code", { try m.addressErrorCode().map { "\($0)" } }, { try back.addressErrorCode().map { "\($0)" } })
        same("unknown attributes", { try m.unknownAttributes() }, { try back.unknownAttributes() })
        same("icmp", { try m.icmp().map { "\($0)" } }, { try back.icmp().map { "\($0)" } })
    }
}
