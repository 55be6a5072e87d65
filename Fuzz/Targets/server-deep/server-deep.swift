import FuzzSupport
@testable import RelayCore
import STUN

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

/// The server in deep states, with mutations the authenticated handlers see.
///
/// Each input starts from `DeepState` (alice: dual-stack allocation, permissions, two channels;
/// bob: an allocation and a permission; every step checked). The input then chooses operations.
/// Requests are mutated BEFORE signing: the method's attributes are built from a template, the
/// input flips, truncates, extends, retypes, duplicates, drops and inserts attributes, and only
/// then are USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (or -SHA256, maybe FINGERPRINT) added with
/// the client's key and a fresh transaction ID, so MESSAGE-INTEGRITY holds and the handlers parse
/// the mutated attributes. Checked, besides `ServerDriver`'s checks after every call:
/// - a request signed with valid credentials (no credential attribute among the mutations) is
///   never answered 401; it is answered (an Allocate may wait for its sockets; a 438 for a nonce
///   gone stale may be over the source's challenge budget and dropped), and the
///   authenticated success/error counters move by exactly one (a 438 renews the nonce instead);
/// - a retransmission (same transaction ID) right after gets the same bytes back.
///
/// Operations (op byte & 15): 0-5 signed request (method, template, mutations, options);
/// 6 retransmit the last request; 7 Send indication; 8 ChannelData; 9 peer datagram to a relay
/// socket; 10 clock; 11 answer socket opens; 12 policy reload; 13 raw datagram; 14 a batch of
/// signed requests from both clients; 15 a fresh challenge.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var state = DeepState(seed: 1)
    var run = Run(state: state)
    var ops = 0
    while !input.isEmpty && ops < 64 {
        ops += 1
        let op = input.byte()
        switch op & 15 {
        case 0...5:
            let useBob = op & 0x10 != 0
            var client = useBob ? state.bob : state.alice
            run.signedRequest(&input, client: &client, options: op)
            if useBob { state.bob = client } else { state.alice = client }
        case 6:
            run.retransmit()
        case 7:
            let peer = input.pick(FuzzAddr.peers)
            let payload = input.chunk()
            // A Send indication carries no credentials (RFC 8656 §11.1).
            var storage = [UInt8](repeating: 0, count: 512)
            let n = storage.withUnsafeMutableBytes { buffer -> Int? in
                var w = STUNMessageWriter(into: buffer, type: STUNMessageType(method: .send, messageClass: .indication),
                                          transactionID: state.alice.freshTransactionID())
                w.appendXorAddress(.xorPeerAddress, peer)
                payload.withUnsafeBytes { w.append(.data, bytes: $0) }
                if op & 0x10 != 0 { w.appendEmpty(.dontFragment) }
                return w.finish()
            }
            if let n { run.driver.process([FuzzDatagram(Array(storage[0..<n]), from: op & 0x20 == 0 ? FuzzAddr.client : FuzzAddr.client2)]) }
        case 8:
            let channel = 0x4000 + UInt16(input.below(4))
            let payload = input.chunk()
            let frame = [UInt8(channel >> 8), UInt8(channel & 0xFF), UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)] + payload
            run.driver.process([FuzzDatagram(frame, from: op & 0x10 == 0 ? FuzzAddr.client : FuzzAddr.client2)])
        case 9:
            let handles = run.driver.knownHandles
            let peer = input.pick(FuzzAddr.peers)
            let handle = handles[input.below(handles.count)]
            run.driver.process([FuzzDatagram(input.chunk(), from: peer, on: handle)])
        case 10:
            run.advance(seconds: UInt64(input.byte()) * (op & 0x10 != 0 ? 8 : 1))
        case 11:
            let failing = input.byte()
            run.collectTokens(run.driver.answerOpens { failing & (1 << ($0 % 8)) != 0 })
        case 12:
            run.driver.reload(peerPolicy: op & 0x10 == 0 ? PeerPolicy() : PeerPolicy(deny: [CIDR("8.8.8.0/24")!]))
        case 13:
            let source = input.pick(FuzzAddr.sources)
            run.driver.process([FuzzDatagram(input.chunk(), from: source)])
        case 14:
            var batch: [FuzzDatagram] = []
            for i in 0..<(2 + input.below(5)) {
                var client = i & 1 == 0 ? state.alice : state.bob
                if let request = run.buildRequest(&input, client: &client, options: input.byte()) {
                    batch.append(FuzzDatagram(request.bytes, from: client.address))
                }
                if i & 1 == 0 { state.alice = client } else { state.bob = client }
            }
            run.collectTokens(run.driver.process(batch))
        default:
            if op & 0x10 == 0 { run.driver.challenge(&state.alice) } else { run.driver.challenge(&state.bob) }
        }
    }
    run.driver.checkInvariants()
    return 0
}

/// Authenticated responses: the four authenticated methods' successes and errors, less the 401s
/// and 438s (which answer requests that did not authenticate).
func authenticatedCount(_ s: ServerStatistics) -> Int {
    let r = s.responses
    return r.allocate.success + r.allocate.error + r.refresh.success + r.refresh.error
        + r.createPermission.success + r.createPermission.error + r.channelBind.success + r.channelBind.error
        - r.unauthorized401 - r.staleNonce438
}

/// Attribute types whose presence among the mutations means the credentials are no longer the
/// client's own (or the integrity no longer covers what follows).
let credentialTypes: Set<UInt16> = [0x0006, 0x0014, 0x0015, 0x001E, 0x001D, 0x8002, 0x0008, 0x001C, 0x8028]

/// Attribute types worth inserting (the server's known ones and a few others).
let insertableTypes: [UInt16] = [0x0001, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0016, 0x0017, 0x0018,
                                 0x0019, 0x001A, 0x0020, 0x0022, 0x8000, 0x8001, 0x8003, 0x8004, 0x8022, 0x8023,
                                 0x8032, 0x0002, 0x7FFF, 0xC000]

struct Run {
    let driver: ServerDriver
    var tokens: [UInt64] = []
    var last: (bytes: [UInt8], from: TransportAddress, response: [UInt8]?, at: Instant)?

    init(state: DeepState) { driver = state.driver }

    struct Request {
        var bytes: [UInt8]
        var method: STUNMethod
        var strict: Bool
    }

    /// The method's template attributes, mutated by the input, then signed.
    mutating func buildRequest(_ input: inout FuzzInput, client: inout ServerDriver.Client, options: UInt8) -> Request? {
        let method = input.pick([STUNMethod.allocate, .refresh, .createPermission, .channelBind, .refresh, .createPermission,
                                 .channelBind, STUNMethod(rawValue: 0x00A)])
        let template = input.byte()
        var storage = [UInt8](repeating: 0, count: 1024)
        let n = storage.withUnsafeMutableBytes { buffer -> Int? in
            var w = STUNMessageWriter(into: buffer, type: STUNMessageType(method: method, messageClass: .request),
                                      transactionID: client.freshTransactionID())
            switch method {
            case .allocate:
                if template & 1 == 0 { w.appendRequestedTransport(template & 0x80 == 0 ? 17 : 6) }
                if template & 2 != 0 { w.appendAddressFamily(.requestedAddressFamily, template & 4 == 0 ? .ipv4 : .ipv6) }
                if template & 8 != 0 { w.appendAddressFamily(.additionalAddressFamily, .ipv6) }
                if template & 0x10 != 0 { w.appendEvenPort(reserveNext: template & 0x20 != 0) }
                if template & 0x40 != 0, !tokens.isEmpty { w.appendUInt64(.reservationToken, tokens[Int(template) % tokens.count]) }
                if template & 0x04 != 0 { w.appendUInt32(.lifetime, UInt32(template) * 37) }
            case .refresh:
                if template & 1 == 0 { w.appendUInt32(.lifetime, template & 2 == 0 ? UInt32(template) * 20 : 0) }
                if template & 4 != 0 { w.appendAddressFamily(.requestedAddressFamily, template & 8 == 0 ? .ipv4 : .ipv6) }
            case .createPermission:
                for i in 0..<(Int(template & 3)) { w.appendXorAddress(.xorPeerAddress, FuzzAddr.peers[(Int(template >> 2) + i) % FuzzAddr.peers.count]) }
            case .channelBind:
                if template & 1 == 0 { w.appendChannelNumber(template & 2 == 0 ? 0x4000 + UInt16(template >> 4) : UInt16(template) << 8) }
                if template & 4 == 0 { w.appendXorAddress(.xorPeerAddress, FuzzAddr.peers[Int(template >> 3) % FuzzAddr.peers.count]) }
            default:
                break
            }
            return w.finish()
        }
        guard let n else { return nil }
        // The template as a list of attributes, to mutate.
        var attributes: [(type: UInt16, value: [UInt8])] = []
        Array(storage[0..<n]).withUnsafeBytes { raw in
            (try? STUNMessage.parse(raw))?.forEachAttribute { t, v in attributes.append((t.rawValue, Array(v))) }
        }
        var strict = true
        for _ in 0..<input.below(5) {
            let kind = input.byte()
            let i = attributes.isEmpty ? 0 : Int(input.byte()) % attributes.count
            switch kind % 8 {
            case 0 where !attributes.isEmpty && !attributes[i].value.isEmpty:
                let at = Int(input.byte()) % attributes[i].value.count
                attributes[i].value[at] ^= input.byte() | 1
            case 1 where !attributes.isEmpty:
                attributes[i].value = Array(attributes[i].value.prefix(input.below(attributes[i].value.count + 1)))
            case 2 where !attributes.isEmpty:
                attributes[i].value += input.take(input.below(9))
            case 3 where !attributes.isEmpty:
                attributes[i].type = input.pick(insertableTypes)
            case 4 where !attributes.isEmpty:
                attributes.insert(attributes[i], at: input.below(attributes.count + 1))
            case 5 where !attributes.isEmpty:
                attributes.remove(at: i)
            case 6:
                let type = kind & 0x80 == 0 ? input.pick(insertableTypes) : input.uint16()
                attributes.insert((type, input.chunk(max: 40)), at: attributes.isEmpty ? 0 : input.below(attributes.count + 1))
            case 7 where attributes.count > 1:
                attributes.swapAt(i, input.below(attributes.count))
            default:
                break
            }
        }
        if attributes.contains(where: { credentialTypes.contains($0.type) }) { strict = false }
        guard let bytes = (driver.signed(method, by: &client, sha256: options & 0x20 != 0, fingerprint: options & 0x40 != 0) { w in
            for a in attributes { a.value.withUnsafeBytes { w.append(AttributeType(rawValue: a.type), bytes: $0) } }
        }) else { return nil }
        if method.rawValue == 0x00A { strict = false }
        return Request(bytes: bytes, method: method, strict: strict)
    }

    mutating func signedRequest(_ input: inout FuzzInput, client: inout ServerDriver.Client, options: UInt8) {
        guard let request = buildRequest(&input, client: &client, options: options) else { return }
        let before = authenticatedCount(driver.server.statistics)
        let limitedBefore = driver.server.statistics.drops.challengeRateLimited
        let sent = driver.process([FuzzDatagram(request.bytes, from: client.address)])
        collectTokens(sent)
        let responses = sent.filter { $0.socket.isListener && $0.destination == client.address && isResponse($0.bytes) }
        let after = authenticatedCount(driver.server.statistics)
        last = (request.bytes, client.address, responses.first?.bytes, driver.now)
        guard request.strict else { return }
        guard let response = responses.first else {
            // A stale nonce (the clock moved past its 600 s) is answered 438, and a 438 over the
            // source's challenge budget (10 a second) is not sent at all: by design.
            if driver.server.statistics.drops.challengeRateLimited > limitedBefore { return }
            fuzzCheck(request.method == .allocate, "no response to a signed \(request.method) request "
                      + "\(request.bytes.map { String($0, radix: 16) }); sent \(sent.map { ($0.destination, $0.socket.raw, $0.bytes.count) }); "
                      + "drops \(driver.server.statistics.drops)")
            return
        }
        let code = ServerDriver.errorCode(in: response.bytes)
        fuzzCheck(code != 401, "a request signed with valid credentials answered 401")
        if code == 438 {
            if let nonce = ServerDriver.nonce(in: response.bytes) { client.nonce = nonce }
            last = nil
            return
        }
        fuzzCheck(after == before + 1, "authenticated counters moved by \(after - before) for \(request.method) answered \(code ?? 200)")
    }

    mutating func retransmit() {
        guard let last else { return }
        let sent = driver.process([FuzzDatagram(last.bytes, from: last.from)])
        guard let earlier = last.response, driver.now == last.at else { return }
        let responses = sent.filter { $0.socket.isListener && isResponse($0.bytes) }
        fuzzCheck(responses.count == 1 && responses[0].bytes == earlier, "a retransmission got another answer")
    }

    mutating func advance(seconds: UInt64) {
        driver.advance(seconds: seconds)
    }

    mutating func collectTokens(_ sent: [FuzzSent]) {
        for s in sent where s.socket.isListener {
            s.bytes.withUnsafeBytes { raw in
                if let token = (try? STUNMessage.parse(raw)).flatMap({ try? $0.reservationToken() }), !tokens.contains(token) {
                    tokens.append(token)
                }
            }
        }
    }
}

func isResponse(_ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { raw in
        guard let m = try? STUNMessage.parse(raw) else { return false }
        return m.type.messageClass == .successResponse || m.type.messageClass == .errorResponse
    }
}
