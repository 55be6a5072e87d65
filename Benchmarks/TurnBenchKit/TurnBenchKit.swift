/// PLACEHOLDER: the benchmark logic lands here.
public enum TurnBenchKit {}
