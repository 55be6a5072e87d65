import Crypto
import STUN

// The slow path: STUN requests and indications, in the order a client uses them.
// Handlers throw a `RequestError` that *is* the error response; `respond(to:error:...)` is the one
// place that adds REALM/NONCE to challenges and signs.

extension Server {
    func handleSTUN(_ datagram: InboundDatagram, now: Instant, out: OutboundBatch) {
        let bytes = UnsafeRawBufferPointer(start: datagram.bytes, count: datagram.length)
        guard let message = try? STUNMessage.parse(bytes) else {
            statistics.drops.malformed &+= 1
            return
        }
        // RFC 8489 §7.3: a FINGERPRINT that does not match means the datagram is not STUN.
        if message.hasFingerprint && !message.verifyFingerprint() {
            statistics.drops.malformed &+= 1
            return
        }
        let client = ClientSocket(datagram.source, receivedOn: datagram.socket)
        switch message.type.messageClass {
        case .request:
            handleRequest(message, from: client, now: now, out: out)
        case .indication where message.type.method == .send:
            handleSendIndication(message, datagram: datagram, from: client, out: out)
        case .indication, .successResponse, .errorResponse:
            // RFC 8489 §6.3: a server does not act on responses; RFC 8656 defines no other
            // indication a client sends.
            statistics.drops.ignoredMessage &+= 1
        }
    }

    func handleRequest(_ message: STUNMessage, from client: ClientSocket, now: Instant, out: OutboundBatch) {
        // RFC 8489 §6.3.4: retransmissions of a request get the response that was sent before.
        if let cached = transactions.lookup(TransactionKey(client: client, transactionID: message.transactionID), now: now) {
            statistics.responses.retransmitted &+= 1
            sendCached(cached, to: client, out: out)
            return
        }
        switch message.type.method {
        case .binding:
            // RFC 8489 §6.3.1: "If the request contains one or more unknown comprehension-required
            // attributes, the server replies with an error response with an error code of 420".
            let unknown = message.unknownComprehensionRequired(known: Self.isKnownAttribute)
            guard unknown.isEmpty else {
                respond(to: message, from: client, error: .unknownAttributes(unknown), signer: nil, now: now, out: out)
                return
            }
            handleBinding(message, from: client, now: now, out: out)
        case .allocate, .refresh, .createPermission, .channelBind, .connect, .connectionBind:
            let auth: Authentication
            do {
                auth = try authenticate(message, from: client, now: now, nonceAlsoFor: controlConnectionAddress(of: message))
            } catch {
                respond(to: message, from: client, error: error, signer: nil, now: now, out: out)
                return
            }
            do throws(RequestError) {
                let unknown = message.unknownComprehensionRequired(known: Self.isKnownAttribute)
                guard unknown.isEmpty else {
                    // RFC 6062 §5.1: "If the request contains the DONT-FRAGMENT, EVEN-PORT, or
                    // RESERVATION-TOKEN attribute, the server MUST reject the request with a 400".
                    if unknown == [.dontFragment], message.type.method == .allocate,
                       (try? message.requestedTransport()) == Self.tcpTransport {
                        throw RequestError.badRequest
                    }
                    throw RequestError.unknownAttributes(unknown)
                }
                switch message.type.method {
                case .allocate: try handleAllocate(message, from: client, auth: auth, now: now, out: out)
                case .refresh: try handleRefresh(message, from: client, auth: auth, now: now, out: out)
                case .createPermission: try handleCreatePermission(message, from: client, auth: auth, now: now, out: out)
                case .connect: try handleConnect(message, from: client, auth: auth, now: now, out: out)
                case .connectionBind: try handleConnectionBind(message, from: client, auth: auth, now: now, out: out)
                default: try handleChannelBind(message, from: client, auth: auth, now: now, out: out)
                }
            } catch {
                respond(to: message, from: client, error: error, signer: auth.signer, now: now, out: out)
            }
        default:
            // Unknown method: RFC 8489 §6.3.1 leaves it to the usage; answer 400 unauthenticated.
            respond(to: message, from: client, error: .badRequest, signer: nil, now: now, out: out)
        }
    }

    // MARK: Binding

    /// RFC 8489 §6.3.1.1: the success response carries XOR-MAPPED-ADDRESS, the source of the
    /// request. No authentication (Binding is how clients learn their reflexive address).
    func handleBinding(_ message: STUNMessage, from client: ClientSocket, now: Instant, out: OutboundBatch) {
        sendSuccess(to: message, from: client, signer: nil, now: now, out: out) { writer in
            writer.appendXorAddress(.xorMappedAddress, client.address)
        }
    }

    // MARK: Authentication

    /// RFC 8489 §9.2.4, the long-term credential mechanism, server side.
    ///
    /// `nonceAlsoFor`: another client address whose nonce is accepted too (a ConnectionBind may
    /// present the nonce its control connection was given, `controlConnectionAddress(of:)`).
    func authenticate(_ message: STUNMessage, from client: ClientSocket, now: Instant,
                      nonceAlsoFor alternate: TransportAddress? = nil) throws(RequestError) -> Authentication {
        // "If the message does not contain a MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256
        // attribute, the server MUST generate an error response with an error code of 401".
        guard message.hasMessageIntegrity || message.hasMessageIntegritySHA256 else { throw .unauthenticated }
        // "If the message contains a MESSAGE-INTEGRITY or a MESSAGE-INTEGRITY-SHA256 attribute, but
        // is missing either the USERNAME or USERHASH, REALM, or NONCE attribute, the server MUST
        // generate an error response with an error code of 400 (Bad Request)."
        let username: String
        if let name = try parsed(message.username()) {
            username = name
        } else if let hash = try parsed(message.userhash()) {
            // USERHASH names only static users: a time-limited username cannot be recovered from
            // its hash, so such clients must send USERNAME.
            guard let name = usernameByUserhash[Array(hash)] else { throw .unauthenticated }
            username = name
        } else {
            throw .badRequest
        }
        guard try parsed(message.realm()) != nil else { throw .badRequest }
        // RFC 8489 §9.2.4's letter makes a missing NONCE a 400 too. This server answers 401 with
        // REALM and a fresh NONCE instead, as Firezone's relay does: Firezone's client (connlib,
        // `snownet/src/allocation.rs`, its test `initial_allocate_is_missing_nonce`) sends its
        // first Allocate with USERNAME, REALM and MESSAGE-INTEGRITY but no NONCE, and expects the
        // challenge; a 400 leaves it nothing to retry with. RFC clients never send such a request.
        guard let nonce = try parsed(message.nonce()) else { throw .unauthenticated }
        // "If the NONCE is no longer valid, the server MUST generate an error response with an
        // error code of 438 (Stale Nonce)." A forged nonce is no more valid than an old one.
        var nonceClient = client.address
        var nonceCheck = checkNonce(nonce, for: nonceClient, nowUnixSeconds: now.unixSeconds)
        if nonceCheck.validity != .valid, let alternate {
            nonceClient = alternate
            nonceCheck = checkNonce(nonce, for: alternate, nowUnixSeconds: now.unixSeconds)
        }
        guard nonceCheck.validity == .valid else { throw .staleNonce }
        let algorithm = try passwordAlgorithm(of: message, nonce: nonce)
        // RFC 8489 §9.2.4: with both present, MESSAGE-INTEGRITY-SHA256 is the one checked, and
        // the response is signed the same way.
        let sha256 = message.hasMessageIntegritySHA256
        let nowSeconds = now.unixSeconds
        if let cached = credentialKeys.lookup(username: username, algorithm: algorithm, sha256: sha256) {
            // The username's own expiry still applies, as `CredentialStore.lookup` applies it.
            if let expiry = cached.expiry, expiry < nowSeconds { throw .unauthenticated }
            if Self.verify(message, cached.integrity) {
                rememberNonce(nonce, for: nonceClient, mintedAt: nonceCheck.toRemember)
                return Authentication(username: username, signer: ResponseSigner(
                    integrity: cached.integrity, fingerprint: message.hasFingerprint))
            }
            // Not a verdict: another candidate password may verify it.
        }
        let passwords: [String]
        switch configuration.credentials.lookup(username: username, nowUnixSeconds: nowSeconds) {
        case .passwords(let list): passwords = list
        // "If the value of the USERNAME or USERHASH attribute is not valid, the server MUST
        // generate an error response with an error code of 401". Expired time-limited
        // credentials are invalid.
        case .expired, .unknown: throw .unauthenticated
        }
        // Several passwords when shared secrets rotate: the one whose key verifies wins.
        for password in passwords {
            let key = longTermKey(username: username, realm: configuration.realm, password: password, algorithm: algorithm)
            // The key's HMAC states serve both the check and the response's signature.
            let integrity: ResponseSigner.Integrity = sha256
                ? .sha256(HMACState<SHA256>(key: key)) : .sha1(HMACState<Insecure.SHA1>(key: key))
            guard Self.verify(message, integrity) else { continue }
            let expiry = configuration.credentials.staticUsers[username] == nil ? TimeLimitedUsername(username)?.expiry : nil
            credentialKeys.insert(.init(username: username, algorithm: algorithm, expiry: expiry, integrity: integrity))
            rememberNonce(nonce, for: nonceClient, mintedAt: nonceCheck.toRemember)
            return Authentication(username: username, signer: ResponseSigner(
                integrity: integrity, fingerprint: message.hasFingerprint))
        }
        // "If the MESSAGE-INTEGRITY ... value is invalid ... 401".
        throw .unauthenticated
    }

    /// For a ConnectionBind naming a pending connection: the address of the control connection
    /// that connection belongs to. RFC 6062 §4.4 has the client authenticate the data connection
    /// "using the same credentials as for the control connection", and clients (coturn's
    /// turnutils_uclient) present the control connection's NONCE, which this server bound to that
    /// connection's address and port; the data connection comes from another port. The nonce is
    /// still checked (minted here, for that client, fresh) and MESSAGE-INTEGRITY still verified.
    func controlConnectionAddress(of message: STUNMessage) -> TransportAddress? {
        guard message.type.method == .connectionBind, let id = (try? message.connectionID()) ?? nil,
              let connection = tcpConnections.connection(id) else { return nil }
        return allocations.allocation(connection.allocation)?.client.address
    }

    /// `NonceAuthority.validate`, answered from `validatedNonces` when the client presents the nonce
    /// it presented last. `toRemember` is the minting time of a valid nonce that is not cached yet:
    /// `rememberNonce` stores it once the request has authenticated, so a request that does not
    /// authenticate leaves nothing behind.
    func checkNonce(_ nonce: String, for client: TransportAddress, nowUnixSeconds: UInt64)
        -> (validity: NonceAuthority.Validity, toRemember: UInt64?) {
        var nonce = nonce
        return nonce.withUTF8 { utf8 in
            let bytes = UnsafeRawBufferPointer(utf8)
            if let mintedAt = validatedNonces.mintedAt(bytes, client: client) {
                return (nonces.freshness(mintedAt: mintedAt, nowUnixSeconds: nowUnixSeconds), nil)
            }
            guard let mintedAt = nonces.authenticate(bytes, for: client, nowUnixSeconds: nowUnixSeconds) else { return (.invalid, nil) }
            let validity = nonces.freshness(mintedAt: mintedAt, nowUnixSeconds: nowUnixSeconds)
            return (validity, validity == .valid ? mintedAt : nil)
        }
    }

    func rememberNonce(_ nonce: String, for client: TransportAddress, mintedAt: UInt64?) {
        guard let mintedAt else { return }
        var nonce = nonce
        nonce.withUTF8 { validatedNonces.insert(UnsafeRawBufferPointer($0), client: client, mintedAt: mintedAt) }
    }

    static func verify(_ message: STUNMessage, _ integrity: ResponseSigner.Integrity) -> Bool {
        switch integrity {
        case .sha1(let key): message.verifyMessageIntegrity(key: key)
        case .sha256(let key): message.verifyMessageIntegritySHA256(key: key)
        }
    }

    /// RFC 8489 §9.2.4 (password algorithms, when the nonce advertised them): "If the request
    /// contains neither PASSWORD-ALGORITHMS nor PASSWORD-ALGORITHM, then the request is processed
    /// as though PASSWORD-ALGORITHM were MD5. Otherwise, unless (1) PASSWORD-ALGORITHM and
    /// PASSWORD-ALGORITHMS are both present, (2) PASSWORD-ALGORITHMS matches the value sent in
    /// the response that sent this NONCE, and (3) PASSWORD-ALGORITHM matches one of the entries
    /// in PASSWORD-ALGORITHMS, the server MUST send back a 400 (Bad Request) response."
    func passwordAlgorithm(of message: STUNMessage, nonce: String) throws(RequestError) -> PasswordAlgorithm {
        let chosen = try parsed(message.passwordAlgorithm())
        let offered = try parsed(message.passwordAlgorithms())
        guard NonceAuthority.hasPasswordAlgorithmsBit(nonce) else {
            // Nothing was offered, so anything but the default is a client error.
            guard chosen == nil else { throw .badRequest }
            return .md5
        }
        if chosen == nil && offered.isEmpty { return .md5 }
        guard let chosen, offered == Self.advertisedPasswordAlgorithms.map(\.rawValue),
              offered.contains(chosen.algorithm),
              let algorithm = PasswordAlgorithm(rawValue: chosen.algorithm) else { throw .badRequest }
        return algorithm
    }

    /// In order of preference (RFC 8489 §14.11).
    static let advertisedPasswordAlgorithms: [PasswordAlgorithm] = [.sha256, .md5]

    // MARK: Allocate

    /// RFC 8656 §7.2, checks in the RFC's order.
    func handleAllocate(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, now: Instant, out: OutboundBatch) throws(RequestError) {
        // 2. "The server checks if the 5-tuple is currently in use by an existing allocation. If
        // yes, the server rejects the request with a 437 (Allocation Mismatch) error." Unless it is
        // the request that created it, retransmitted (RFC 8489 §6.3.4).
        if case let (existing, allocation)? = allocations.allocation(of: client) {
            guard allocation.allocateTransaction == message.transactionID else { throw .allocationMismatch }
            switch allocation.lifecycle {
            case .active(let granted):
                // The cached response was evicted: answer again from the allocation's state.
                sendAllocateSuccess(existing, transactionID: message.transactionID, signer: auth.signer,
                                    lifetime: allocation.expiresAt > now
                                        ? UInt32(clamping: (allocation.expiresAt.nanoseconds - now.nanoseconds) / 1_000_000_000) : 0,
                                    reservationToken: granted.reservationToken, addressError: granted.addressError,
                                    now: now, out: out)
            case .opening:
                // Still opening its sockets: the success response goes out when they are open.
                statistics.drops.pendingRetransmission &+= 1
            }
            return
        }
        // 11. "at any point, the server MAY choose to reject the request with a 300 (Try Alternate)".
        if isDraining {
            if let alternate = configuration.alternateServer { throw .tryAlternate(alternate) }
            throw .insufficientCapacity
        }
        // 3. "If the REQUESTED-TRANSPORT attribute is not included or is malformed, the server
        // rejects the request with a 400 (Bad Request) error. Otherwise, if the attribute is
        // included but specifies a protocol that is not supported by the server, the server rejects
        // the request with a 442 (Unsupported Transport Protocol) error."
        guard let transport = try parsed(message.requestedTransport()) else {
            throw .badRequest
        }
        let relayTransport: RelayTransport
        switch transport {
        case Self.udpTransport:
            relayTransport = .udp
        case Self.tcpTransport where configuration.tcpAllocations:
            // RFC 6062 §5.1: "If the client connection transport is not TCP or TLS, the server MUST
            // reject the request with a 400 (Bad Request) error." "If the request contains the
            // DONT-FRAGMENT, EVEN-PORT, or RESERVATION-TOKEN attribute, the server MUST reject the
            // request with a 400 (Bad Request) error." One relayed TCP address: a dual (RFC 8656
            // ADDITIONAL-ADDRESS-FAMILY) TCP allocation is refused the same way.
            guard client.isStream, try parsed(message.evenPort()) == nil, try parsed(message.reservationToken()) == nil,
                  try parsed(message.additionalAddressFamily()) == nil,
                  try parsed(message.draftAdditionalAddressFamily()) == nil else { throw .badRequest }
            relayTransport = .tcp
        default:
            // RFC 6062 §5.1: "If the REQUESTED-TRANSPORT attribute is included and specifies a
            // protocol other than UDP or TCP, the server MUST reject the request with a 442".
            throw .unsupportedTransport
        }
        // 4. DONT-FRAGMENT: this server does not set DF on relayed datagrams, so it "treats the
        // DONT-FRAGMENT attribute in the Allocate request as an unknown comprehension-required
        // attribute" (420, handled with the other unknown attributes before this handler).

        let token = try parsed(message.reservationToken())
        let evenPort = try parsed(message.evenPort())
        let requestedFamily = try parsed(message.requestedAddressFamily())
        // coturn's clients send ADDITIONAL-ADDRESS-FAMILY under draft-ietf-tram-turn-ipv6's
        // codepoint 0x8032 (RFC 8656 §18.11 assigned 0x8000); both mean the same request. Without
        // this, a comprehension-optional attribute the server does not know is ignored (RFC 8489
        // §15) and the client silently gets an IPv4-only allocation.
        var additionalFamily = try parsed(message.additionalAddressFamily())
        if additionalFamily == nil { additionalFamily = try parsed(message.draftAdditionalAddressFamily()) }
        // 5. "If yes, and the request also contains an EVEN-PORT or REQUESTED-ADDRESS-FAMILY or
        // ADDITIONAL-ADDRESS-FAMILY attribute, the server rejects the request with a 400 (Bad
        // Request) error. Otherwise, ... If the token is not valid for some reason, the server
        // rejects the request with a 508 (Insufficient Capacity) error."
        // The token may have been issued by another server of this process (RFC 8656 §7.2: "the
        // reservation is a server-wide reservation"), so it is looked up in the shared registry.
        // This check only reads; the claim below takes the reservation atomically.
        var reservedFamily: AddressFamily?
        if let token {
            guard evenPort == nil, requestedFamily == nil, additionalFamily == nil else { throw .badRequest }
            guard let family = reservationRegistry.claimableFamily(token, now: now) else { throw .insufficientCapacity }
            reservedFamily = family
        }
        // 6. "both REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY ... 400 (Bad Request)".
        if requestedFamily != nil && additionalFamily != nil { throw .badRequest }
        // 7. "If the server does not support the address family requested by the client in
        // REQUESTED-ADDRESS-FAMILY ... 440 (Address Family not Supported) ... If the
        // REQUESTED-ADDRESS-FAMILY attribute is absent and the server does not support the IPv4
        // address family, the server MUST include ... 440".
        let primary = reservedFamily ?? requestedFamily ?? .ipv4
        guard configuration.relayAddress(primary) != nil else { throw .addressFamilyNotSupported }
        // 8. "EVEN-PORT attribute with the R bit set to 1 ... and the request also contains an
        // ADDITIONAL-ADDRESS-FAMILY attribute, the server rejects the request with a 400".
        let reserveNext = evenPort?.reserveNext ?? false
        if reserveNext && additionalFamily != nil { throw .badRequest }
        // 9. "If yes, and the attribute value is 0x01 (IPv4 address family), then the server
        // rejects the request with a 400 (Bad Request) error."
        if additionalFamily == .ipv4 { throw .badRequest }
        var families = [primary]
        var addressError: (family: AddressFamily, code: Int)?
        if additionalFamily == .ipv6 {
            // "If the server can partially meet the request ... it includes ADDRESS-ERROR-CODE".
            if configuration.relayAddress(.ipv6) != nil { families.append(.ipv6) } else { addressError = (family: AddressFamily.ipv6, code: 440) }
        }
        // 10. "the server MAY choose to reject the request with a 486 (Allocation Quota Reached)
        // error if it feels the client is trying to exceed some locally defined allocation quota
        // ... it SHOULD define it based on the username". Counted across the whole process
        // (`AllocationQuota`); the server-wide limit is capacity, not a per-user quota: 508, "The
        // server has no more relayed transport addresses available" (RFC 8656 §7.4).
        switch allocationQuota.acquire(username: auth.username, perUserLimit: configuration.maxAllocationsPerUsername,
                                       totalLimit: configuration.maxAllocations) {
        case .granted: break
        case .userQuota: throw .allocationQuotaReached
        case .full: throw .insufficientCapacity
        }
        // The place is this allocation's from here on: given back if the request fails before the
        // allocation exists, else when the allocation ends (`deleteAllocation`).
        let plan: AllocationPlan
        do throws(RequestError) {
            plan = try planAllocation(message, from: client, auth: auth, token: token, evenPort: evenPort,
                                      families: families, addressError: addressError, now: now)
        } catch {
            allocationQuota.release(username: auth.username)
            throw error
        }
        var tcpPlan = plan
        tcpPlan.relayTransport = relayTransport
        createAllocation(tcpPlan, now: now, out: out)
    }

    /// REQUESTED-TRANSPORT values (IANA protocol numbers): RFC 8656 §18.8, RFC 6062 §6.
    static let udpTransport: UInt8 = 17
    static let tcpTransport: UInt8 = 6

    /// The rest of RFC 8656 §7.2 once the quota admitted the request: the relayed transport
    /// addresses (a reserved port, or chosen ones and possibly a new reservation) and the lifetime.
    func planAllocation(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, token: UInt64?,
                        evenPort: EvenPort?, families: [AddressFamily], addressError: (family: AddressFamily, code: Int)?,
                        now: Instant) throws(RequestError) -> AllocationPlan {
        let reserveNext = evenPort?.reserveNext ?? false
        let primary = families[0]
        var addressError = addressError
        if reserveNext && reservations.count >= configuration.maxReservations { throw .insufficientCapacity }

        // Parsed before a token is claimed or registered: nothing below may fail after that.
        let lifetime = desiredLifetime(try parsed(message.lifetime()))

        // Relayed transport addresses (RFC 8656 §7.2, after the checks).
        var chosen: [(family: AddressFamily, port: UInt16)] = []
        var newReservation: (token: UInt64, port: UInt16)?
        var portOwner = RelaySocket.PortOwner.thisServer
        if let token {
            // "If the request contains a RESERVATION-TOKEN attribute, the server uses the previously
            // reserved transport address corresponding to the included token (if it is still
            // available)." One claim per token: another server may have claimed it since the check.
            guard let claimed = reservationRegistry.claim(token, by: registryMember, now: now) else {
                throw .insufficientCapacity
            }
            if claimed.owner == registryMember {
                // Our own reservation: its port, already marked used here, passes to the allocation.
                dropReservation(token)
            } else {
                portOwner = .otherServer
            }
            chosen = [(claimed.family, claimed.port)]
        } else {
            // Given-back ports first, so that a reservation never fails for lent ports that came back.
            if reserveNext { collectGivenBackPorts() }
            let request = PortAllocator.Request(families: families, even: evenPort != nil, reserveNext: reserveNext)
            if let port = choosePort(request) {
                chosen = families.map { ($0, port) }
                if reserveNext {
                    // "the relayed transport address with port N+1 is assigned a token and reserved
                    // for a future allocation." Registered server-wide, bounded there too.
                    let token = uniqueReservationToken()
                    let reserved = ReservedPort(port: port + 1, family: primary, owner: registryMember)
                    // Counted against the username too (RFC 8656 §7.2 step 10: a quota "SHOULD"
                    // be "based on the username"): a reservation outlives its allocation by 30 s,
                    // so without it one user cycling Allocate(R=1)/Refresh(0) holds the whole
                    // registry and every other user's EVEN-PORT request gets 508.
                    let limit = configuration.maxReservationsPerUsername ?? configuration.maxAllocationsPerUsername
                    switch reservationRegistry.register(token, reserved, username: auth.username, perUserLimit: limit,
                                                        expiresAt: now.adding(seconds: configuration.reservationLifetime)) {
                    case .registered: break
                    case .full: throw .insufficientCapacity
                    case .userQuota: throw .allocationQuotaReached
                    }
                    newReservation = (token, port + 1)
                }
            } else if families.count == 2 {
                // No common port: one per family, or a partial success (step 9: "508").
                for family in families {
                    if let port = choosePort(PortAllocator.Request(families: [family])) {
                        chosen.append((family, port))
                    } else {
                        addressError = (family: family, code: 508)
                    }
                }
                guard !chosen.isEmpty else { throw .insufficientCapacity }
            } else {
                throw .insufficientCapacity
            }
        }
        return AllocationPlan(client: client, username: auth.username, transactionID: message.transactionID,
                              signer: auth.signer, relays: chosen, lifetime: lifetime, evenPort: evenPort != nil,
                              usesReservedPort: token != nil, portOwner: portOwner, newReservation: newReservation,
                              addressError: addressError)
    }


    /// RFC 8656 §7.2: "If the request contains a LIFETIME attribute, then the server computes the
    /// minimum of the client's proposed lifetime and the server's maximum allowed lifetime. If this
    /// computed value is greater than the default lifetime, then the server uses the computed
    /// lifetime ... Otherwise, the server uses the default lifetime."
    func desiredLifetime(_ requested: UInt32?) -> UInt32 {
        guard let requested else { return configuration.defaultLifetime }
        let capped = min(requested, configuration.maxLifetime)
        return capped > configuration.defaultLifetime ? capped : configuration.defaultLifetime
    }

    // MARK: Refresh

    /// RFC 8656 §8.2.
    func handleRefresh(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, now: Instant, out: OutboundBatch) throws(RequestError) {
        let (id, allocation) = try activeAllocation(of: client, auth: auth)
        // RFC 8656 §8.1: "When refreshing a dual allocation, the client includes a
        // REQUESTED-ADDRESS-FAMILY attribute indicating the address family type that should be
        // refreshed. If no REQUESTED-ADDRESS-FAMILY attribute is included, then the request should
        // be treated as applying to all the relayed transport addresses."
        // §8.2: "If the server receives a Refresh Request with a REQUESTED-ADDRESS-FAMILY attribute
        // and the attribute value does not match the address family of the allocation, the server
        // MUST reply with a 443 (Peer Address Family Mismatch) error."
        var families = allocation.relays.map(\.family)
        if let family = try parsed(message.requestedAddressFamily()) {
            guard allocation.relay(for: family) != nil else { throw .peerAddressFamilyMismatch }
            families = [family]
        }
        let requested = try parsed(message.lifetime())
        // "if the request contains a LIFETIME attribute and the attribute value is zero, then the
        // 'desired lifetime' is zero ... If the 'desired lifetime' is zero, then the request
        // succeeds and the allocation is deleted."
        let lifetime = requested == 0 ? 0 : desiredLifetime(requested)
        if lifetime == 0 {
            if families.count == allocation.relays.count {
                deleteAllocation(id, now: now, out: out)
                statistics.allocationsDeleted &+= 1
            } else {
                for family in families { removeRelay(family, of: id, now: now, out: out) }
            }
        } else {
            // "the allocation's time-to-expiry is set to the 'desired lifetime'".
            allocations[id].setExpiry(families, at: now.adding(seconds: UInt64(lifetime)), timers: &timers)
        }
        // "A LIFETIME attribute containing the current value of the time-to-expiry timer."
        sendSuccess(to: message, from: client, signer: auth.signer, now: now, out: out) { writer in
            writer.appendUInt32(.lifetime, lifetime)
        }
    }

    // MARK: CreatePermission

    /// RFC 8656 §10.2: "the server installs or refreshes a permission for the IP address contained
    /// in each XOR-PEER-ADDRESS attribute ... The port portion of each attribute is ignored".
    func handleCreatePermission(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, now: Instant, out: OutboundBatch) throws(RequestError) {
        let (id, allocation) = try activeAllocation(of: client, auth: auth)
        let addresses = try parsed(message.xorPeerAddresses())
        // "The CreatePermission request MUST contain at least one XOR-PEER-ADDRESS attribute".
        guard !addresses.isEmpty else { throw .badRequest }
        var newPeers = Set<IPAddress>()
        for peer in addresses {
            // "If an XOR-PEER-ADDRESS attribute contains an address of an address family that is
            // not the same as that of a relayed transport address for the allocation, the server
            // MUST generate an error response with the 443 (Peer Address Family Mismatch)".
            guard allocation.relay(for: peer.family) != nil else { throw .peerAddressFamilyMismatch }
            // "The server MAY impose restrictions on the IP address allowed in the
            // XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects the request
            // with a 403 (Forbidden) error." A permission is IP-only, so the relay's own address is
            // allowed here; ChannelBind and Send check the port.
            if peerPolicy.evaluate(peer.ip) == .denied { throw .forbidden }
            if !peers.hasPermission(PermissionKey(allocation: id, peer: peer.ip)) { newPeers.insert(peer.ip) }
        }
        // RFC 8656 §12.2 for the same situation in ChannelBind: "If the request is valid, but the
        // server is unable to fulfill the request due to some capacity limit or similar, the server
        // replies with a 508 (Insufficient Capacity) error."
        guard peers.permissionCount(of: id) + newPeers.count <= configuration.maxPermissionsPerAllocation else {
            throw .insufficientCapacity
        }
        for peer in addresses { installPermission(id, peer: peer.ip, now: now, out: out) }
        sendSuccess(to: message, from: client, signer: auth.signer, now: now, out: out) { _ in }
    }

    // MARK: ChannelBind

    /// RFC 8656 §12.2.
    func handleChannelBind(_ message: STUNMessage, from client: ClientSocket, auth: Authentication, now: Instant, out: OutboundBatch) throws(RequestError) {
        let (id, allocation) = try activeAllocation(of: client, auth: auth)
        // A TCP allocation has no channels: its data goes over data connections (RFC 6062 §4.3).
        guard allocation.relayTransport == .udp else { throw .badRequest }
        // "The request contains both a CHANNEL-NUMBER and an XOR-PEER-ADDRESS attribute; The
        // channel number is in the range 0x4000 through 0x4FFF (inclusive)" else 400. With
        // `rfc5766ChannelNumbers`, RFC 5766 §11's "0x4000 through 0x7FFF".
        guard let rawNumber = try parsed(message.channelNumber()),
              let peerAddress = try parsed(message.xorPeerAddresses()).first
        else { throw .badRequest }
        let number = ChannelNumber(rawNumber)
        guard number.isValid(rfc5766: rfc5766ChannelNumbers) else { throw .badRequest }
        let peer = PeerSocket(peerAddress)
        // "If the XOR-PEER-ADDRESS attribute contains an address of an address family that is not
        // the same as that of a relayed transport address for the allocation, the server MUST
        // generate an error response with the 443 (Peer Address Family Mismatch) response code."
        guard let relay = allocation.relay(for: peerAddress.family) else { throw .peerAddressFamilyMismatch }
        // "The server MAY impose restrictions on the IP address and port values allowed in the
        // XOR-PEER-ADDRESS attribute; if a value is not allowed, the server rejects the request
        // with a 403 (Forbidden) error."
        let admission = admission(of: peerAddress)
        guard isAdmitted(peerAddress, admission) else { throw .forbidden }
        // "The channel number is not currently bound to a different transport address (same
        // transport address is OK); The transport address is not currently bound to a different
        // channel number." Both hold through the 5-minute cooldown after expiry (RFC 8656 §12:
        // "the client MUST wait 5 minutes after the channel binding expires before attempting to
        // bind the channel number to a different transport address or the transport address to a
        // different channel number").
        let existing = peers.channel(ChannelKey(client: allocation.client, number: number))
        if let existing, existing.peer != peer { throw .badRequest }
        if let other = peers.peerChannel(PeerChannelKey(allocation: id, peer: peer)), other.number != number { throw .badRequest }
        if existing == nil && peers.channelCount(of: id) >= configuration.maxChannelsPerAllocation {
            throw .insufficientCapacity
        }
        if !peers.hasPermission(PermissionKey(allocation: id, peer: peerAddress.ip))
            && peers.permissionCount(of: id) >= configuration.maxPermissionsPerAllocation {
            throw .insufficientCapacity
        }
        bindChannel(id, number: number, peer: peer, relay: relay, checksPeer: admission == .ownAddress, now: now, out: out)
        // RFC 8656 §12.1: "A ChannelBind transaction also creates or refreshes a permission towards
        // the peer".
        installPermission(id, peer: peerAddress.ip, now: now, out: out)
        sendSuccess(to: message, from: client, signer: auth.signer, now: now, out: out) { _ in }
    }

    // MARK: Send indication

    /// RFC 8656 §11.2. Indications get no response: every failure is a silent drop, counted.
    func handleSendIndication(_ message: STUNMessage, datagram: InboundDatagram, from client: ClientSocket, out: OutboundBatch) {
        guard case let (id, allocation)? = allocations.allocation(of: client), allocation.isActive else {
            statistics.drops.noAllocation &+= 1
            return
        }
        // RFC 8489 §6.3.2: an indication with unknown comprehension-required attributes is
        // discarded. DONT-FRAGMENT counts as unknown (RFC 8656 §11.2: "the server acts as if the
        // DONT-FRAGMENT attribute is an unknown comprehension-required attribute").
        guard message.unknownComprehensionRequired(known: Self.isKnownAttribute).isEmpty,
              let peerAddress = (try? message.xorPeerAddresses())?.first,
              let data = message.data()
        else {
            statistics.drops.malformed &+= 1
            return
        }
        guard let relay = allocation.relay(for: peerAddress.family), relay.isOpen, allocation.relayTransport == .udp else {
            statistics.drops.malformed &+= 1
            return
        }
        guard isPeerAllowed(peerAddress) else {
            statistics.drops.peerDenied &+= 1
            return
        }
        // "The server also checks that there is a permission installed for the IP address contained
        // in the XOR-PEER-ADDRESS attribute. If no such permission exists, the message is
        // discarded."
        guard peers.hasPermission(PermissionKey(allocation: id, peer: peerAddress.ip)) else {
            statistics.drops.noPermission &+= 1
            return
        }
        // The DATA value is forwarded from the received buffer: no copy.
        let payload = data.baseAddress ?? UnsafeRawPointer(datagram.bytes)
        let sent = out.append(OutboundDatagram(socket: relay.handle, destination: peerAddress, bytes: payload,
                                               length: data.count, origin: .received(bufferID: datagram.bufferID)))
        guard sent else {
            statistics.drops.outputFull &+= 1
            return
        }
        statistics.sendIndicationsRelayed &+= 1
        statistics.clientToPeer.packets &+= 1
        statistics.clientToPeer.bytes &+= data.count
    }

    // MARK: - Helpers

    /// RFC 8656 §5: requests other than Allocate need an allocation on this 5-tuple (else 437),
    /// authenticated by the user who created it: "the server MUST ... reject the request with a
    /// 441 (Wrong Credentials) error" when the username differs.
    func activeAllocation(of client: ClientSocket, auth: Authentication) throws(RequestError) -> (AllocationID, Allocation) {
        guard case let (id, allocation)? = allocations.allocation(of: client), allocation.isActive else {
            throw .allocationMismatch
        }
        guard allocation.username == auth.username else { throw .wrongCredentials }
        return (id, allocation)
    }

    /// How a peer address named in ChannelBind or a Send indication is admitted.
    enum PeerAdmission {
        case allowed
        /// On an address of this host that no operator `allow` names: only while its port is a
        /// live relay allocation (`LiveRelayPorts`), checked again for every datagram.
        case ownAddress
        case denied
    }

    /// The peer policy plus the rules for this host's own addresses.
    ///
    /// - Port 0 is never a peer: RFC 8656 §12.2, "The server MAY impose restrictions on the IP
    ///   address and port values allowed in the XOR-PEER-ADDRESS attribute; if a value is not
    ///   allowed, the server rejects the request with a 403 (Forbidden) error." No datagram can be
    ///   sent to port 0 (the kernel answers EINVAL), and a burst of them used to turn GSO off.
    /// - The relay's own listener ports on any address of this host (any family, any spelling:
    ///   IPv4-mapped, 0.0.0.0, any of 127/8) are never a peer: no TURN inside TURN.
    /// - Other ports of this host's addresses are admitted only while they are a live relay
    ///   allocation of this process (hairpin between two clients of this relay), unless an operator
    ///   `allow` names the address (then the operator opened it on purpose).
    func admission(of peer: TransportAddress) -> PeerAdmission {
        guard peer.port != 0 else { return .denied }
        if configuration.listenerPorts.contains(peer.port) && peerPolicy.reachesThisHost(peer.ip) { return .denied }
        switch peerPolicy.evaluate(peer.ip) {
        case .allowed: return .allowed
        case .denied: return .denied
        case .relaySelf: return .ownAddress
        }
    }

    /// `admission`, with an own-address peer checked against the live relay ports now.
    func isPeerAllowed(_ peer: TransportAddress) -> Bool { isAdmitted(peer, admission(of: peer)) }

    func isAdmitted(_ peer: TransportAddress, _ admission: PeerAdmission) -> Bool {
        switch admission {
        case .allowed: return true
        case .denied: return false
        case .ownAddress: return isLiveRelayPort(peer)
        }
    }

    /// Whether `peer` (an own-address peer) is a live allocation socket of this process. An
    /// IPv4-mapped spelling is checked as the IPv4 address it names.
    @inline(__always)
    func isLiveRelayPort(_ peer: TransportAddress) -> Bool {
        liveRelayPorts.isLive(peer.port, family: PeerPolicy.canonicalize(peer.ip).family)
    }

    /// Converts a malformed-attribute error into 400 (Bad Request).
    @inline(__always)
    func parsed<T>(_ body: @autoclosure () throws(STUNAttributeError) -> T) throws(RequestError) -> T {
        do { return try body() } catch { throw .badRequest }
    }

    /// Attributes this server understands (RFC 8489 §6.3.1); DONT-FRAGMENT is deliberately absent.
    static func isKnownAttribute(_ type: AttributeType) -> Bool {
        switch type {
        case .mappedAddress, .username, .messageIntegrity, .errorCode, .unknownAttributes, .channelNumber,
             .lifetime, .xorPeerAddress, .data, .realm, .nonce, .xorRelayedAddress, .requestedAddressFamily,
             .evenPort, .requestedTransport, .messageIntegritySHA256, .passwordAlgorithm, .userhash,
             .xorMappedAddress, .reservationToken, .connectionID:
            return true
        default:
            return false
        }
    }

    /// A fresh nonzero token. With 64 random bits a collision is practically impossible; the loop
    /// is bounded anyway (and the registry refuses a token another server holds: 508).
    func uniqueReservationToken() -> UInt64 {
        var token = random.next() | 1 << 63
        for _ in 0..<8 where reservations[token] != nil { token = random.next() | 1 << 63 }
        return token
    }

    /// A free port for `request`; when there is none, ports other servers have given back since
    /// they were last collected are taken back and the choice is tried once more. So the registry
    /// is consulted only when this server's range is exhausted (or on the reservation paths).
    func choosePort(_ request: PortAllocator.Request) -> UInt16? {
        if let port = ports.choose(request, using: &random) { return port }
        guard collectGivenBackPorts() else { return nil }
        return ports.choose(request, using: &random)
    }
}

/// Who sent an authenticated request, and how to sign the answer.
struct Authentication {
    var username: String
    var signer: ResponseSigner
}
