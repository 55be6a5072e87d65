import Glibc
import RelayCore

struct SendableListener: Sendable {
    var handle: SocketHandle
    var fd: Int32
}

/// A stream listener's descriptor and transport, handed to the worker thread.
struct SendableStreamListener: Sendable {
    let fd: Int32
    let transport: StreamTransport
}

final class ThreadBody: @unchecked Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

func spawnThread(_ body: @escaping @Sendable () -> Void) throws(RelayIOError) -> pthread_t {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { argument in
        guard let argument else { return nil }
        let body = Unmanaged<ThreadBody>.fromOpaque(argument).takeRetainedValue()
        body.run()
        return nil
    }, box)
    guard rc == 0 else {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw .thread(errno: rc)
    }
    return thread
}
