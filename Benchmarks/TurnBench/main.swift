import ArgumentParser
import CMallocCounter
import TurnBenchKit

// The malloc counter lives in this executable only; the library reads it through this hook.
AllocationCounter.install { tb_allocation_count() }
TurnBench.main()
