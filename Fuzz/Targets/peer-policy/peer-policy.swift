import FuzzSupport
import RelayCore
import STUN

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

/// The peer policy against a reference written here over byte arrays (RFC 4291 §2.5.5, RFC 6052
/// §2.1, RFC 8215, RFC 3056 §2 and `PeerPolicy`'s documented decision order):
/// - `canonicalize` extracts the same embedded IPv4 address (mapped, translated, compatible,
///   NAT64 well-known and local-use /96, 6to4) and leaves everything else alone;
/// - `CIDR.contains` agrees with a bit-by-bit prefix comparison; `CIDR(text)` round-trips through
///   `description`; host bits are cleared;
/// - `evaluate` and `reachesThisHost` agree with the reference decision order for operator allow
///   and deny lists and relay addresses chosen by the input;
/// - address text (input bytes as UTF-8) that parses prints as text that parses to the same address.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let mode = input.byte()
    if mode == 0xFF {
        // Text parsers.
        let text = String(decoding: input.rest(), as: UTF8.self)
        if let ip = IPAddress(text) {
            let again = IPAddress(ip.description)
            fuzzCheck(again == ip, "\(text) -> \(ip) -> \(String(describing: again))")
        }
        if let cidr = CIDR(text) {
            let again = CIDR(cidr.description)
            fuzzCheck(again == cidr, "CIDR \(text) -> \(cidr) -> \(String(describing: again))")
        }
        if let t = TransportAddress(text) {
            fuzzCheck(TransportAddress(t.description) == t, "transport address \(text) -> \(t)")
        }
        return 0
    }
    var allow: [CIDR] = [], deny: [CIDR] = [], relays: [IPAddress] = []
    for _ in 0..<(mode & 3) { allow.append(cidr(&input)) }
    for _ in 0..<((mode >> 2) & 3) { deny.append(cidr(&input)) }
    for _ in 0..<((mode >> 4) & 3) { relays.append(address(&input)) }
    let policy = PeerPolicy(allow: allow, deny: deny, relayAddresses: relays)
    for _ in 0..<8 where !input.isEmpty {
        let ip = address(&input)
        let canonical = PeerPolicy.canonicalize(ip)
        let expected = referenceCanonical(ip)
        fuzzCheck(canonical == expected, "canonicalize(\(ip)) = \(canonical), reference \(expected)")
        fuzzCheck(PeerPolicy.canonicalize(canonical) == canonical || canonical != ip,
                  "canonicalize is not idempotent on \(ip)")
        for c in allow + deny + PeerPolicy.defaultDenied {
            fuzzCheck(c.contains(ip) == referenceContains(c, ip), "\(c).contains(\(ip)) = \(c.contains(ip))")
        }
        let decision = policy.evaluate(ip)
        let reference = referenceEvaluate(ip, allow: allow, deny: deny, relays: relays)
        fuzzCheck(decision == reference, "evaluate(\(ip)) = \(decision), reference \(reference) (allow \(allow), deny \(deny), relays \(relays))")
        let local = policy.reachesThisHost(ip)
        let c = referenceCanonical(ip)
        let expectedLocal = relays.contains { referenceCanonical($0) == c }
            || [CIDR("127.0.0.0/8")!, CIDR("0.0.0.0/8")!, CIDR("::/128")!, CIDR("::1/128")!].contains { referenceContains($0, c) }
        fuzzCheck(local == expectedLocal, "reachesThisHost(\(ip)) = \(local)")
    }
    return 0
}

/// An address: IPv4, or IPv6 drawn mostly from the embedding prefixes so the interesting forms
/// are reached.
func address(_ input: inout FuzzInput) -> IPAddress {
    let kind = input.byte()
    switch kind % 10 {
    case 0, 1: return .v4(IPv4Address(input.uint32()))
    case 2: return .v6(IPv6Address(high: 0, low: 0x0000_FFFF_0000_0000 | UInt64(input.uint32())))
    case 3: return .v6(IPv6Address(high: 0, low: 0xFFFF_0000_0000_0000 | UInt64(input.uint32())))
    case 4: return .v6(IPv6Address(high: 0, low: UInt64(input.uint32()) >> (kind & 0x10 == 0 ? 0 : 24)))
    case 5: return .v6(IPv6Address(high: 0x0064_FF9B_0000_0000 | (kind & 0x10 == 0 ? 0 : 0x1_0000), low: UInt64(input.uint32())))
    case 6: return .v6(IPv6Address(high: 0x2002_0000_0000_0000 | UInt64(input.uint32()) << 16 | UInt64(input.uint16()), low: input.uint64()))
    default: return .v6(IPv6Address(high: input.uint64(), low: input.uint64()))
    }
}

func cidr(_ input: inout FuzzInput) -> CIDR {
    let length = Int(input.byte())
    let ip = address(&input)
    return CIDR(address: ip, prefixLength: ip.family == .ipv4 ? length % 40 - 4 : length % 136 - 4)
}

func bits(_ ip: IPAddress) -> [Bool] {
    switch ip {
    case .v4(let a): return (0..<32).map { a.value >> (31 - UInt32($0)) & 1 == 1 }
    case .v6(let a): return (0..<64).map { a.high >> (63 - UInt64($0)) & 1 == 1 } + (0..<64).map { a.low >> (63 - UInt64($0)) & 1 == 1 }
    }
}

func referenceContains(_ c: CIDR, _ ip: IPAddress) -> Bool {
    guard c.network.family == ip.family else { return false }
    let n = bits(c.network), a = bits(ip)
    // The stored network has its host bits cleared.
    fuzzCheck(n[c.prefixLength...].allSatisfy { !$0 }, "\(c) keeps host bits")
    return n[0..<c.prefixLength] == a[0..<c.prefixLength]
}

func bytes16(_ a: IPv6Address) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: a.high >> (56 - 8 * UInt64($0))) } + (0..<8).map { UInt8(truncatingIfNeeded: a.low >> (56 - 8 * UInt64($0))) }
}

func v4(_ b: ArraySlice<UInt8>) -> IPAddress {
    let b = Array(b)
    return .v4(IPv4Address(b[0], b[1], b[2], b[3]))
}

func referenceCanonical(_ ip: IPAddress) -> IPAddress {
    guard case .v6(let a) = ip else { return ip }
    let b = bytes16(a)
    let zeros = { (r: Range<Int>) in b[r].allSatisfy { $0 == 0 } }
    if zeros(0..<10) && b[10] == 0xFF && b[11] == 0xFF { return v4(b[12..<16]) }                 // ::ffff:0:0/96
    if zeros(0..<8) && b[8] == 0xFF && b[9] == 0xFF && zeros(10..<12) { return v4(b[12..<16]) }  // ::ffff:0:0:0/96
    if zeros(0..<12) && !(zeros(12..<15) && b[15] <= 1) { return v4(b[12..<16]) }               // ::/96 but :: and ::1
    if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B && zeros(8..<12)
        && ((b[4] == 0 && b[5] == 0) || (b[4] == 0 && b[5] == 1)) && zeros(6..<8) { return v4(b[12..<16]) }
    if b[0] == 0x20 && b[1] == 0x02 { return v4(b[2..<6]) }                                       // 6to4
    return ip
}

func referenceEvaluate(_ ip: IPAddress, allow: [CIDR], deny: [CIDR], relays: [IPAddress]) -> PeerDecision {
    let c = referenceCanonical(ip)
    let denied = deny.contains { referenceContains($0, c) || referenceContains($0, ip) }
    if relays.contains(where: { referenceCanonical($0) == c }) {
        return !denied && allow.contains { referenceContains($0, c) } ? .allowed : .relaySelf
    }
    if denied { return .denied }
    if allow.contains(where: { referenceContains($0, c) }) { return .allowed }
    if PeerPolicy.defaultDenied.contains(where: { referenceContains($0, c) }) { return .denied }
    return .allowed
}
