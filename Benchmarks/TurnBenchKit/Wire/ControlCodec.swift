import STUN
import TURNRequests

/// Encodes the load generator's TURN requests and decodes the answers, with the STUN module.
public enum ControlCodec {
    /// Encodes `request` into `buffer` with the TURN request builder the tests use too
    /// (`TURNRequest`); returns its length, nil if it does not fit.
    public static func encode(_ request: ControlRequest, transactionID: [UInt8], auth: ControlAuth?,
                              into buffer: UnsafeMutableRawBufferPointer) -> Int? {
        TURNRequest.encode(STUNMethod(rawValue: request.method), transactionID: TransactionID(transactionID), auth: auth,
                           into: buffer) { w in
            switch request {
            case .binding: break
            case .allocate(let family): TURNRequest.allocate(&w, family: family)
            case .refresh(let lifetime): w.appendUInt32(.lifetime, lifetime)
            case .channelBind(let channel, let peer): TURNRequest.channelBind(&w, channel: channel, peer: peer)
            case .createPermission(let peer): TURNRequest.createPermission(&w, peers: [peer])
            case .allocateTCP: TURNRequest.allocate(&w, transport: 6)
            case .connect(let peer): w.appendXorAddress(.xorPeerAddress, peer)
            case .connectionBind(let id): w.appendUInt32(.connectionID, id)
            }
        }
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
        r.connectionID = (try? m.connectionID()) ?? nil
        return r
    }

    /// RFC 8489 §9.2.2: key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password)).
    public static func longTermKey(username: String, realm: String, password: String) -> [UInt8] {
        STUN.longTermKey(username: username, realm: realm, password: password, algorithm: .md5)
    }
}
