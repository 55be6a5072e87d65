import Testing

@Test func placeholderRelayIOTests() {}
