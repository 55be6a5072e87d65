import Crypto
import STUN

/// An error response, thrown by a handler. `respond(to:from:error:signer:now:out:)` turns it into
/// bytes: the one place that adds REALM/NONCE to a challenge and signs.
struct RequestError: Error {
    var code: STUNErrorCode
    /// 420: UNKNOWN-ATTRIBUTES (RFC 8489 §14.9).
    var unknownAttributes: [AttributeType] = []
    /// 401 and 438 carry REALM and a fresh NONCE (RFC 8489 §9.2.4), and are rate-limited per source.
    var isChallenge = false
    /// 300: ALTERNATE-SERVER (RFC 8489 §14.15).
    var alternateServer: TransportAddress?

    static let badRequest = RequestError(code: .badRequest)
    static let unauthenticated = RequestError(code: .unauthenticated, isChallenge: true)
    static let staleNonce = RequestError(code: .staleNonce, isChallenge: true)
    static let forbidden = RequestError(code: .forbidden)
    static let allocationMismatch = RequestError(code: .allocationMismatch)
    static let addressFamilyNotSupported = RequestError(code: .addressFamilyNotSupported)
    static let wrongCredentials = RequestError(code: .wrongCredentials)
    static let unsupportedTransport = RequestError(code: .unsupportedTransportProtocol)
    static let peerAddressFamilyMismatch = RequestError(code: .peerAddressFamilyMismatch)
    static let allocationQuotaReached = RequestError(code: .allocationQuotaReached)
    static let insufficientCapacity = RequestError(code: .insufficientCapacity)
    static let connectionAlreadyExists = RequestError(code: .connectionAlreadyExists)

    static func unknownAttributes(_ types: [AttributeType]) -> RequestError {
        RequestError(code: .unknownAttribute, unknownAttributes: types)
    }

    static func tryAlternate(_ server: TransportAddress) -> RequestError {
        RequestError(code: .tryAlternate, alternateServer: server)
    }
}

/// How to sign a response: RFC 8489 §9.2.4, "the server ... MUST include a MESSAGE-INTEGRITY or
/// MESSAGE-INTEGRITY-SHA256 attribute (the same one as in the request), using the same key";
/// FINGERPRINT when the request carried one.
struct ResponseSigner {
    /// HMAC states of the long-term key (RFC 8489 §9.2.2), never the password: the ones that
    /// verified the request.
    enum Integrity {
        case sha1(HMACState<Insecure.SHA1>)
        case sha256(HMACState<SHA256>)
    }
    var integrity: Integrity
    var fingerprint: Bool

    init(integrity: Integrity, fingerprint: Bool) {
        self.integrity = integrity
        self.fingerprint = fingerprint
    }

    /// MESSAGE-INTEGRITY (HMAC-SHA1) with `key` (the table tests build pending Allocates with it).
    init(sha1Key key: [UInt8], fingerprint: Bool = false) {
        self.init(integrity: .sha1(HMACState<Insecure.SHA1>(key: key)), fingerprint: fingerprint)
    }

    func sign(_ writer: inout STUNMessageWriter) {
        switch integrity {
        case .sha1(let key): writer.appendMessageIntegrity(key: key)
        case .sha256(let key): writer.appendMessageIntegritySHA256(key: key)
        }
        if fingerprint { writer.appendFingerprint() }
    }
}

extension Server {
    /// Sends the error response for `error`. Challenges (401/438) beyond the per-source limit are
    /// dropped: a spoofed flood gets no amplification and leaves no state.
    ///
    /// `signer` is the authenticated request's; without one (the request did not authenticate),
    /// the response is signed with a key the request's own MESSAGE-INTEGRITY proves the client
    /// holds (`keyProvenByRequest`), and kept small (`unauthenticatedBudget`).
    func respond(to message: STUNMessage, from client: ClientSocket, error: RequestError, signer: ResponseSigner?,
                 now: Instant, out: OutboundBatch) {
        // Over a stream connection the client's address was proven by the TCP handshake: nothing
        // can be reflected to a spoofed address, so the limiter (whose purpose that is) does not
        // apply; clients over TCP/TLS also never retransmit (RFC 8489 §6.2.2), so a dropped
        // challenge would leave one waiting for good (50 clients behind one address, say).
        if error.isChallenge && !client.isStream {
            guard challengeLimiter.allow(source: client.address.ip, nowNanoseconds: now.nanoseconds) else {
                statistics.drops.challengeRateLimited &+= 1
                return
            }
        }
        let authenticated = signer != nil
        let signer = signer ?? keyProvenByRequest(message, now: now)
        let type = STUNMessageType(method: message.type.method, messageClass: .errorResponse)
        // Unauthenticated answers shrink until they fit the budget: first the reason phrase goes,
        // then the nonce cookie with PASSWORD-ALGORITHMS, then REALM and NONCE themselves.
        let budget = authenticated ? Int.max : Self.unauthenticatedBudget(requestLength: message.bytes.count)
        // Minted once: the full and lean forms carry the same nonce (an HMAC each time otherwise).
        var cookieNonce: String?
        for form in ChallengeForm.allCases {
            let sent = encode(type: type, transactionID: message.transactionID, to: client, signer: signer,
                              fingerprint: message.hasFingerprint, cache: authenticated,
                              maxLength: form == .bare ? nil : budget, now: now, out: out) { writer in
                writer.appendErrorCode(error.code.code, reason: form == .full ? error.code.reason : "")
                if !error.unknownAttributes.isEmpty { writer.appendUnknownAttributes(error.unknownAttributes) }
                if let alternate = error.alternateServer { writer.appendPlainAddress(.alternateServer, alternate) }
                guard error.isChallenge else { return }
                switch form {
                case .full, .lean:
                    // RFC 8489 §9.2.4: "The server MUST include a REALM value ... MUST include a
                    // NONCE" and, with the nonce cookie's security feature bit, "PASSWORD-ALGORITHMS".
                    writer.append(.realm, string: configuration.realm)
                    let nonce = cookieNonce ?? nonces.mint(for: client.address, nowUnixSeconds: now.unixSeconds)
                    cookieNonce = nonce
                    writer.append(.nonce, string: nonce)
                    if nonces.advertisesPasswordAlgorithms {
                        writer.appendPasswordAlgorithms(Self.advertisedPasswordAlgorithms)
                    }
                case .compact:
                    // A nonce without the cookie offers no security features, so no
                    // PASSWORD-ALGORITHMS: the client goes on with MD5 keys (RFC 8489 §9.2.4).
                    writer.append(.realm, string: configuration.realm)
                    writer.append(.nonce, string: nonces.mintCompact(for: client.address, nowUnixSeconds: now.unixSeconds))
                case .bare:
                    // Too small a request to be a real one (a header-only Allocate is 20 bytes):
                    // the error code alone, with nothing to amplify.
                    statistics.responses.bareChallenges &+= 1
                }
            }
            if sent {
                statistics.responses.count(errorCode: error.code.code)
                statistics.responses.count(method: message.type.method, success: false, transport: client.transport)
                return
            }
        }
    }

    /// How much of a challenge fits (see `respond`).
    enum ChallengeForm: CaseIterable {
        /// Reason phrase, REALM, NONCE with the cookie, PASSWORD-ALGORITHMS.
        case full
        /// The same without the reason phrase ("The reason phrase is meant for diagnostic
        /// purposes", RFC 8489 §14.8; an empty one is fewer than 128 characters).
        case lean
        /// REALM and a compact NONCE (no cookie, no security features, no PASSWORD-ALGORITHMS).
        case compact
        /// ERROR-CODE only.
        case bare
    }

    /// An answer to a request that did not authenticate is at most 3× the request's size
    /// (hardening: a spoofed source must not turn the relay into an amplifier), never less than a
    /// header with an ERROR-CODE and FINGERPRINT.
    static func unauthenticatedBudget(requestLength: Int) -> Int { max(3 * requestLength, 20 + 8 + 8) }

    /// The signer for an error answer to a request that did not authenticate: the long-term key
    /// of the request's USERNAME that verifies the request's own MESSAGE-INTEGRITY(-SHA256), if
    /// one does. The request is then genuine but lacked a NONCE or carried a stale one; Firezone's
    /// clients (connlib `check_message_integrity`) ignore every non-Binding response without a
    /// valid MESSAGE-INTEGRITY, so its 401 and 438 must be signed (RFC 8489 allows it; other
    /// clients ignore it). An expired time-limited username still names its key (the client
    /// computed its MESSAGE-INTEGRITY with it), so the 401 telling it so is signed too. A request
    /// whose integrity no key verifies gets no signature: the server never hands out an HMAC under
    /// a key the sender has not shown it holds (that would let anyone who knows a username test
    /// password guesses offline).
    func keyProvenByRequest(_ message: STUNMessage, now: Instant) -> ResponseSigner? {
        guard message.type.method != .binding, message.hasMessageIntegrity || message.hasMessageIntegritySHA256,
              let username = (try? message.username()) ?? nil else { return nil }
        let sha256 = message.hasMessageIntegritySHA256
        var algorithm = PasswordAlgorithm.md5
        if let chosen = (try? message.passwordAlgorithm()) ?? nil {
            guard let known = PasswordAlgorithm(rawValue: chosen.algorithm) else { return nil }
            algorithm = known
        }
        if let cached = credentialKeys.lookup(username: username, algorithm: algorithm, sha256: sha256),
           Self.verify(message, cached.integrity) {
            return ResponseSigner(integrity: cached.integrity, fingerprint: message.hasFingerprint)
        }
        guard case .passwords(let passwords) = configuration.credentials.lookup(username: username, nowUnixSeconds: 0) else {
            return nil
        }
        for password in passwords {
            let key = longTermKey(username: username, realm: configuration.realm, password: password, algorithm: algorithm)
            let integrity: ResponseSigner.Integrity = sha256
                ? .sha256(HMACState<SHA256>(key: key)) : .sha1(HMACState<Insecure.SHA1>(key: key))
            if Self.verify(message, integrity) { return ResponseSigner(integrity: integrity, fingerprint: message.hasFingerprint) }
        }
        return nil
    }

    func sendSuccess(to message: STUNMessage, from client: ClientSocket, signer: ResponseSigner?, now: Instant,
                     out: OutboundBatch, _ body: (inout STUNMessageWriter) -> Void) {
        statistics.responses.success &+= 1
        statistics.responses.count(method: message.type.method, success: true, transport: client.transport)
        let type = STUNMessageType(method: message.type.method, messageClass: .successResponse)
        encode(type: type, transactionID: message.transactionID, to: client, signer: signer,
               fingerprint: message.hasFingerprint, now: now, out: out, body)
    }

    /// RFC 8656 §7.2: "The success response contains: An XOR-RELAYED-ADDRESS attribute ... or two
    /// ... A LIFETIME attribute ... A RESERVATION-TOKEN attribute (if a second relayed transport
    /// address was reserved). An XOR-MAPPED-ADDRESS attribute", plus ADDRESS-ERROR-CODE for a
    /// partial dual-stack success (§7.2 step 9).
    func sendAllocateSuccess(_ id: AllocationID, transactionID: TransactionID, signer: ResponseSigner, lifetime: UInt32,
                             reservationToken: UInt64?, addressError: (family: AddressFamily, code: Int)?,
                             now: Instant, out: OutboundBatch) {
        guard let allocation = allocations.allocation(id) else { return }
        statistics.responses.success &+= 1
        statistics.responses.allocate.success &+= 1
        statistics.responses.byTransport[allocation.client.transport.rawValue].success &+= 1
        let type = STUNMessageType(method: .allocate, messageClass: .successResponse)
        encode(type: type, transactionID: transactionID, to: allocation.client, signer: signer,
               fingerprint: signer.fingerprint, now: now, out: out) { writer in
            for relay in allocation.relays {
                guard let ip = configuration.relayAddress(relay.family) else { continue }
                writer.appendXorAddress(.xorRelayedAddress, TransportAddress(ip: ip, port: relay.port))
            }
            writer.appendUInt32(.lifetime, lifetime)
            if let reservationToken { writer.appendUInt64(.reservationToken, reservationToken) }
            writer.appendXorAddress(.xorMappedAddress, allocation.client.address)
            if let addressError {
                let reason = STUNErrorCode(code: addressError.code)?.reason ?? ""
                writer.appendAddressErrorCode(family: addressError.family, code: addressError.code, reason: reason)
            }
        }
    }

    /// Encodes a response into the batch's arena and sends it from the listener of the client's
    /// family. Responses to authenticated requests are remembered for retransmissions (`cache`,
    /// by default whenever there is a signer). False, with nothing sent, when the response would
    /// be longer than `maxLength` or there is no room.
    @discardableResult
    func encode(type: STUNMessageType, transactionID: TransactionID, to client: ClientSocket, signer: ResponseSigner?,
                fingerprint: Bool, cache: Bool? = nil, maxLength: Int? = nil, now: Instant, out: OutboundBatch,
                _ body: (inout STUNMessageWriter) -> Void) -> Bool {
        guard let space = out.arenaSpace(maxBytes: TransactionCache.maxResponseBytes) else {
            statistics.drops.outputFull &+= 1
            return true
        }
        var writer = STUNMessageWriter(into: space, type: type, transactionID: transactionID)
        body(&writer)
        if let software = configuration.software, signer != nil || configuration.softwareInUnauthenticatedResponses {
            writer.append(.software, string: software)
        }
        if let signer {
            signer.sign(&writer)
        } else if fingerprint {
            writer.appendFingerprint()
        }
        guard let length = writer.finish(), let base = space.baseAddress else {
            statistics.drops.outputFull &+= 1
            return true
        }
        if let maxLength, length > maxLength { return false }
        out.commitArena(socket: client.via, destination: client.address, length: length)
        if cache ?? (signer != nil) {
            transactions.insert(TransactionKey(client: client, transactionID: transactionID),
                                response: UnsafeRawBufferPointer(start: base, count: length), now: now)
        }
        return true
    }

    func sendCached(_ bytes: [UInt8], to client: ClientSocket, out: OutboundBatch) {
        guard let space = out.arenaSpace(maxBytes: bytes.count), let base = space.baseAddress else {
            statistics.drops.outputFull &+= 1
            return
        }
        bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        out.commitArena(socket: client.via, destination: client.address, length: bytes.count)
    }

    /// RFC 8656 §11.3: "If relaying is permitted but no channel is bound to the peer, then the
    /// server forms and sends a Data indication. The Data indication MUST contain both an
    /// XOR-PEER-ADDRESS and a DATA attribute."
    ///
    /// Encoded in place around the received payload, like the ChannelData header: the STUN header
    /// and XOR-PEER-ADDRESS (written by the STUN writer) and the DATA attribute header go into the
    /// headroom (36 bytes for an IPv4 peer, 48 for IPv6, of the 64 guaranteed), the padding into
    /// the tailroom (at most 3 of the 8 guaranteed). No copy of the payload.
    func sendDataIndication(_ datagram: InboundDatagram, peer: PeerSocket, client: ClientSocket, out: OutboundBatch) {
        let addressLength = peer.address.family == .ipv4 ? 8 : 20
        let prefix = STUNMessage.headerLength + 4 + addressLength + 4
        let padding = (4 - datagram.length & 3) & 3
        let messageLength = prefix - STUNMessage.headerLength + datagram.length + padding
        guard prefix <= InboundDatagram.headroom, padding <= InboundDatagram.tailroom, messageLength <= 0xFFFF else {
            statistics.drops.outputFull &+= 1
            return
        }
        let start = datagram.bytes - prefix
        let type = STUNMessageType(method: .data, messageClass: .indication)
        var writer = STUNMessageWriter(into: UnsafeMutableRawBufferPointer(start: start, count: prefix - 4), type: type,
                                       transactionID: TransactionID(using: &random))
        writer.appendXorAddress(.xorPeerAddress, peer.address)
        guard writer.finish() == prefix - 4 else {
            statistics.drops.outputFull &+= 1
            return
        }
        // The DATA attribute header (RFC 8489 §14: type, length of the value before padding) in the
        // last 4 bytes before the payload, zero padding after it, and the message length that
        // covers them.
        let dataHeader = datagram.bytes - 4
        dataHeader.storeBytes(of: AttributeType.data.rawValue.bigEndian, toByteOffset: 0, as: UInt16.self)
        dataHeader.storeBytes(of: UInt16(datagram.length).bigEndian, toByteOffset: 2, as: UInt16.self)
        (datagram.bytes + datagram.length).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
        start.storeBytes(of: UInt16(messageLength).bigEndian, toByteOffset: 2, as: UInt16.self)
        let sent = out.append(OutboundDatagram(
            socket: client.via, destination: client.address, bytes: UnsafeRawPointer(start),
            length: prefix + datagram.length + padding, origin: .received(bufferID: datagram.bufferID)))
        guard sent else {
            statistics.drops.outputFull &+= 1
            return
        }
        statistics.dataIndicationsSent &+= 1
        statistics.peerToClient.packets &+= 1
        statistics.peerToClient.bytes &+= datagram.length
    }
}
