import Glibc

/// A plain pthread running one closure, joined explicitly.
public final class BenchThread: @unchecked Sendable {
    private var tid = pthread_t()
    private let body: @Sendable () -> Void

    public init(_ body: @escaping @Sendable () -> Void) {
        self.body = body
        let unmanaged = Unmanaged.passRetained(self)
        let rc = pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            let thread = Unmanaged<BenchThread>.fromOpaque(arg).takeRetainedValue()
            thread.body()
            return nil
        }, unmanaged.toOpaque())
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    public func join() {
        _ = pthread_join(tid, nil)
    }
}
