import Synchronization

/// What `/readyz` asks. Each check is a named closure; the relay is ready when every check passes.
/// The executable adds "workers" (every worker published recently, see
/// `MetricsBoard.allWorkersAlive`) and, when a portal token is configured, "portal" (connected and
/// initialised). Checks run on the HTTP thread and must be cheap and thread-safe.
public final class Readiness: Sendable {
    public typealias Check = @Sendable () -> Bool

    private let checks = Mutex<[(name: String, check: Check)]>([])
    /// Lines `/readyz` shows after its status line whatever the status ("xdp: attached on eth0
    /// (native mode)"), by name.
    private let notes = Mutex<[(name: String, text: String)]>([])

    public init() {}

    /// Adds a check; a check with the same name is replaced.
    public func set(_ name: String, _ check: @escaping Check) {
        checks.withLock { list in
            list.removeAll { $0.name == name }
            list.append((name, check))
        }
    }

    public func remove(_ name: String) {
        checks.withLock { list in list.removeAll { $0.name == name } }
    }

    /// The names of the checks that fail now; empty when ready. With no checks at all the relay
    /// is not ready (nothing has said the workers run).
    public func failing() -> [String] {
        let current = checks.withLock { $0 }
        guard !current.isEmpty else { return ["no readiness checks registered"] }
        return current.filter { !$0.check() }.map(\.name)
    }

    public var isReady: Bool { failing().isEmpty }

    /// Sets the note `name` (shown as "name: text"); the same name is replaced.
    public func note(_ name: String, _ text: String) {
        notes.withLock { list in
            if let i = list.firstIndex(where: { $0.name == name }) { list[i].text = text } else { list.append((name, text)) }
        }
    }

    /// "name: text\n" for every note, in the order they were first set.
    public var noteLines: String {
        notes.withLock { $0 }.map { "\($0.name): \($0.text)\n" }.joined()
    }
}
