import STUN

// Table operations: allocations and their sockets, permissions, channels, reservations, and what
// happens when their timers fire. Every insertion here is behind a quota check in a handler.

extension Server {
    /// RFC 8656 §9: "The Permission Lifetime MUST be 300 seconds (= 5 minutes)."
    static let permissionLifetime: UInt64 = 300
    /// RFC 8656 §12: "A channel binding lasts for 10 minutes unless refreshed."
    static let channelLifetime: UInt64 = 600
    /// RFC 8656 §12: "the client MUST wait 5 minutes after the channel binding expires before
    /// attempting to bind the channel number to a different transport address".
    static let channelCooldown: UInt64 = 300

    // MARK: Allocations

    func createAllocation(client: ClientSocket, username: String, relays: [(family: AddressFamily, port: UInt16)],
                          lifetime: UInt32, transactionID: TransactionID, signer: ResponseSigner, evenPort: Bool,
                          usesReservedPort: Bool = false, claimedFromOtherServer: Bool = false, newReservation: (token: UInt64, port: UInt16)?, addressError: (family: AddressFamily, code: Int)?,
                          now: Instant, out: OutboundBatch) {
        let id: AllocationID
        if let slot = freeAllocationSlots.popLast() {
            id = AllocationID(index: slot)
        } else {
            id = AllocationID(index: UInt32(allocations.count))
            allocations.append(nil)
        }
        let expiresAt = now.adding(seconds: UInt64(lifetime))
        let pending = PendingAllocate(
            transactionID: transactionID, lifetimeSeconds: lifetime, reservationToken: newReservation?.token,
            addressError: addressError, signer: signer, evenPort: evenPort, usesReservedPort: usesReservedPort,
            timer: timers.schedule(.pendingAllocation(id), at: now.adding(seconds: configuration.socketOpenTimeout)))
        var allocation = Allocation(client: client, username: username, ipv4: nil, ipv6: nil,
                                    allocateTransaction: transactionID, pending: pending)
        for (family, port) in relays {
            ports.markUsed(port, family)
            let handle = claimSocket(for: id, family: family, client: client)
            let relay = RelaySocket(handle: handle, family: family, port: port, isOpen: false, attempts: 1,
                                    expiresAt: expiresAt, timer: timers.schedule(.relay(id, family), at: expiresAt),
                                    claimed: claimedFromOtherServer)
            allocation.setRelay(relay, family)
            // The success response waits for the shell's answer (never optimistic: a port already in
            // use on the host must not produce an allocation that cannot relay).
            out.socketRequests.append(.open(handle, family: family, port: port))
        }
        if let newReservation, let family = relays.first?.family {
            // RFC 8656 §7.2: "Port N is used in the current allocation, while the relayed transport
            // address with port N+1 is assigned a token and reserved for a future allocation." No
            // socket is opened for N+1: it stays marked used here until the reservation expires
            // unclaimed or, claimed by another server, is given back (see ReservationRegistry).
            ports.markUsed(newReservation.port, family)
            let timer = timers.schedule(.reservation(newReservation.token), at: now.adding(seconds: configuration.reservationLifetime))
            reservations[newReservation.token] = Reservation(family: family, port: newReservation.port, timer: timer)
        }
        allocations[Int(id.index)] = allocation
        allocationByClient[client] = id
        allocationsPerUsername[username, default: 0] += 1
        statistics.allocationsCreated &+= 1
    }

    /// Removes the allocation with everything that hangs off it: permissions, channels, timers and
    /// sockets (closed via `SocketRequest.close`; nothing is produced for them afterwards).
    func deleteAllocation(_ id: AllocationID, now: Instant, out: OutboundBatch) {
        guard let allocation = allocations[Int(id.index)] else { return }
        for peer in allocation.permissions {
            if let permission = permissions.removeValue(forKey: PermissionKey(allocation: id, peer: peer)) {
                timers.cancel(permission.timer)
            }
        }
        for number in allocation.channels {
            if let channel = channels.removeValue(forKey: ChannelKey(client: allocation.client, number: number)) {
                timers.cancel(channel.timer)
                channelByPeer[PeerChannelKey(allocation: id, peer: channel.peer)] = nil
            }
        }
        if let pending = allocation.pending { timers.cancel(pending.timer) }
        for relay in allocation.relays {
            timers.cancel(relay.timer)
            releaseSocket(relay)
            out.socketRequests.append(.close(relay.handle))
            releasePort(of: relay, now: now)
        }
        allocations[Int(id.index)] = nil
        freeAllocationSlots.append(id.index)
        allocationByClient[allocation.client] = nil
        let remaining = (allocationsPerUsername[allocation.username] ?? 1) - 1
        allocationsPerUsername[allocation.username] = remaining > 0 ? remaining : nil
    }

    /// Removes one relayed transport address of a dual allocation, with the permissions and
    /// channels towards peers of that family (only that address could reach them).
    func removeRelay(_ family: AddressFamily, of id: AllocationID, now: Instant, out: OutboundBatch) {
        guard var allocation = allocations[Int(id.index)], let relay = allocation.relay(for: family) else { return }
        for peer in allocation.permissions where peer.family == family {
            if let permission = permissions.removeValue(forKey: PermissionKey(allocation: id, peer: peer)) {
                timers.cancel(permission.timer)
            }
            allocation.permissions.remove(peer)
        }
        for number in allocation.channels {
            let key = ChannelKey(client: allocation.client, number: number)
            guard let channel = channels[key], channel.peer.address.family == family else { continue }
            channels[key] = nil
            timers.cancel(channel.timer)
            channelByPeer[PeerChannelKey(allocation: id, peer: channel.peer)] = nil
            allocation.channels.remove(number)
        }
        timers.cancel(relay.timer)
        releaseSocket(relay)
        out.socketRequests.append(.close(relay.handle))
        releasePort(of: relay, now: now)
        allocation.setRelay(nil, family)
        allocations[Int(id.index)] = allocation
    }

    /// The shell's answer to an open. All sockets open → the success response. A failed bind is
    /// retried on another port (boundedly); then a dual allocation continues with the other
    /// family (ADDRESS-ERROR-CODE 508), a single one fails with 508.
    func handleSocketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, out: OutboundBatch) {
        guard let index = handle.allocationIndex, index < sockets.count else { return }
        let entry = sockets[index]
        guard entry.allocation != .max else {
            if entry.awaitingOpenAnswer {
                sockets[index] = .free
                freeSockets.push(index)
            }
            return
        }
        let id = AllocationID(index: entry.allocation)
        guard var allocation = allocations[Int(id.index)], var pending = allocation.pending,
              var relay = allocation.relay(for: entry.family), relay.handle == handle, !relay.isOpen else { return }
        switch result {
        case .opened:
            relay.isOpen = true
            sockets[index].isOpen = true
            liveRelayPorts.setLive(relay.port, family: relay.family, true)
            if relay.family == .ipv4 { allocation.ipv4 = relay } else { allocation.ipv6 = relay }
        case .failed:
            statistics.bindFailures &+= 1
            // Not ours after all: someone else on the host holds it.
            releasePort(of: relay, now: now)
            // A reserved N+1 is paired with this N, so an EVEN-PORT/R allocation is not moved; an
            // allocation for a RESERVATION-TOKEN gets that port or nothing.
            if relay.attempts < configuration.maxBindAttempts, pending.reservationToken == nil, !pending.usesReservedPort,
               let port = choosePort(PortAllocator.Request(families: [relay.family], even: pending.evenPort)) {
                ports.markUsed(port, relay.family)
                relay.port = port
                relay.claimed = false
                relay.attempts += 1
                if relay.family == .ipv4 { allocation.ipv4 = relay } else { allocation.ipv6 = relay }
                allocations[Int(id.index)] = allocation
                out.socketRequests.append(.open(handle, family: relay.family, port: port))
                return
            }
            // No socket exists for this handle: free it now.
            sockets[index] = .free
            freeSockets.push(index)
            timers.cancel(relay.timer)
            allocation.setRelay(nil, relay.family)
            if allocation.ipv4 == nil && allocation.ipv6 == nil {
                allocations[Int(id.index)] = allocation
                failPendingAllocation(id, now: now, out: out)
                return
            }
            // RFC 8656 §7.2 step 9: "If the server can partially meet the request ... The error code
            // value signaled in the ADDRESS-ERROR-CODE attribute could be ... 508".
            pending.addressError = (relay.family, 508)
            allocation.pending = pending
        }
        allocations[Int(id.index)] = allocation
        if allocation.relays.allSatisfy(\.isOpen) {
            completePendingAllocation(id, now: now, out: out)
        }
    }

    func completePendingAllocation(_ id: AllocationID, now: Instant, out: OutboundBatch) {
        guard var allocation = allocations[Int(id.index)], let pending = allocation.pending else { return }
        timers.cancel(pending.timer)
        allocation.pending = nil
        allocation.reservationToken = pending.reservationToken
        allocation.addressError = pending.addressError
        // The lifetime runs from the moment the client is told about it.
        for var relay in allocation.relays {
            relay.expiresAt = now.adding(seconds: UInt64(pending.lifetimeSeconds))
            timers.reschedule(relay.timer, at: relay.expiresAt)
            allocation.setRelay(relay, relay.family)
        }
        allocations[Int(id.index)] = allocation
        sendAllocateSuccess(id, transactionID: pending.transactionID, signer: pending.signer,
                            lifetime: pending.lifetimeSeconds, reservationToken: pending.reservationToken,
                            addressError: pending.addressError, now: now, out: out)
    }

    /// No relayed address could be opened (or the shell never answered): 508, "The server has no
    /// more relayed transport addresses available" (RFC 8656 §7.4), and the allocation is removed.
    func failPendingAllocation(_ id: AllocationID, now: Instant, out: OutboundBatch) {
        guard let allocation = allocations[Int(id.index)], let pending = allocation.pending else { return }
        statistics.responses.count(errorCode: 508)
        statistics.responses.allocate.error &+= 1
        let type = STUNMessageType(method: .allocate, messageClass: .errorResponse)
        encode(type: type, transactionID: pending.transactionID, to: allocation.client, signer: pending.signer,
               fingerprint: pending.signer.fingerprint, now: now, out: out) { writer in
            writer.appendErrorCode(.insufficientCapacity)
        }
        deleteAllocation(id, now: now, out: out)
    }

    // MARK: Allocation sockets

    func claimSocket(for id: AllocationID, family: AddressFamily, client: ClientSocket) -> SocketHandle {
        let index: Int
        if let free = freeSockets.pop() {
            index = free
        } else {
            index = sockets.count
            sockets.append(.free)
        }
        sockets[index] = SocketEntry(allocation: id.index, family: family, isOpen: false, client: client)
        return .allocation(index: index)
    }

    func releaseSocket(_ relay: RelaySocket) {
        guard let index = relay.handle.allocationIndex, index < sockets.count else { return }
        if relay.isOpen {
            // Before the close request is carried out: from now on no datagram is relayed to it.
            liveRelayPorts.setLive(relay.port, family: relay.family, false)
            sockets[index] = .free
            freeSockets.push(index)
        } else {
            // The open is still in flight; the handle is reusable once the shell has answered it.
            sockets[index] = .free
            sockets[index].awaitingOpenAnswer = true
        }
    }

    // MARK: Permissions and channels

    /// RFC 8656 §9: "If no permission for that IP address exists, then a permission is created ...
    /// If a permission for that IP address already exists, then the time-to-expiry for that
    /// permission is reset to Permission Lifetime."
    func installPermission(_ id: AllocationID, peer: IPAddress, now: Instant) {
        let key = PermissionKey(allocation: id, peer: peer)
        let expiresAt = now.adding(seconds: Self.permissionLifetime)
        if var permission = permissions[key] {
            permission.expiresAt = expiresAt
            timers.reschedule(permission.timer, at: expiresAt)
            permissions[key] = permission
        } else {
            permissions[key] = Permission(expiresAt: expiresAt, timer: timers.schedule(.permission(key), at: expiresAt))
            allocations[Int(id.index)]?.permissions.insert(peer)
            setChannelsPermitted(id, peer: peer, true)
        }
    }

    /// Keeps the channels' copy of the permission state in step (at most
    /// `maxChannelsPerAllocation` entries, on the slow path only).
    func setChannelsPermitted(_ id: AllocationID, peer: IPAddress, _ permitted: Bool) {
        guard let allocation = allocations[Int(id.index)] else { return }
        for number in allocation.channels {
            let key = ChannelKey(client: allocation.client, number: number)
            guard var channel = channels[key], channel.peer.address.ip == peer else { continue }
            channel.isPermitted = permitted
            channels[key] = channel
            channelByPeer[PeerChannelKey(allocation: id, peer: channel.peer)]?.isPermitted = permitted
        }
    }

    /// Creates or refreshes a binding (the caller has checked that neither the number nor the peer
    /// is bound to something else). RFC 8656 §12: "Refreshing the binding ... resets the
    /// time-to-expiry timer back to 10 minutes."
    func bindChannel(_ id: AllocationID, number: ChannelNumber, peer: PeerSocket, relayHandle: SocketHandle,
                     peerIsOwnAddress: Bool = false, now: Instant) {
        guard let client = allocations[Int(id.index)]?.client else { return }
        let key = ChannelKey(client: client, number: number)
        let expiresAt = now.adding(seconds: Self.channelLifetime)
        if var channel = channels[key] {
            channel.expiresAt = expiresAt
            if channel.isBound {
                timers.reschedule(channel.timer, at: expiresAt)
            } else {
                // Rebinding the same pair during the cooldown binds it again.
                timers.cancel(channel.timer)
                channel.timer = timers.schedule(.channel(key), at: expiresAt)
                channel.isBound = true
            }
            channels[key] = channel
        } else {
            let permitted = permissions[PermissionKey(allocation: id, peer: peer.address.ip)] != nil
            channels[key] = Channel(allocation: id, peer: peer, relayHandle: relayHandle, isBound: true, isPermitted: permitted,
                                    peerIsOwnAddress: peerIsOwnAddress,
                                    expiresAt: expiresAt, timer: timers.schedule(.channel(key), at: expiresAt))
            allocations[Int(id.index)]?.channels.insert(number)
        }
        let permitted = channels[key]?.isPermitted ?? false
        channelByPeer[PeerChannelKey(allocation: id, peer: peer)] = PeerChannel(number: number, isBound: true, isPermitted: permitted)
    }

    // MARK: Reservations and claimed ports

    /// Forgets one of this server's reservations that it claimed itself: the port stays marked
    /// used, now by the allocation.
    func dropReservation(_ token: UInt64) {
        guard let reservation = reservations.removeValue(forKey: token) else { return }
        timers.cancel(reservation.timer)
    }

    /// Frees a relayed address's port: in this server's allocator, and for a port claimed from
    /// another server's reservation also towards the registry (by the give-back timer, on a later
    /// call: the close request for its socket is carried out first).
    func releasePort(of relay: RelaySocket, now: Instant) {
        ports.release(relay.port, relay.family)
        guard relay.claimed else { return }
        if claimedPortsToGiveBack.isEmpty {
            // 1 ns later, so it never fires in the `handleTimeout` call that queued it.
            _ = timers.schedule(.giveBackClaimedPorts, at: now.adding(nanoseconds: 1))
        }
        claimedPortsToGiveBack.append((relay.port, relay.family))
    }

    /// Takes back the ports of this server's reservations that other servers claimed and have
    /// since given back. True when there was any.
    @discardableResult
    func collectGivenBackPorts() -> Bool {
        let back = reservationRegistry.takeGivenBack(owner: registryMember)
        for port in back { ports.release(port.port, port.family) }
        return !back.isEmpty
    }

    // MARK: Expiry

    /// One fired timer. The timer is gone from the queue, so the entry's reference to it is
    /// cleared first and the deletion paths do not cancel it again.
    func expire(_ target: TimerTarget, now: Instant, out: OutboundBatch) {
        switch target {
        case .relay(let id, let family):
            // RFC 8656 §6: "When an allocation expires, the state data associated with the
            // allocation can be freed." A dual allocation loses one address at a time.
            guard var allocation = allocations[Int(id.index)], var relay = allocation.relay(for: family) else { return }
            relay.timer = .none
            allocation.setRelay(relay, family)
            allocations[Int(id.index)] = allocation
            if allocation.relays.count > 1 {
                removeRelay(family, of: id, now: now, out: out)
            } else {
                deleteAllocation(id, now: now, out: out)
                statistics.allocationsExpired &+= 1
            }
        case .pendingAllocation(let id):
            allocations[Int(id.index)]?.pending?.timer = .none
            failPendingAllocation(id, now: now, out: out)
        case .permission(let key):
            // RFC 8656 §9: "the permission expires and is deleted".
            permissions[key] = nil
            allocations[Int(key.allocation.index)]?.permissions.remove(key.peer)
            setChannelsPermitted(key.allocation, peer: key.peer, false)
        case .channel(let key):
            // RFC 8656 §12: "When the channel binding expires, the channel becomes unbound." The
            // entry stays for the cooldown so neither side can be rebound to something else.
            guard var channel = channels[key] else { return }
            channel.isBound = false
            channel.timer = timers.schedule(.channelCooldown(key), at: channel.expiresAt.adding(seconds: Self.channelCooldown))
            channels[key] = channel
            channelByPeer[PeerChannelKey(allocation: channel.allocation, peer: channel.peer)]?.isBound = false
        case .channelCooldown(let key):
            guard let channel = channels.removeValue(forKey: key) else { return }
            channelByPeer[PeerChannelKey(allocation: channel.allocation, peer: channel.peer)] = nil
            allocations[Int(channel.allocation.index)]?.channels.remove(key.number)
        case .reservation(let token):
            // RFC 8656 §7.2: "The server MUST hold this reservation for at least 30 seconds". It
            // is withdrawn from the registry atomically with respect to claims: either no server
            // can claim it any more and the port is free again here, or another server claimed it
            // first and the port stays out of this server's pool until it is given back.
            guard let reservation = reservations.removeValue(forKey: token) else { return }
            if reservationRegistry.withdraw(token) { ports.release(reservation.port, reservation.family) }
            collectGivenBackPorts()
        case .giveBackClaimedPorts:
            for (port, family) in claimedPortsToGiveBack { reservationRegistry.giveBack(port: port, family: family) }
            claimedPortsToGiveBack.removeAll()
        }
    }
}
