import RelayCore

/// What a reload hands a TURN `Server` (SIGHUP re-reading `--credentials-file`, the portal's
/// `init`): new credentials and peer policy. Allocations stay; their next request authenticates
/// against the new credentials.
public struct TURNReload: Sendable {
    public var credentials: CredentialStore
    public var peerPolicy: PeerPolicy

    public init(credentials: CredentialStore, peerPolicy: PeerPolicy) {
        self.credentials = credentials
        self.peerPolicy = peerPolicy
    }
}

extension ReloadMailbox where Value == TURNReload {
    /// Posts new credentials and peer policy to every TURN worker; returns the generation.
    @discardableResult
    public func post(credentials: CredentialStore, peerPolicy: PeerPolicy) -> UInt64 {
        post(TURNReload(credentials: credentials, peerPolicy: peerPolicy))
    }
}
