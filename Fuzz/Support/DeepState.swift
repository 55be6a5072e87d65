import STUN
@testable import RelayCore

/// A server brought to the states the fuzzer would rarely reach by itself: alice (from
/// `FuzzAddr.client`) with a dual-stack allocation, permissions for `peer` and `peerV6` and
/// channels 0x4000 → peer and 0x4001 → peerV6; bob (from `client2`) with an IPv4 allocation and a
/// permission for `peer2`. Every step is checked, so a change that breaks the setup fails loudly
/// instead of quietly fuzzing the unauthenticated paths only.
public struct DeepState {
    public let driver: ServerDriver
    public var alice: ServerDriver.Client
    public var bob: ServerDriver.Client
    /// alice's IPv4 and IPv6 relay sockets, bob's IPv4 one.
    public var aliceRelays: [SocketHandle] = []
    public var bobRelays: [SocketHandle] = []

    public init(seed: UInt64 = 1, _ configure: (inout ServerConfiguration) -> Void = { _ in }) {
        let driver = ServerDriver(seed: seed, configure)
        self.driver = driver
        var alice = ServerDriver.Client(address: FuzzAddr.client, user: .alice)
        var bob = ServerDriver.Client(address: FuzzAddr.client2, user: .bob)
        driver.challenge(&alice)
        driver.challenge(&bob)
        fuzzCheck(!alice.nonce.isEmpty && !bob.nonce.isEmpty, "setup: no nonce from the 401")
        aliceRelays = Self.allocate(driver, &alice) { $0.appendAddressFamily(.additionalAddressFamily, .ipv6) }
        bobRelays = Self.allocate(driver, &bob) { _ in }
        fuzzCheck(aliceRelays.count == 2 && bobRelays.count == 1, "setup: allocations \(aliceRelays) \(bobRelays)")
        Self.expectSuccess(driver, .createPermission, &alice) { w in
            w.appendXorAddress(.xorPeerAddress, FuzzAddr.peer)
            w.appendXorAddress(.xorPeerAddress, FuzzAddr.peerV6)
        }
        Self.expectSuccess(driver, .channelBind, &alice) { w in
            w.appendChannelNumber(0x4000)
            w.appendXorAddress(.xorPeerAddress, FuzzAddr.peer)
        }
        Self.expectSuccess(driver, .channelBind, &alice) { w in
            w.appendChannelNumber(0x4001)
            w.appendXorAddress(.xorPeerAddress, FuzzAddr.peerV6)
        }
        Self.expectSuccess(driver, .createPermission, &bob) { $0.appendXorAddress(.xorPeerAddress, FuzzAddr.peer2) }
        fuzzCheck(driver.server.channelRoutes.count == 2, "setup: routes \(driver.server.channelRoutes)")
        self.alice = alice
        self.bob = bob
    }

    static func allocate(_ driver: ServerDriver, _ client: inout ServerDriver.Client,
                         _ extra: (inout STUNMessageWriter) -> Void) -> [SocketHandle] {
        let request = driver.signed(.allocate, by: &client) { w in
            w.appendRequestedTransport(17)
            extra(&w)
        }!
        let pending = driver.process([FuzzDatagram(request, from: client.address)])
        fuzzCheck(pending.isEmpty, "setup: Allocate answered before its sockets opened")
        let handles = driver.pendingOpens.map(\.handle)
        let opened = driver.answerOpens()
        fuzzCheck(opened.count == 1 && ServerDriver.errorCode(in: opened[0].bytes) == nil, "setup: Allocate failed")
        return handles
    }

    static func expectSuccess(_ driver: ServerDriver, _ method: STUNMethod, _ client: inout ServerDriver.Client,
                              _ body: (inout STUNMessageWriter) -> Void) {
        let request = driver.signed(method, by: &client, body)!
        let out = driver.process([FuzzDatagram(request, from: client.address)])
        fuzzCheck(out.count == 1 && ServerDriver.errorCode(in: out[0].bytes) == nil,
                  "setup: \(method) failed with \(out.map { ServerDriver.errorCode(in: $0.bytes) ?? 0 })")
    }
}
