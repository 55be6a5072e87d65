import Glibc

/// Servers this process started, so that an interrupted run (Ctrl-C, SIGTERM) does not leave them
/// running: the handler sends each a SIGTERM and exits. Only PIDs registered here are signalled.
enum ChildProcesses {
    static let capacity = 16
    /// Zero means a free slot. Written only from the main thread; read by the signal handler.
    nonisolated(unsafe) static let pids: UnsafeMutablePointer<Int32> = {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        p.initialize(repeating: 0, count: capacity)
        return p
    }()
    nonisolated(unsafe) static var handlersInstalled = false

    static func register(_ pid: Int32) {
        if !handlersInstalled {
            handlersInstalled = true
            _ = pids // initialise before any signal can arrive
            signal(SIGINT, stopChildrenAndExit)
            signal(SIGTERM, stopChildrenAndExit)
        }
        for i in 0..<capacity where pids[i] == 0 {
            pids[i] = pid
            return
        }
    }

    static func unregister(_ pid: Int32) {
        for i in 0..<capacity where pids[i] == pid { pids[i] = 0 }
    }
}

/// Async-signal-safe: only kill(2) and _exit(2).
private func stopChildrenAndExit(_ signal: Int32) {
    for i in 0..<ChildProcesses.capacity {
        let pid = ChildProcesses.pids[i]
        if pid > 0 { kill(pid, SIGTERM) }
    }
    _exit(128 + signal)
}
