/// Which backend the workers run.
public enum IOBackendKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case ioUring = "io-uring"
    case batchedSyscalls = "batched-syscalls"
    public var description: String { rawValue }
}

/// What an operator asks for with `--io-backend`.
public enum IOBackendChoice: String, Sendable, CaseIterable {
    case auto
    case ioUring = "io-uring"
    case batchedSyscalls = "batched-syscalls"

    public enum Resolution: Sendable, Equatable {
        /// Run `kind`; `fallbackReason` says why `auto` did not get io_uring.
        case use(IOBackendKind, fallbackReason: String?)
        /// io_uring was demanded and the host refuses it: the cause and the fix.
        case refused(String)
    }

    /// Resolves the choice against this host (probing io_uring unless batched syscalls were asked for).
    public func resolve(probe: () -> IOUringProbe.Outcome = IOUringProbe.run) -> Resolution {
        switch self {
        case .batchedSyscalls: return .use(.batchedSyscalls, fallbackReason: nil)
        case .ioUring:
            if case .unavailable(let why) = probe() { return .refused(why) }
            return .use(.ioUring, fallbackReason: nil)
        case .auto:
            if case .unavailable(let why) = probe() { return .use(.batchedSyscalls, fallbackReason: why) }
            return .use(.ioUring, fallbackReason: nil)
        }
    }
}
