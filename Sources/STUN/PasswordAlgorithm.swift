/// RFC 8489 §18.5 "STUN Password Algorithms" registry.
public enum PasswordAlgorithm: UInt16, Sendable, CaseIterable {
    case md5 = 0x0001
    case sha256 = 0x0002
}
