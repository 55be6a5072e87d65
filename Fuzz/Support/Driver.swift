#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's driver, entered from the target's own `main`. SwiftPM links every executable with
/// `main` renamed to the module's entry point (`--defsym main=<module>_main`), so libFuzzer's own
/// `main` is never used: each target's `@main` hands its `LLVMFuzzerTestOneInput` to
/// `LLVMFuzzerRunDriver` (libFuzzer's documented entry for programs with their own `main`).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

public func runFuzzer(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
}
