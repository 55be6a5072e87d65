import Testing
import TestSupport

/// The `.dedicatedThread` trait (TestSupport) really moves a test off the cooperative pool: its body
/// runs on a thread the trait made, and a test without it does not.
@Suite(.dedicatedThread) struct DedicatedThreadTraitTests {
    @Test func synchronousTestRunsOnItsOwnThread() {
        #expect(isOnDedicatedThread())
    }

    @Test func asynchronousTestStaysOnItsOwnThreadAcrossSuspensions() async throws {
        try await Task.sleep(for: .milliseconds(5))
        #expect(isOnDedicatedThread())
    }
}

@Suite struct WithoutDedicatedThreadTests {
    @Test func aTestWithoutTheTraitRunsOnAPoolThread() {
        #expect(!isOnDedicatedThread())
    }
}
