import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Sends STUN Binding requests (RFC 8489 §3: type 0x0001, magic cookie 0x2112A442) to a UDP
/// port on an IPv4 address (127.0.0.1 unless told) until a success response (0x0101) with the same transaction id comes back:
/// the sign that a freshly started server is ready.
enum StunBindingProbe {
    /// Gives up early when `isAlive` says the server process is gone.
    static func waitUntilAnswering(host: String = "127.0.0.1", port: UInt16, timeout: Duration,
                                   isAlive: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + timeout
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var wait = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))

        var server = sockaddr_in()
        server.sin_family = sa_family_t(AF_INET)
        server.sin_port = port.bigEndian
        server.sin_addr.s_addr = inet_addr(host)
        let connected = withUnsafePointer(to: &server) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return false }

        var attempt: UInt8 = 0
        while ContinuousClock.now < deadline, isAlive() {
            attempt &+= 1
            let transactionID: [UInt8] = [0x69, 0x6e, 0x74, 0x65, 0x72, 0x6f, 0x70, 0x2d, 0x70, 0x72, 0x62, attempt]
            let request: [UInt8] = [0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42] + transactionID
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var response = [UInt8](repeating: 0, count: 1500)
            let received = response.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            // Any attempt's answer will do: under load an answer can come after its attempt's
            // 100 ms, and matching only the latest attempt would then stay one answer behind.
            if received >= 20, response[0] == 0x01, response[1] == 0x01,
                response[8..<19].elementsEqual(transactionID[0..<11])
            {
                return true
            }
            if received < 0 { usleep(50_000) }  // e.g. ECONNREFUSED while the server starts
        }
        return false
    }
}
