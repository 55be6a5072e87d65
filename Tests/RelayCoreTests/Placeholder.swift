import Testing

@Test func placeholderRelayCoreTests() {}
