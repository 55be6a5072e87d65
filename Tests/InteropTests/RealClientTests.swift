import Testing
import TestSupport
@testable import InteropTestSupport

/// Real third-party TURN/STUN clients against a TURN server process on loopback
/// (see `TurnServerUnderTest` for which server). Serialized: each test starts its own server
/// and peer, and the machine is small enough that parallel client runs would measure the
/// scheduler rather than the relay.
@Suite(.serialized, .dedicatedThread)
struct RealClientTests {}
