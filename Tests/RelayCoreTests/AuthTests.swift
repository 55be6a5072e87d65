import Testing
@testable import RelayCore

// Expected passwords were computed independently with Python's standard library:
//   python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b'<secret>', b'<username>', hashlib.sha1).digest()).decode())"
//   python3 -c "import hashlib,base64; print(base64.b64encode(hashlib.sha256(b'<expiry>:<secret>:<salt>').digest()).decode().rstrip('='))"

private let firezoneSecret = "4c98bf59c99b3e467ecd7cf9d6b3e5279645fca59be67bc5bb4af3cf653761ab"
private let firezoneSalt = "t3Sg6v3Qp6g3l0vR"
/// sha256("1699999999:4c98…61ab:t3Sg6v3Qp6g3l0vR"), base64 without padding.
private let firezonePassword = "RA/3VLiMHZw/VKiz5i3h1JSr9LYhCk+1ffm3AG8OJfQ"

// MARK: - TURN REST API

@Test func restPasswordMatchesIndependentVector() {
    // hmac.new(b'north-relay-secret', b'1700000000:alice', hashlib.sha1)
    #expect(RESTCredential.password(secret: "north-relay-secret", username: "1700000000:alice") == "Vpd4mrqxpsTZhKPID020Lnegi10=")
    // hmac.new(b'north-relay-secret', b'1700000000', hashlib.sha1)
    #expect(RESTCredential.password(secret: "north-relay-secret", username: "1700000000") == "+gh7hEAASeykit049DHqBZJ/U6Y=")
}

@Test func restMakeBuildsExpiryUsernameAndPassword() {
    let withID = RESTCredential.make(secret: "north-relay-secret", ttlSeconds: 3600, id: "alice", nowUnixSeconds: 1_699_996_400)
    #expect(withID.username == "1700000000:alice")
    #expect(withID.password == "Vpd4mrqxpsTZhKPID020Lnegi10=")
    let withoutID = RESTCredential.make(secret: "north-relay-secret", ttlSeconds: 3600, id: nil, nowUnixSeconds: 1_699_996_400)
    #expect(withoutID.username == "1700000000")
    #expect(withoutID.password == "+gh7hEAASeykit049DHqBZJ/U6Y=")
    let emptyID = RESTCredential.make(secret: "north-relay-secret", ttlSeconds: 3600, id: "", nowUnixSeconds: 1_699_996_400)
    #expect(emptyID.username == "1700000000")
}

@Test func restMakeSaturatesInsteadOfOverflowing() {
    let c = RESTCredential.make(secret: "s", ttlSeconds: 10, id: "x", nowUnixSeconds: UInt64.max - 1)
    #expect(c.username == "18446744073709551615:x")
}

@Test func restCredentialRoundTripsThroughTheStore() {
    let store = CredentialStore(restSecrets: ["north-relay-secret"])
    #expect(store.lookup(username: "1700000000:alice", nowUnixSeconds: 1_699_999_999) == .passwords(["Vpd4mrqxpsTZhKPID020Lnegi10="]))
    #expect(store.lookup(username: "1700000000", nowUnixSeconds: 1_699_999_999) == .passwords(["+gh7hEAASeykit049DHqBZJ/U6Y="]))
}

@Test func restSecretRotationAcceptsOldAndNew() {
    // hmac.new(b'new-secret', b'1700003600:bob', sha1) and hmac.new(b'old-secret', b'1700003600:bob', sha1)
    let store = CredentialStore(restSecrets: ["new-secret", "old-secret"])
    #expect(store.lookup(username: "1700003600:bob", nowUnixSeconds: 1_700_000_000)
        == .passwords(["ykigrDpchzPwXaSOqiddBvz6XOU=", "DsEM+VYYS6Xyu82whnl3QBntzdA="]))
    // A credential the portal still issues with the old secret is among the candidates.
    let old = RESTCredential.make(secret: "old-secret", ttlSeconds: 3600, id: "bob", nowUnixSeconds: 1_700_000_000)
    guard case .passwords(let candidates) = store.lookup(username: old.username, nowUnixSeconds: 1_700_000_000) else {
        Issue.record("old-secret credential not recognized"); return
    }
    #expect(candidates.contains(old.password))
    // Once the old secret is removed, its credentials no longer match.
    let rotated = CredentialStore(restSecrets: ["new-secret"])
    // hmac.new(b'new-secret', b'1700003600:bob', sha1): the new secret's candidate only.
    #expect(rotated.lookup(username: old.username, nowUnixSeconds: 1_700_000_000) == .passwords(["ykigrDpchzPwXaSOqiddBvz6XOU="]))
}

@Test func expiredCredentialsAreRefused() {
    let store = CredentialStore(restSecrets: ["north-relay-secret"], firezoneSecrets: [firezoneSecret])
    // "expiry < now" is expired; the named second itself is still valid.
    // At the named second: the REST candidate, then the Firezone one (the name reads as expiry:salt too):
    // hmac.new(b'north-relay-secret', b'1700000000:alice', sha1),
    // sha256(b'1700000000:4c98…61ab:alice') in base64 without padding.
    #expect(store.lookup(username: "1700000000:alice", nowUnixSeconds: 1_700_000_000)
        == .passwords(["Vpd4mrqxpsTZhKPID020Lnegi10=", "LjIkkeT/ck1K7VQ8qgfq0QmUy4bcIZgogHWLXrNNv48"]))
    #expect(store.lookup(username: "1700000000:alice", nowUnixSeconds: 1_700_000_001) == .expired)
    #expect(store.lookup(username: "1699999999:\(firezoneSalt)", nowUnixSeconds: 1_700_000_000) == .expired)
    #expect(store.lookup(username: "0", nowUnixSeconds: 1) == .expired)
    // hmac.new(b'north-relay-secret', b'18446744073709551615:forever', sha1),
    // sha256(b'18446744073709551615:4c98…61ab:forever') in base64 without padding.
    #expect(store.lookup(username: "18446744073709551615:forever", nowUnixSeconds: UInt64.max)
        == .passwords(["XdCakn7JRY2RSyQSeM5mLp6+MFc=", "I6nXGpQKUfbzuGLO2dzdJRtW37Rx+LeD75h0bPOdC8c"]))
}

// MARK: - Firezone

@Test func firezonePasswordMatchesIndependentVector() {
    #expect(FirezoneCredential.password(expiry: 1_699_999_999, secret: firezoneSecret, salt: firezoneSalt) == firezonePassword)
    // sha256(b'1699999999:other-secret:t3Sg6v3Qp6g3l0vR')
    #expect(FirezoneCredential.password(expiry: 1_699_999_999, secret: "other-secret", salt: firezoneSalt)
        == "1GIn+8fSKd64wfOtKdaczXpHkCN+H0OhijyttDuUyYI")
}

@Test func firezoneCredentialThroughTheStore() {
    let store = CredentialStore(firezoneSecrets: [firezoneSecret])
    #expect(store.lookup(username: "1699999999:\(firezoneSalt)", nowUnixSeconds: 1_699_990_000) == .passwords([firezonePassword]))
    // Firezone needs the salt: a bare expiry is nobody's username.
    #expect(store.lookup(username: "1699999999", nowUnixSeconds: 1_699_990_000) == .unknown)
}

@Test func allSchemesTogetherListRestThenFirezoneCandidates() {
    let store = CredentialStore(restSecrets: ["north-relay-secret"], firezoneSecrets: ["other-secret", firezoneSecret])
    // hmac.new(b'north-relay-secret', b'1699999999:t3Sg6v3Qp6g3l0vR', sha1)
    let rest = RESTCredential.password(secret: "north-relay-secret", username: "1699999999:\(firezoneSalt)")
    #expect(store.lookup(username: "1699999999:\(firezoneSalt)", nowUnixSeconds: 1_699_990_000)
        == .passwords([rest, "1GIn+8fSKd64wfOtKdaczXpHkCN+H0OhijyttDuUyYI", firezonePassword]))
}

// MARK: - Static users and precedence

@Test func staticUsersWinOverTimeLimitedSchemes() {
    let store = CredentialStore(staticUsers: ["1700000000:alice": "static-password", "carol": "pw"],
                                restSecrets: ["north-relay-secret"])
    // Even though the name parses as an (expired) REST username, the static entry decides.
    #expect(store.lookup(username: "1700000000:alice", nowUnixSeconds: 1_800_000_000) == .passwords(["static-password"]))
    #expect(store.lookup(username: "carol", nowUnixSeconds: 0) == .passwords(["pw"]))
    #expect(store.lookup(username: "Carol", nowUnixSeconds: 0) == .unknown)
}

@Test func timeLimitedUsernamesAreUnknownWithoutSecrets() {
    let store = CredentialStore(staticUsers: ["carol": "pw"])
    #expect(store.lookup(username: "1700000000:alice", nowUnixSeconds: 0) == .unknown)
    #expect(store.lookup(username: "1:alice", nowUnixSeconds: 1_700_000_000) == .unknown, "not expired: nobody issued it")
}

@Test(arguments: [
    "", ":", ":alice", "alice", "abc:alice", "12a4:alice", "-1700000000", "+1700000000", " 1700000000:alice",
    "1700000000 :alice", "0x10:alice", "1e9:alice", "01700000000:alice", "00", "1700000000:",
    "18446744073709551616:alice",          // UInt64.max + 1
    "99999999999999999999:alice",          // 20 digits, overflows
    "123456789012345678901:alice",         // 21 digits
    "١٧٠٠٠٠٠٠٠٠:alice",                    // Arabic-Indic digits
    "１７００００００００:alice",             // full-width digits
])
func malformedUsernamesAreUnknown(_ username: String) {
    let store = CredentialStore(restSecrets: ["north-relay-secret"], firezoneSecrets: [firezoneSecret])
    #expect(store.lookup(username: username, nowUnixSeconds: 1_600_000_000) == .unknown)
}

@Test func hugeUsernameDoesNotTrap() {
    let store = CredentialStore(restSecrets: ["north-relay-secret"], firezoneSecrets: [firezoneSecret])
    #expect(store.lookup(username: String(repeating: "9", count: 100_000), nowUnixSeconds: 0) == .unknown)
    let long = "1700000000:" + String(repeating: "x", count: 100_000)
    guard case .passwords(let p) = store.lookup(username: long, nowUnixSeconds: 0) else {
        Issue.record("a long id is still a REST username"); return
    }
    #expect(p.count == 2)
}

// MARK: - Base64 (RFC 4648 §10 test vectors)

@Test func base64MatchesRFC4648Vectors() {
    let vectors: [(String, String, String)] = [
        ("", "", ""), ("f", "Zg==", "Zg"), ("fo", "Zm8=", "Zm8"), ("foo", "Zm9v", "Zm9v"),
        ("foob", "Zm9vYg==", "Zm9vYg"), ("fooba", "Zm9vYmE=", "Zm9vYmE"), ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
    ]
    for (input, padded, unpadded) in vectors {
        #expect(Base64.encode(Array(input.utf8)) == padded)
        #expect(Base64.encode(Array(input.utf8), padded: false) == unpadded)
    }
    #expect(Base64.encode([0xFF, 0xEF, 0xBE]) == "/+++")
    #expect(Base64.encode([0x80, 0, 0]) == "gAAA")
}
