print("turn-bench: not built yet")
