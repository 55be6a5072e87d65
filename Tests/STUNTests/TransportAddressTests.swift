import Testing
import STUN

@Test func transportAddressTextRoundTrips() {
    #expect(TransportAddress("192.0.2.1:3478")?.description == "192.0.2.1:3478")
    #expect(TransportAddress("[2001:db8::1]:443")?.description == "[2001:db8::1]:443")
    #expect(IPv6Address("::ffff:127.0.0.1") == IPv6Address(high: 0, low: 0xffff_7f00_0001))
    #expect(IPv4Address("256.1.1.1") == nil)
}
