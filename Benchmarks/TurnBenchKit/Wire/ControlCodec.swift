import STUN

/// Encodes the load generator's TURN requests and decodes the answers, with the STUN module.
public enum ControlCodec {
    /// Encodes `request` into `buffer`; returns its length, nil if it does not fit.
    public static func encode(_ request: ControlRequest, transactionID: [UInt8], auth: ControlAuth?,
                              into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        let type = STUNMessageType(method: STUNMethod(rawValue: request.method), messageClass: .request)
        var w = STUNMessageWriter(into: buffer, type: type, transactionID: TransactionID(transactionID))
        switch request {
        case .binding:
            break
        case .allocate(let family):
            // RFC 8656 §7.1: "The client MUST include a REQUESTED-TRANSPORT attribute"; 17 = UDP.
            w.appendRequestedTransport(17)
            // RFC 8656 §7.1: without REQUESTED-ADDRESS-FAMILY the server allocates IPv4.
            if let family { w.appendAddressFamily(.requestedAddressFamily, family) }
        case .refresh(let lifetime):
            w.appendUInt32(.lifetime, lifetime)
        case .channelBind(let channel, let peer):
            w.appendChannelNumber(channel)
            w.appendXorAddress(.xorPeerAddress, peer)
        case .createPermission(let peer):
            w.appendXorAddress(.xorPeerAddress, peer)
        }
        if let auth {
            // RFC 8489 §9.2.3: USERNAME, REALM, NONCE and MESSAGE-INTEGRITY over the long-term key.
            w.append(.username, string: auth.username)
            w.append(.realm, string: auth.realm)
            w.append(.nonce, string: auth.nonce)
            w.appendMessageIntegrity(key: auth.key)
        }
        return w.finish()
    }

    /// Decodes a STUN success or error response; nil when the bytes are not one.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> ControlResponse? {
        guard let m = try? STUNMessage.parse(bytes) else { return nil }
        let cls = m.type.messageClass
        guard cls == .successResponse || cls == .errorResponse else { return nil }
        var r = ControlResponse(transactionID: m.transactionID.bytes, method: m.type.method.rawValue, isSuccess: cls == .successResponse)
        r.errorCode = (try? m.errorCode())??.code
        r.realm = (try? m.realm()) ?? nil
        r.nonce = (try? m.nonce()) ?? nil
        r.relayedAddress = (try? m.xorRelayedAddresses())?.first
        r.mappedAddress = (try? m.xorMappedAddress()) ?? nil
        r.lifetime = (try? m.lifetime()) ?? nil
        return r
    }

    /// RFC 8489 §9.2.2: key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password)).
    public static func longTermKey(username: String, realm: String, password: String) -> [UInt8] {
        STUN.longTermKey(username: username, realm: realm, password: password, algorithm: .md5)
    }
}
