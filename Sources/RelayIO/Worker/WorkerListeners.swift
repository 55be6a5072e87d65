import CUDP
import Glibc
import RelayCore
import STUN

/// One worker's bound listener sockets: the TURN UDP port (one per family) and the stream
/// (TCP/TLS) listeners, all in their ports' SO_REUSEPORT groups.
///
/// `RelayRuntime` opens every worker's listeners before it starts any worker. The kernel picks a
/// UDP group member by hashing the client's address over the members bound at that moment, so a
/// worker that answered before the next worker bound would later see its clients' requests
/// hashed to that other worker, which holds no allocation for them (437 Allocation Mismatch).
public struct WorkerListeners: Sendable {
    let udp: [SendableListener]
    let udpAddresses: [TransportAddress]
    let streams: [SendableStreamListener]
    let streamAddresses: [StreamListenerAddress]

    struct StreamListenerAddress: Sendable {
        let transport: StreamTransport
        let address: TransportAddress
    }

    /// Binds the listeners `configuration` asks for; on any failure closes what it opened and throws.
    public static func open(_ configuration: WorkerConfiguration) throws(RelayIOError) -> WorkerListeners {
        var udp: [SendableListener] = []
        var addresses: [TransportAddress] = []
        var streams: [SendableStreamListener] = []
        var streamAddresses: [StreamListenerAddress] = []
        func closeAll() {
            for l in udp { _ = cu_close(l.fd) }
            for l in streams { _ = cu_close(l.fd) }
        }
        var binds: [(SocketHandle, IPAddress)] = []
        if let ip = configuration.listenIPv4 { binds.append((.listener(.ipv4), .v4(ip))) }
        if let ip = configuration.listenIPv6 { binds.append((.listener(.ipv6), .v6(ip))) }
        for (handle, ip) in binds {
            var address = cu_addr(ip: ip, port: configuration.listenPort)
            var options = Int32(CU_SO_REUSEPORT.rawValue) | Int32(CU_SO_V6ONLY.rawValue)
            if configuration.enableGRO { options |= Int32(CU_SO_GRO.rawValue) }
            if configuration.disableChecksumsForTesting { options |= Int32(CU_SO_NO_CHECK.rawValue) }
            var gro: Int32 = 0
            let fd = cu_udp_socket(&address, options, Int32(clamping: configuration.socketBufferBytes), &gro)
            guard fd >= 0 else {
                closeAll()
                throw .socket(TransportAddress(ip: ip, port: configuration.listenPort), errno: -fd)
            }
            udp.append(SendableListener(handle: handle, fd: fd))
            var local = cu_addr()
            if cu_local_address(fd, &local) == 0, let bound = local.transportAddress {
                addresses.append(bound)
            }
        }
        // Stream listeners (TURN over TCP and TLS), one per worker per address and port, like the
        // UDP ones (SO_REUSEPORT spreads connections across the workers).
        var streamPorts: [(UInt16, StreamTransport)] = []
        if let port = configuration.streams.tcpPort { streamPorts.append((port, .tcp)) }
        if let port = configuration.streams.tlsPort, configuration.streams.tls != nil { streamPorts.append((port, .tls)) }
        for (requested, transport) in streamPorts {
            for (handle, ip) in binds {
                // TCP on "the listen port": with port 0 (tests), the one the UDP listener got.
                var port = requested
                if port == 0 && transport == .tcp, let bound = addresses.first(where: { $0.family == (handle == .listener(.ipv4) ? .ipv4 : .ipv6) }) {
                    port = bound.port
                }
                var address = cu_addr(ip: ip, port: port)
                let options = Int32(CU_SO_REUSEPORT.rawValue) | Int32(CU_SO_V6ONLY.rawValue)
                let fd = cu_tcp_listener(&address, options, configuration.streams.backlog)
                guard fd >= 0 else {
                    closeAll()
                    throw .socket(TransportAddress(ip: ip, port: port), errno: -fd)
                }
                streams.append(SendableStreamListener(fd: fd, transport: transport))
                var local = cu_addr()
                if cu_local_address(fd, &local) == 0, let bound = local.transportAddress {
                    streamAddresses.append(StreamListenerAddress(transport: transport, address: bound))
                }
            }
        }
        return WorkerListeners(udp: udp, udpAddresses: addresses, streams: streams, streamAddresses: streamAddresses)
    }

    /// Closes every socket (listeners never handed to a worker).
    func close() {
        for l in udp { _ = cu_close(l.fd) }
        for l in streams { _ = cu_close(l.fd) }
    }
}
