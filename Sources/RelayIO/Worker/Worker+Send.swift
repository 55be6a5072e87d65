import CUDP
import Glibc
import RelayCore
import STUN
import SocketAddressing

extension Worker {

    /// Turns the batch's datagrams into sendmsg SQEs. A run of consecutive datagrams with the same
    /// socket, destination and length (the last may be shorter) becomes one sendmsg whose iovecs
    /// point at each datagram where it lies (receive buffers or transmit buffers) with a
    /// UDP_SEGMENT cmsg of that length: the kernel builds one GSO packet and segments it late.
    func submitSends(now: Instant) {
        let d = batch.datagrams
        var i = 0
        while i < d.count {
            let first = d[i]
            if first.socket.isConnection {
                writeToConnection(first, now: now)
                i += 1
                continue
            }
            var j = i + 1
            if gsoEnabled && first.length > 0 && first.length <= gsoMaxSegment {
                var total = first.length
                while j < d.count && j - i < SendTable.maxSegments {
                    let next = d[j]
                    guard next.socket == first.socket, next.length > 0, next.length <= first.length,
                          total + next.length <= WorkerLimits.maxRunBytes, next.destination == first.destination
                    else { break }
                    total += next.length
                    j += 1
                    // A shorter datagram can only end a run.
                    if next.length < first.length { break }
                }
            }
            submitRun(d, from: i, to: j)
            i = j
        }
    }

    /// Copies a datagram into a transmit buffer (arena datagrams, staged stream messages).
    @inline(__always) func copyToTransmit(_ datagram: OutboundDatagram) -> (UnsafeMutableRawPointer, Int)? {
        guard datagram.length >= 0, datagram.length <= tx.slotBytes else {
            statistics.droppedOversize &+= 1
            return nil
        }
        guard let t = tx.take() else {
            statistics.droppedTransmitBuffersFull &+= 1
            return nil
        }
        let copy = tx.slot(t)
        copy.copyMemory(from: datagram.bytes, byteCount: datagram.length)
        return (copy, t)
    }

    func submitRun(_ d: UnsafeBufferPointer<OutboundDatagram>, from: Int, to: Int) {
        let first = d[from]
        let fd = fd(for: first.socket)
        guard fd >= 0 else {
            statistics.droppedUnknownSocket &+= UInt64(to - from)
            return
        }
        guard let slot = sends.take(), let iov = backend.sendIovecs(slot) else {
            statistics.droppedSendQueueFull &+= UInt64(to - from)
            return
        }
        let refs = sends.references(of: slot)
        var n = 0
        for k in from..<to {
            let datagram = d[k]
            let reference: UInt32
            switch datagram.origin {
            case .received(WorkerLimits.stagedBufferID):
                // A message framed from a stream: its staging area is reused after this batch.
                if datagram.length > tx.slotBytes {
                    // Larger than a transmit buffer (ChannelData over TCP carries up to 64 KiB).
                    guard let (copy, t) = largeTransmit.take(copying: datagram.bytes, length: datagram.length) else {
                        statistics.droppedOversize &+= 1
                        continue
                    }
                    reference = SendTable.largeBit | UInt32(t)
                    iov[n] = iovec(iov_base: copy, iov_len: datagram.length)
                    break
                }
                guard let (copy, t) = copyToTransmit(datagram) else { continue }
                reference = SendTable.transmitBit | UInt32(t)
                iov[n] = iovec(iov_base: copy, iov_len: datagram.length)
            case .received(let id):
                let buffer = Int(id)
                guard buffer < rx.count, rx.holders[buffer] > 0,
                      rx.contains(datagram.bytes, length: datagram.length, slot: buffer) else {
                    statistics.droppedInvalidOutbound &+= 1
                    continue
                }
                rx.retain(buffer)
                reference = UInt32(buffer)
                iov[n] = iovec(iov_base: UnsafeMutableRawPointer(mutating: datagram.bytes), iov_len: datagram.length)
            case .arena:
                guard let (copy, t) = copyToTransmit(datagram) else { continue }
                reference = SendTable.transmitBit | UInt32(t)
                iov[n] = iovec(iov_base: copy, iov_len: datagram.length)
            }
            refs[n] = reference
            n += 1
        }
        guard n > 0 else {
            sends.give(slot)
            return
        }
        let segmentSize = n > 1 ? UInt16(truncatingIfNeeded: first.length) : 0
        var destination = cu_addr(first.destination)
        sends.socket[slot] = first.socket.raw
        sends.destination[slot] = destination
        sends.segments[slot] = UInt16(n)
        sends.segmentSize[slot] = segmentSize
        guard backend.prepareSend(slot: slot, fd: fd, destination: &destination, count: n, segmentSize: segmentSize,
                                    userData: UserData.send(slot)) else {
            statistics.droppedSendQueueFull &+= UInt64(n)
            releaseReferences(slot, count: n)
            sends.give(slot)
            return
        }
        statistics.sendCalls &+= 1
        if segmentSize != 0 { statistics.segmentedSends &+= 1 }
    }

    func handleSendCompletion(_ c: cu_completion) {
        let slot = Int(UInt32(truncatingIfNeeded: c.user_data))
        guard slot < sends.count else { return }
        let n = Int(sends.segments[slot])
        guard n > 0 else { return }
        let probe = sends.probeErrno[slot]
        if probe != 0 { concludeGSOProbe(refusal: probe, segmentSize: Int(sends.probeSegmentSize[slot]), singleSendResult: c.res) }
        if c.res < 0 {
            let error = -c.res
            let segmentSize = Int(sends.segmentSize[slot])
            if segmentSize != 0 && (error == EIO || error == EINVAL || error == ENOPROTOOPT) {
                // The kernel refused the GSO send. That may be GSO itself (EIO: no checksum offload
                // on the egress device; EINVAL: a segment wider than the path allows) or the
                // destination (EINVAL for port 0, say), which refuses the datagrams one by one
                // too. The run is re-sent one by one; the first single send's completion decides
                // (`concludeGSOProbe`), so one bad destination never turns GSO off.
                statistics.segmentationFallbacks &+= 1
                resendIndividually(slot, refusal: error, segmentSize: segmentSize)
                return
            }
            if error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS {
                // The socket's send buffer is full (the batched-syscalls backend never waits for
                // room): the datagrams are dropped, as a full egress queue drops them.
                statistics.droppedSocketBufferFull &+= UInt64(n)
            } else {
                statistics.sendErrors &+= 1
                statistics.lastSendErrno = error
            }
        } else {
            statistics.datagramsSent &+= UInt64(n)
            statistics.bytesSent &+= UInt64(c.res)
        }
        releaseReferences(slot, count: n)
        sends.give(slot)
    }

    /// The first single send of a refused GSO run completed with `singleSendResult`. Accepted one
    /// by one: the kernel refuses GSO on this path, so GSO is turned off for the worker (EIO,
    /// ENOPROTOOPT, or EINVAL for small segments) or the largest segment is lowered below the
    /// refused size (EINVAL for segments wider than 576 bytes, the path MTU). Refused one by one
    /// too: the destination is at fault and GSO stays as it was.
    func concludeGSOProbe(refusal: Int32, segmentSize: Int, singleSendResult: Int32) {
        guard singleSendResult >= 0 else {
            statistics.gsoFallbackDestinationRefused &+= 1
            return
        }
        if refusal == EINVAL && segmentSize > 576 {
            gsoMaxSegment = min(gsoMaxSegment, segmentSize - 1)
            statistics.gsoFallbackSegmentLowered &+= 1
        } else {
            gsoEnabled = false
            statistics.gsoFallbackDisabled &+= 1
        }
    }

    /// Re-sends each segment of a refused GSO send as its own sendmsg, moving the buffer holds over.
    /// The first one carries the refusal (`SendTable.probeErrno`) so its completion can tell who
    /// refused.
    func resendIndividually(_ slot: Int, refusal: Int32, segmentSize: Int) {
        var probePlaced = false
        let n = Int(sends.segments[slot])
        let refs = sends.references(of: slot)
        guard let oldIov = backend.sendIovecs(slot) else { return }
        let fd = fd(for: SocketHandle(raw: sends.socket[slot]))
        var destination = sends.destination[slot]
        for k in 0..<n {
            guard fd >= 0, let single = sends.take(), let iov = backend.sendIovecs(single) else {
                statistics.droppedSendQueueFull &+= 1
                release(refs[k])
                continue
            }
            iov[0] = oldIov[k]
            sends.references(of: single)[0] = refs[k]
            sends.socket[single] = sends.socket[slot]
            sends.destination[single] = destination
            sends.segments[single] = 1
            sends.segmentSize[single] = 0
            if !probePlaced {
                sends.probeErrno[single] = refusal
                sends.probeSegmentSize[single] = UInt16(truncatingIfNeeded: segmentSize)
            }
            if !backend.prepareSend(slot: single, fd: fd, destination: &destination, count: 1, segmentSize: 0,
                                    userData: UserData.send(single)) {
                statistics.droppedSendQueueFull &+= 1
                release(refs[k])
                sends.give(single)
            } else {
                statistics.sendCalls &+= 1
                probePlaced = true
            }
        }
        sends.give(slot)
    }

    func releaseReferences(_ slot: Int, count: Int) {
        let refs = sends.references(of: slot)
        for k in 0..<count { release(refs[k]) }
    }

    @inline(__always) func release(_ reference: UInt32) {
        if reference & (SendTable.transmitBit | SendTable.largeBit) == 0 {
            rx.release(Int(reference))
        } else if reference & SendTable.transmitBit != 0 {
            tx.give(Int(reference & ~SendTable.transmitBit))
        } else {
            largeTransmit.give(Int(reference & ~SendTable.largeBit))
        }
    }
}
