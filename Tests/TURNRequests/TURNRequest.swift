import STUN

/// The long-term credential attributes of a request (RFC 8489 §9.2): USERNAME (or USERHASH), REALM,
/// NONCE, optionally PASSWORD-ALGORITHMS + PASSWORD-ALGORITHM, and MESSAGE-INTEGRITY (or
/// MESSAGE-INTEGRITY-SHA256) with `key`.
public struct LongTermAuth: Sendable, Equatable {
    public var username: String
    public var realm: String
    public var nonce: String
    /// The long-term key (RFC 8489 §9.2.2), for MD5: MD5(username ":" realm ":" password).
    public var key: [UInt8]
    /// MESSAGE-INTEGRITY-SHA256 instead of MESSAGE-INTEGRITY.
    public var sha256 = false
    /// USERHASH (RFC 8489 §14.4) instead of USERNAME.
    public var userhash = false
    /// PASSWORD-ALGORITHMS as the server offered them, with `algorithm` as PASSWORD-ALGORITHM
    /// (RFC 8489 §9.2.4: both are sent once the server has offered algorithms).
    public var passwordAlgorithms: [PasswordAlgorithm]?
    public var algorithm: PasswordAlgorithm = .md5

    public init(username: String, realm: String, nonce: String, key: [UInt8]) {
        self.username = username
        self.realm = realm
        self.nonce = nonce
        self.key = key
    }

    /// With the key derived from `password` by `algorithm` (RFC 8489 §9.2.2).
    public init(username: String, realm: String, nonce: String, password: String, algorithm: PasswordAlgorithm = .md5) {
        self.init(username: username, realm: realm, nonce: nonce,
                  key: longTermKey(username: username, realm: realm, password: password, algorithm: algorithm))
        self.algorithm = algorithm
    }
}

/// The one TURN request builder the tests and the benchmark share: the method's own attributes
/// (written by `attributes`), then the credentials, then FINGERPRINT when asked for.
public enum TURNRequest {
    /// Writes the message into `buffer`; its length, or nil when it does not fit.
    public static func encode(_ method: STUNMethod, _ messageClass: STUNClass = .request, transactionID: TransactionID,
                              auth: LongTermAuth? = nil, fingerprint: Bool = false,
                              into buffer: UnsafeMutableRawBufferPointer,
                              _ attributes: (inout STUNMessageWriter) -> Void = { _ in }) -> Int? {
        var w = STUNMessageWriter(into: buffer, type: STUNMessageType(method: method, messageClass: messageClass),
                                  transactionID: transactionID)
        attributes(&w)
        if let auth {
            if auth.userhash {
                STUN.userhash(username: auth.username, realm: auth.realm).withUnsafeBytes { w.append(.userhash, bytes: $0) }
            } else {
                w.append(.username, string: auth.username)
            }
            w.append(.realm, string: auth.realm)
            w.append(.nonce, string: auth.nonce)
            if let offered = auth.passwordAlgorithms {
                w.appendPasswordAlgorithms(offered)
                w.appendPasswordAlgorithm(auth.algorithm)
            }
            if auth.sha256 { w.appendMessageIntegritySHA256(key: auth.key) } else { w.appendMessageIntegrity(key: auth.key) }
        }
        if fingerprint { w.appendFingerprint() }
        return w.finish()
    }

    /// `encode` into a new array of at most `capacity` bytes; nil when it does not fit.
    public static func bytes(_ method: STUNMethod, _ messageClass: STUNClass = .request, transactionID: TransactionID,
                             auth: LongTermAuth? = nil, fingerprint: Bool = false, capacity: Int = 2048,
                             _ attributes: (inout STUNMessageWriter) -> Void = { _ in }) -> [UInt8]? {
        var storage = [UInt8](repeating: 0, count: capacity)
        let length = storage.withUnsafeMutableBytes {
            encode(method, messageClass, transactionID: transactionID, auth: auth, fingerprint: fingerprint, into: $0, attributes)
        }
        guard let length else { return nil }
        return Array(storage[0..<length])
    }

    // MARK: The TURN operations' own attributes (RFC 8656)

    /// Allocate: REQUESTED-TRANSPORT (§7.1: "The client MUST include a REQUESTED-TRANSPORT
    /// attribute"; 17 = UDP, the default), and REQUESTED-ADDRESS-FAMILY when `family` is given (without it the
    /// server allocates IPv4).
    /// `transport` 6 asks for a TCP allocation (RFC 6062 §4.1).
    public static func allocate(_ w: inout STUNMessageWriter, family: AddressFamily? = nil, lifetime: UInt32? = nil,
                                transport: UInt8 = 17) {
        w.appendRequestedTransport(transport)
        if let lifetime { w.appendUInt32(.lifetime, lifetime) }
        if let family { w.appendAddressFamily(.requestedAddressFamily, family) }
    }

    /// ChannelBind: CHANNEL-NUMBER and XOR-PEER-ADDRESS (§11.1).
    public static func channelBind(_ w: inout STUNMessageWriter, channel: UInt16, peer: TransportAddress) {
        w.appendChannelNumber(channel)
        w.appendXorAddress(.xorPeerAddress, peer)
    }

    /// CreatePermission: one XOR-PEER-ADDRESS per peer (§9.1).
    public static func createPermission(_ w: inout STUNMessageWriter, peers: [TransportAddress]) {
        for peer in peers { w.appendXorAddress(.xorPeerAddress, peer) }
    }
}
