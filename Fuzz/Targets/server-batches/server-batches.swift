import FuzzSupport

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt { 0 }
