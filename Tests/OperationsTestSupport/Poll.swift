import Glibc
import RelayOperations

/// Retries `condition` every 20 ms until it holds or `seconds` pass.
func poll(seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = MonotonicClock.nanoseconds() + UInt64(seconds * 1e9)
    while true {
        if try condition() { return true }
        if MonotonicClock.nanoseconds() > deadline { return false }
        usleep(20_000)
    }
}
