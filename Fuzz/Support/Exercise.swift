import STUN

/// Every accessor a server or client reads, on a parsed message; they must return values or throw,
/// never trap. Returns a count so the calls are not optimized away.
public func exerciseAccessors(_ m: STUNMessage) -> Int {
    var n = 0
    func count<T>(_ f: () throws -> T?) { if (try? f()) != nil { n &+= 1 } }
    count { try m.username() }; count { try m.realm() }; count { try m.nonce() }; count { try m.software() }
    count { try m.userhash() }; count { try m.xorMappedAddress() }; count { try m.mappedAddress() }
    count { try m.alternateServer() }
    count { try m.xorPeerAddresses() }; count { try m.xorRelayedAddresses() }; count { try m.lifetime() }
    count { try m.channelNumber() }; count { try m.requestedTransport() }; count { try m.requestedAddressFamily() }
    count { try m.additionalAddressFamily() }; count { try m.draftAdditionalAddressFamily() }
    count { try m.evenPort() }; count { try m.reservationToken() }
    count { try m.errorCode() }; count { try m.passwordAlgorithm() }; count { try m.passwordAlgorithms() }
    count { try m.addressErrorCode() }; count { try m.unknownAttributes() }; count { try m.icmp() }
    count { m.data() }
    if m.hasDontFragment { n &+= 1 }
    if m.verifyMessageIntegrity(key: [1, 2, 3]) { n &+= 1 }
    if m.verifyMessageIntegritySHA256(key: [1, 2, 3]) { n &+= 1 }
    if m.verifyFingerprint() { n &+= 1 }
    n &+= m.unknownComprehensionRequired(known: { $0.rawValue & 1 == 0 }).count
    m.forEachAttribute { _, v in n &+= v.count }
    return n
}
