import Glibc
import Synchronization

/// Counters the sender and receiver threads bump per batch and the progress line reads.
public final class LiveCounters: Sendable {
    public let sent = Atomic<UInt64>(0)
    public let received = Atomic<UInt64>(0)
    public let stopSending = Atomic<Bool>(false)
    public let stopReceiving = Atomic<Bool>(false)
    public init() {}
}

/// The one-line live status on stderr, rewritten in place.
public struct ProgressLine {
    public var enabled: Bool
    public init(enabled: Bool = true) { self.enabled = enabled }

    public func update(_ text: String) {
        guard enabled else { return }
        writeStandardError("\r\u{1B}[K" + text)
    }

    public func finish() {
        guard enabled else { return }
        writeStandardError("\r\u{1B}[K")
    }

    public func log(_ text: String) {
        writeStandardError(text + "\n")
    }
}

/// Writes to file descriptor 2 directly (no shared FILE state).
public func writeStandardError(_ text: String) {
    var t = text
    t.withUTF8 { buf in
        guard let base = buf.baseAddress else { return }
        var off = 0
        while off < buf.count {
            let n = write(2, base + off, buf.count - off)
            if n <= 0 { return }
            off += n
        }
    }
}
