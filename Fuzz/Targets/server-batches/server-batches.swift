import FuzzSupport
import RelayCore
import STUN

@main enum Main { static func main() { runFuzzer(fuzzOne) } }

/// The whole `Server` fed arbitrary batches of datagrams from a fixed set of sources (clients,
/// peers, loopback, the relay's own address, source port 0) on the listeners, on allocation sockets
/// the server asked for and on one it never did; a fake clock the input advances; socket answers
/// (opened or EADDRINUSE) and peer-policy reloads. Seed fixed (1), a new server per input, so every
/// input reproduces. `ServerDriver` checks after every call: consistent, bounded tables; route
/// changes pairing up; no response without a request; in-place datagrams inside their buffers.
///
/// Input: a list of operations, each a byte and its arguments:
/// - 0, 1: a raw datagram (length byte, bytes);
/// - 2, 3: a STUN message with a correct header: type (2 bytes), transaction ID (its last byte;
///   the rest fixed, so retransmissions happen), attribute bytes (length byte, bytes), padded,
///   FINGERPRINT when the op byte's bit 3 is set;
/// - 4: send the batch (also sent when it holds 8 datagrams, and at the end);
/// - 5: advance the clock by a byte's worth of seconds (×4 when bit 3 is set), then the timers;
/// - 6: answer the pending socket opens, a byte choosing which fail;
/// - 7: reload the peer policy: default, or one denying 8.8.8.0/24 and allowing 127.0.0.0/8.
/// Datagram ops take a source byte and a socket byte first.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let driver = ServerDriver(seed: 1)
    var batch: [FuzzDatagram] = []
    func flush() {
        if !batch.isEmpty { driver.process(batch) }
        batch = []
    }
    var ops = 0
    while !input.isEmpty && ops < 256 {
        ops += 1
        let op = input.byte()
        switch op & 7 {
        case 0, 1, 2, 3:
            let source = input.pick(FuzzAddr.sources)
            let socketChoice = input.byte()
            let socket: SocketHandle
            switch socketChoice % 4 {
            case 0, 1: socket = .listener(source.family)
            case 2: socket = .listener(source.family == .ipv4 ? .ipv6 : .ipv4)
            default:
                let handles = driver.knownHandles + [.allocation(index: 999)]
                socket = handles[Int(socketChoice / 4) % handles.count]
            }
            let bytes: [UInt8]
            if op & 7 < 2 {
                bytes = input.chunk()
            } else {
                bytes = stunMessage(&input, fingerprint: op & 8 != 0)
            }
            batch.append(FuzzDatagram(bytes, from: source, on: socket))
            if batch.count == ServerDriver.maxBatch { flush() }
        case 4:
            flush()
        case 5:
            flush()
            driver.advance(seconds: UInt64(input.byte()) * (op & 8 != 0 ? 4 : 1))
        case 6:
            flush()
            let failing = input.byte()
            driver.answerOpens { failing & (1 << ($0 % 8)) != 0 }
        default:
            flush()
            driver.reload(peerPolicy: op & 8 == 0 ? PeerPolicy()
                          : PeerPolicy(allow: [CIDR("127.0.0.0/8")!], deny: [CIDR("8.8.8.0/24")!]))
        }
    }
    flush()
    driver.checkInvariants()
    return 0
}

/// A STUN message with a valid header around the input's attribute bytes.
func stunMessage(_ input: inout FuzzInput, fingerprint: Bool) -> [UInt8] {
    let type = input.uint16() & 0x3FFF
    let idByte = input.byte()
    var attributes = input.chunk()
    while attributes.count % 4 != 0 { attributes.append(0) }
    var message = [UInt8(type >> 8), UInt8(type & 0xFF), 0, 0, 0x21, 0x12, 0xA4, 0x42,
                   0xB0, 0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, idByte] + attributes
    if fingerprint {
        // Length including the FINGERPRINT attribute, then the CRC over everything before it.
        let length = attributes.count + 8
        message[2] = UInt8(length >> 8); message[3] = UInt8(length & 0xFF)
        let value = crc32(message) ^ 0x5354_554E
        message += [0x80, 0x28, 0x00, 0x04, UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    } else {
        message[2] = UInt8(attributes.count >> 8); message[3] = UInt8(attributes.count & 0xFF)
    }
    return message
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes {
        crc ^= UInt32(b)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return crc ^ 0xFFFF_FFFF
}
