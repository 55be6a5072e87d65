import Foundation
import RelayIO
import STUN

/// A UDP echo service for one test: answers every datagram to its sender and counts them. Bounded:
/// it stops when told, or after 60 s.
final class UDPEcho: @unchecked Sendable {
    let socket: BlockingUDPSocket
    var address: TransportAddress { socket.localAddress }
    private let count = LockedValue(0)
    private let running = LockedValue(true)
    private let thread: Thread

    /// `attempts`: binds tried 50 ms apart (a port the relay has just been asked to close).
    init(_ address: TransportAddress, attempts: Int = 1) throws {
        var bound: BlockingUDPSocket?
        for attempt in 1...max(1, attempts) {
            do {
                bound = try BlockingUDPSocket(bindTo: address)
                break
            } catch {
                if attempt == attempts { throw error }
                usleep(50_000)
            }
        }
        socket = bound!
        nonisolated(unsafe) let socket = self.socket
        let count = self.count, running = self.running
        thread = Thread {
            let deadline = ContinuousClock.now + .seconds(60)
            while running.withLock({ $0 }), ContinuousClock.now < deadline {
                guard let (bytes, from) = socket.receive(timeoutMilliseconds: 100) else { continue }
                count.withLock { $0 += 1 }
                socket.send(bytes, to: from)
            }
        }
        thread.start()
    }

    /// Datagrams received so far, after waiting `window` for late ones.
    func received(within window: Duration) -> Int {
        Thread.sleep(forTimeInterval: Double(window.components.attoseconds) / 1e18 + Double(window.components.seconds))
        return count.withLock { $0 }
    }

    func stop() {
        running.withLock { $0 = false }
        Thread.sleep(forTimeInterval: 0.15)
    }
}
