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
    func respond(to message: STUNMessage, from client: ClientSocket, error: RequestError, signer: ResponseSigner?,
                 now: Instant, out: OutboundBatch) {
        if error.isChallenge {
            guard challengeLimiter.allow(source: client.address.ip, nowNanoseconds: now.nanoseconds) else {
                statistics.drops.challengeRateLimited &+= 1
                return
            }
        }
        statistics.responses.count(errorCode: error.code.code)
        statistics.responses.count(method: message.type.method, success: false)
        let type = STUNMessageType(method: message.type.method, messageClass: .errorResponse)
        encode(type: type, transactionID: message.transactionID, to: client, signer: signer,
               fingerprint: message.hasFingerprint, now: now, out: out) { writer in
            writer.appendErrorCode(error.code)
            if !error.unknownAttributes.isEmpty { writer.appendUnknownAttributes(error.unknownAttributes) }
            if let alternate = error.alternateServer { writer.appendPlainAddress(.alternateServer, alternate) }
            if error.isChallenge {
                // RFC 8489 §9.2.4: "The server MUST include a REALM value ... MUST include a NONCE"
                // and, with the nonce cookie's security feature bit, "PASSWORD-ALGORITHMS".
                writer.append(.realm, string: configuration.realm)
                writer.append(.nonce, string: nonces.mint(for: client.address, nowUnixSeconds: now.unixSeconds))
                if nonces.advertisesPasswordAlgorithms {
                    writer.appendPasswordAlgorithms(Self.advertisedPasswordAlgorithms)
                }
            }
        }
    }

    func sendSuccess(to message: STUNMessage, from client: ClientSocket, signer: ResponseSigner?, now: Instant,
                     out: OutboundBatch, _ body: (inout STUNMessageWriter) -> Void) {
        statistics.responses.success &+= 1
        statistics.responses.count(method: message.type.method, success: true)
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
        guard let allocation = allocations[Int(id.index)] else { return }
        statistics.responses.success &+= 1
        statistics.responses.allocate.success &+= 1
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
    /// family. Responses to authenticated requests are remembered for retransmissions.
    func encode(type: STUNMessageType, transactionID: TransactionID, to client: ClientSocket, signer: ResponseSigner?,
                fingerprint: Bool, now: Instant, out: OutboundBatch, _ body: (inout STUNMessageWriter) -> Void) {
        guard let space = out.arenaSpace(maxBytes: TransactionCache.maxResponseBytes) else {
            statistics.drops.outputFull &+= 1
            return
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
            return
        }
        out.commitArena(socket: .listener(client.address.family), destination: client.address, length: length)
        if signer != nil {
            transactions.insert(TransactionKey(client: client, transactionID: transactionID),
                                response: UnsafeRawBufferPointer(start: base, count: length), now: now)
        }
    }

    func sendCached(_ bytes: [UInt8], to client: ClientSocket, out: OutboundBatch) {
        guard let space = out.arenaSpace(maxBytes: bytes.count), let base = space.baseAddress else {
            statistics.drops.outputFull &+= 1
            return
        }
        bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        out.commitArena(socket: .listener(client.address.family), destination: client.address, length: bytes.count)
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
            socket: .listener(client.address.family), destination: client.address, bytes: UnsafeRawPointer(start),
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
