import Testing
@testable import RelayCore
import STUN

/// The core driven exactly as Firezone's client (connlib, `rust/libs/connlib/snownet/src/allocation.rs`
/// in firezone/firezone) drives a relay, step by step, with credentials made as the portal makes
/// them (`elixir/lib/portal_api/client/views/relay.ex`). What connlib does, read from its source:
///
/// - Every request carries its prototype's attributes, then USERNAME, REALM ("firezone", hard-coded),
///   NONCE once it has one, then MESSAGE-INTEGRITY (HMAC-SHA1, MD5 long-term key); no FINGERPRINT.
/// - Allocate and Refresh carry REQUESTED-TRANSPORT (17), ADDITIONAL-ADDRESS-FAMILY (IPv6) and
///   SOFTWARE; deleting is a Refresh with those plus LIFETIME 0; ChannelBind carries
///   XOR-PEER-ADDRESS, CHANNEL-NUMBER and SOFTWARE. It never sends CreatePermission.
/// - Its first Allocate has no NONCE (its test `initial_allocate_is_missing_nonce`).
/// - `check_message_integrity`: every non-Binding response without a MESSAGE-INTEGRITY that
///   verifies with its key is ignored, so an unsigned 401 or 438 leaves it retransmitting until it
///   gives up.
/// - On 401 or 438 it takes the NONCE and re-sends the request; a server REALM other than its own
///   makes it refuse to authenticate; a 401 to a request that carried a NONCE means invalid
///   credentials and it stops.
@Suite struct FirezoneClientScenarioTests {
    // Computed independently with Python:
    //   h = lambda s: base64.b64encode(hashlib.sha256(s.encode()).digest()).decode().rstrip('=')
    //   salt = h(public_key); username = f"{expiry}:{salt}"; password = h(f"{expiry}:{secret}:{salt}")
    static let stampSecret = "e8a9f0b2c4d6e8f0a1b3c5d7e9f1a3b5"
    static let clientPublicKey = "kdd1CL6WMsgQDO0ZXoc+H3kpsIcEKbE6gRHbCfVp8D0="
    static let expiry: UInt64 = 1_800_003_600
    static let username = "1800003600:bEZxpFp8TdsD7o+um9qXEUoK91BqsiCjeBVYf2rFPx0"
    static let password = "7CkFf2Lf16EtuomeD8F7/RC97ysQCVIEDway13VnwMY"
    static let key = longTermKey(username: username, realm: "firezone", password: password, algorithm: .md5)
    static let software = "connlib/1.4.0"

    static func relay() -> Harness {
        Harness { c in
            c.realm = "firezone"
            c.relayAddressIPv6 = Addr.relayV6
            c.credentials = CredentialStore(firezoneSecrets: [stampSecret])
        }
    }

    /// A request as connlib's `MessagePrototype::authenticate` builds it.
    static func request(_ method: STUNMethod, id: UInt8, nonce: String?, password: String = password,
                        _ attributes: (inout STUNMessageWriter) -> Void) -> [UInt8] {
        message(method, id: transactionID(id)) { w in
            attributes(&w)
            w.append(.username, string: username)
            w.append(.realm, string: "firezone")
            if let nonce { w.append(.nonce, string: nonce) }
            w.appendMessageIntegrity(key: longTermKey(username: username, realm: "firezone", password: password, algorithm: .md5))
        }
    }

    static func transportAttributes(_ w: inout STUNMessageWriter) {
        w.appendRequestedTransport(17)
        w.appendAddressFamily(.additionalAddressFamily, .ipv6)
        w.append(.software, string: software)
    }

    /// What connlib accepts: exactly one response, signed with its key.
    static func accepted(_ out: Outputs, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        let response = try #require(out.only, sourceLocation: sourceLocation)
        #expect(try inspect(response.bytes) { $0.verifyMessageIntegrity(key: key) },
                "connlib ignores a response it cannot verify", sourceLocation: sourceLocation)
        return response.bytes
    }

    @Test func credentialsAreThePortals() {
        #expect(FirezoneCredential.password(expiry: Self.expiry, secret: Self.stampSecret,
                                            salt: String(Self.username.split(separator: ":")[1])) == Self.password)
    }

    @Test func connlibAllocatesBindsRefreshesFollowsStaleNoncesAndDeletes() throws {
        let h = Self.relay()
        // 1. The first Allocate, without NONCE: a signed 401 with REALM "firezone" and a nonce.
        let challenge = try Self.accepted(h.receive(Self.request(.allocate, id: 1, nonce: nil, Self.transportAttributes), from: Addr.client))
        #expect(errorCode(challenge) == 401)
        #expect(try inspect(challenge) { try $0.realm() } == "firezone")
        var nonce = try #require(try inspect(challenge) { try $0.nonce() })

        // 2. The same Allocate with the nonce: both families' sockets, then a signed success.
        let pending = h.receive(Self.request(.allocate, id: 2, nonce: nonce, Self.transportAttributes), from: Addr.client)
        #expect(pending.opens.count == 2)
        let allocated = try Self.accepted(h.answer(pending.opens))
        #expect(errorCode(allocated) == nil)
        let relayed = try inspect(allocated) { try $0.xorRelayedAddresses() }
        #expect(relayed.map(\.family) == [.ipv4, .ipv6])
        #expect(try inspect(allocated) { try $0.xorMappedAddress() } == Addr.client)

        // 3. ChannelBind: signed success; ChannelData flows.
        let bound = try Self.accepted(h.receive(Self.request(.channelBind, id: 3, nonce: nonce) { w in
            w.appendXorAddress(.xorPeerAddress, Addr.peer)
            w.appendChannelNumber(0x4000)
            w.append(.software, string: Self.software)
        }, from: Addr.client))
        #expect(errorCode(bound) == nil)
        #expect(h.receive(channelData(0x4000, [1, 2, 3]), from: Addr.client).only?.destination == Addr.peer)

        // 4. Refresh (with the transport attributes, as connlib sends it): signed success.
        h.advance(seconds: 300)
        let refreshed = try Self.accepted(h.receive(Self.request(.refresh, id: 4, nonce: nonce, Self.transportAttributes), from: Addr.client))
        #expect(errorCode(refreshed) == nil)

        // 5. The nonce goes stale: a signed 438 with a fresh one, and the retry succeeds.
        h.advance(seconds: 350)
        let stale = try Self.accepted(h.receive(Self.request(.refresh, id: 5, nonce: nonce, Self.transportAttributes), from: Addr.client))
        #expect(errorCode(stale) == 438)
        #expect(try inspect(stale) { try $0.realm() } == "firezone")
        let fresh = try #require(try inspect(stale) { try $0.nonce() })
        #expect(fresh != nonce)
        nonce = fresh
        #expect(errorCode(try Self.accepted(h.receive(Self.request(.refresh, id: 6, nonce: nonce, Self.transportAttributes),
                                                      from: Addr.client))) == nil)
        // ChannelBind again (connlib refreshes its bindings): signed.
        #expect(errorCode(try Self.accepted(h.receive(Self.request(.channelBind, id: 7, nonce: nonce) { w in
            w.appendXorAddress(.xorPeerAddress, Addr.peer)
            w.appendChannelNumber(0x4000)
            w.append(.software, string: Self.software)
        }, from: Addr.client))) == nil)

        // 6. Delete: Refresh with LIFETIME 0, signed success, the allocation is gone.
        let deleted = try Self.accepted(h.receive(Self.request(.refresh, id: 8, nonce: nonce) { w in
            Self.transportAttributes(&w)
            w.appendUInt32(.lifetime, 0)
        }, from: Addr.client))
        #expect(errorCode(deleted) == nil)
        #expect(h.server.allocationCount == 0)
        // An Allocate on the same 5-tuple works again (connlib re-allocates after a mismatch).
        let again = h.receive(Self.request(.allocate, id: 9, nonce: nonce, Self.transportAttributes), from: Addr.client)
        #expect(again.opens.count == 2)
    }

    @Test func errorsAfterAuthenticationAreSignedSoConnlibCanReSync() throws {
        let h = Self.relay()
        let challenge = try Self.accepted(h.receive(Self.request(.allocate, id: 1, nonce: nil, Self.transportAttributes), from: Addr.client))
        let nonce = try #require(try inspect(challenge) { try $0.nonce() })
        // A ChannelBind without an allocation: 437, signed (connlib then makes an allocation).
        let mismatch = try Self.accepted(h.receive(Self.request(.channelBind, id: 2, nonce: nonce) { w in
            w.appendXorAddress(.xorPeerAddress, Addr.peer)
            w.appendChannelNumber(0x4000)
            w.append(.software, string: Self.software)
        }, from: Addr.client))
        #expect(errorCode(mismatch) == 437)
    }

    @Test func anExpiredUsernameGetsASigned401WhichConnlibTakesAsInvalidCredentials() throws {
        let h = Self.relay()
        let challenge = try Self.accepted(h.receive(Self.request(.allocate, id: 1, nonce: nil, Self.transportAttributes), from: Addr.client))
        let nonce = try #require(try inspect(challenge) { try $0.nonce() })
        // Past the username's expiry (the nonce is fresh: minted just now).
        h.now = Instant(seconds: Self.expiry + 1)
        let refreshedNonce = try #require(try inspect(try Self.accepted(
            h.receive(Self.request(.allocate, id: 2, nonce: nonce, Self.transportAttributes), from: Addr.client))) { try $0.nonce() })
        let expired = try Self.accepted(h.receive(Self.request(.allocate, id: 3, nonce: refreshedNonce, Self.transportAttributes),
                                                  from: Addr.client))
        #expect(errorCode(expired) == 401)
    }

    @Test func aWrongPasswordIsNotSigned() throws {
        // connlib then ignores the 401 and gives up after its retransmissions: nothing signed with
        // a key the client has not shown it holds.
        let h = Self.relay()
        let out = h.receive(Self.request(.allocate, id: 1, nonce: nil, password: "guess", Self.transportAttributes), from: Addr.client)
        let response = try #require(out.only)
        #expect(errorCode(response.bytes) == 401)
        #expect(try inspect(response.bytes) { $0.attribute(.messageIntegrity) == nil })
    }
}
