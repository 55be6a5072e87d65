import CURing
import STUN

extension cu_addr {

    init(_ address: TransportAddress) {
        self.init()
        port = address.port
        switch address.ip {
        case .v4(let a):
            family = 4
            withUnsafeMutableBytes(of: &bytes) { raw in
                raw[0] = UInt8(truncatingIfNeeded: a.value >> 24)
                raw[1] = UInt8(truncatingIfNeeded: a.value >> 16)
                raw[2] = UInt8(truncatingIfNeeded: a.value >> 8)
                raw[3] = UInt8(truncatingIfNeeded: a.value)
            }
        case .v6(let a):
            family = 6
            withUnsafeMutableBytes(of: &bytes) { raw in
                for i in 0..<8 {
                    raw[i] = UInt8(truncatingIfNeeded: a.high >> (56 - 8 * UInt64(i)))
                    raw[8 + i] = UInt8(truncatingIfNeeded: a.low >> (56 - 8 * UInt64(i)))
                }
            }
        }
    }

    init(ip: IPAddress, port: UInt16) {
        self.init(TransportAddress(ip: ip, port: port))
    }

    /// nil when the family is neither 4 nor 6.

    var transportAddress: TransportAddress? {
        withUnsafeBytes(of: bytes) { raw -> TransportAddress? in
            switch family {
            case 4:
                let v = UInt32(raw[0]) << 24 | UInt32(raw[1]) << 16 | UInt32(raw[2]) << 8 | UInt32(raw[3])
                return TransportAddress(ip: .v4(IPv4Address(v)), port: port)
            case 6:
                var high: UInt64 = 0, low: UInt64 = 0
                for i in 0..<8 {
                    high = high << 8 | UInt64(raw[i])
                    low = low << 8 | UInt64(raw[8 + i])
                }
                return TransportAddress(ip: .v6(IPv6Address(high: high, low: low)), port: port)
            default:
                return nil
            }
        }
    }
}
