import Testing
import TurnBenchKit

@Test func placeholderTurnBench() {}
