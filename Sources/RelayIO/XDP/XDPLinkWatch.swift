import CUDP
import CXDP
import Glibc

/// Watches the links and addresses of the fast path's network namespace (an rtnetlink socket on
/// a thread of its own) and has the fast path check its links at each change
/// (`XDPFastPath.checkLinks`), and every `recheck` without one: an interface deleted while the
/// relay runs is dropped at once, and one created again under a name the relay was given is
/// attached again, so that the program follows interfaces that come and go (a VPN or container
/// link re-created, a driver reloaded) without a restart.
///
/// The socket is opened in the thread that starts the watch, and the thread it spawns shares that
/// thread's network namespace: both look at the namespace the program was attached in.
final class XDPLinkWatch: @unchecked Sendable {
    // @unchecked: the eventfd and the thread handle are set once at start and used by `stop`.
    private let wake: Int32
    private var thread = pthread_t()

    /// Why the watch did not start.
    struct Failure: Error {
        var text: String
    }

    private init(wake: Int32) {
        self.wake = wake
    }

    /// Opens the socket and starts the thread; the thread holds `fastPath` weakly and ends with
    /// `stop` (or once the fast path is gone).
    static func start(for fastPath: XDPFastPath, recheck: Duration) -> Result<XDPLinkWatch, Failure> {
        let events = cx_link_events_open()
        guard events >= 0 else {
            return .failure(Failure(text: "no rtnetlink socket for link changes: \(String(cString: strerror(-events)))"))
        }
        let wake = cu_eventfd()
        guard wake >= 0 else {
            Glibc.close(events)
            return .failure(Failure(text: "no eventfd for the link watch: \(String(cString: strerror(-wake)))"))
        }
        let watch = XDPLinkWatch(wake: wake)
        let recheckMilliseconds = Int32(max(1, min(Double(Int32.max), recheck / .milliseconds(1))))
        do {
            watch.thread = try spawnThread { [weak fastPath] in
                Self.run(events: events, wake: wake, recheckMilliseconds: recheckMilliseconds) { fastPath?.checkLinks() }
            }
        } catch {
            Glibc.close(events)
            Glibc.close(wake)
            return .failure(Failure(text: "the link watch's thread did not start: \(error)"))
        }
        return .success(watch)
    }

    /// The thread (it closes both descriptors when it ends): waits for link changes, the recheck
    /// timeout or `stop`; `check` returns nil when the fast path is gone (the thread ends), and a
    /// nil change when it could not check now (a resize in flight: tried again 20 ms later).
    private static func run(events: Int32, wake: Int32, recheckMilliseconds: Int32,
                            check: () -> XDPFastPath.LinkChange??) {
        defer {
            Glibc.close(events)
            Glibc.close(wake)
        }
        var retry = false
        while true {
            var polled = [pollfd(fd: events, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&polled, 2, retry ? 20 : recheckMilliseconds)
            if ready < 0 && errno == EINTR { continue }
            if polled[1].revents != 0 { return }
            var due = retry || ready == 0
            // Any change, or an error reading them (then nothing says what was missed): check.
            if polled[0].revents != 0 && cx_link_events_drain(events) != 0 { due = true }
            guard due else { continue }
            guard let result = check() else { return }
            retry = result == nil
        }
    }

    /// Ends the thread (which closes the descriptors as it ends) and waits for it, unless called
    /// on that thread (the fast path's last reference released by a check): it then ends after it.
    func stop() {
        var one: UInt64 = 1
        _ = write(wake, &one, 8)
        if pthread_equal(pthread_self(), thread) != 0 {
            pthread_detach(thread)
        } else {
            pthread_join(thread, nil)
        }
    }
}
