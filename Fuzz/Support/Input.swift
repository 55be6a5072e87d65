#if canImport(Glibc)
import Glibc
#endif

/// The fuzzer's input read front to back as the choices of a harness. Past the end every read
/// gives zero, so any input is a complete program and shorter inputs are simpler ones.
public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size)
    }

    public var isEmpty: Bool { offset >= bytes.count }
    public var remaining: Int { max(0, bytes.count - offset) }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    public mutating func uint16() -> UInt16 { UInt16(byte()) << 8 | UInt16(byte()) }

    public mutating func uint32() -> UInt32 { UInt32(uint16()) << 16 | UInt32(uint16()) }

    public mutating func uint64() -> UInt64 { UInt64(uint32()) << 32 | UInt64(uint32()) }

    /// A value in 0..<n (n > 0).
    public mutating func below(_ n: Int) -> Int { Int(byte()) % n }

    public mutating func pick<T>(_ choices: [T]) -> T { choices[below(choices.count)] }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func take(_ count: Int) -> [UInt8] {
        let n = min(count, remaining)
        defer { offset += n }
        return n == 0 ? [] : Array(bytes[offset..<(offset + n)])
    }

    /// A length byte, then that many bytes.
    public mutating func chunk(max: Int = 255) -> [UInt8] { take(min(Int(byte()), max)) }

    /// Everything left.
    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// A failed property: the message on stderr, then a trap, which libFuzzer reports as a crash and
/// saves the input for (`crash-<sha1>`).
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        fputs("fuzz check failed at \(file):\(line): \(message())\n", stderr)
        fflush(stderr)
        abort()
    }
}

/// SplitMix64: the seeded generator the server gets (a fixed seed per input, so runs reproduce).
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
