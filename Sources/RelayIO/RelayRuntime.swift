import RelayCore
import CURing

/// PLACEHOLDER: the io_uring runtime.
public enum RelayRuntime {
    public static func probe() -> Int32 { cu_probe() }
}
