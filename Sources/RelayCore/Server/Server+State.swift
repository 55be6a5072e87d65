import STUN

// What the handlers do to the tables (`AllocationTable`, `PeerTable`, reservations) beyond the
// tables' own bookkeeping: timers, socket requests, ports, the quota; and what happens when a timer
// fires. Every insertion here is behind a quota check in a handler.

extension Server {
    // MARK: Allocations

    /// Creates the allocation `plan` describes, in `opening`: asks the shell to open its sockets
    /// (the success response waits for the answers) and registers a new EVEN-PORT reservation.
    func createAllocation(_ plan: AllocationPlan, now: Instant, out: OutboundBatch) {
        let expiresAt = now.adding(seconds: UInt64(plan.lifetime))
        let id = allocations.insert { id in
            let pending = PendingAllocate(
                transactionID: plan.transactionID, lifetimeSeconds: plan.lifetime,
                reservationToken: plan.newReservation?.token, addressError: plan.addressError, signer: plan.signer,
                evenPort: plan.evenPort, usesReservedPort: plan.usesReservedPort,
                timer: timers.schedule(.pendingAllocation(id), at: now.adding(seconds: configuration.socketOpenTimeout)))
            return Allocation(client: plan.client, username: plan.username, ipv4: nil, ipv6: nil,
                              allocateTransaction: plan.transactionID, lifecycle: .opening(pending),
                              relayTransport: plan.relayTransport)
        }
        peers.attach(id, client: plan.client)
        for (family, port) in plan.relays {
            ports.markUsed(port, family)
            let handle = allocations.addRelay(family, port: port, to: id, expiresAt: expiresAt,
                                              timer: timers.schedule(.relay(id, family), at: expiresAt),
                                              portOwner: plan.portOwner)
            // The success response waits for the shell's answer (never optimistic: a port already in
            // use on the host must not produce an allocation that cannot relay).
            out.socketRequests.append(openRequest(handle, family: family, port: port, plan.relayTransport))
        }
        if let newReservation = plan.newReservation, let family = plan.relays.first?.family {
            // RFC 8656 §7.2: "Port N is used in the current allocation, while the relayed transport
            // address with port N+1 is assigned a token and reserved for a future allocation." No
            // socket is opened for N+1: it stays marked used here until the reservation expires
            // unclaimed or, claimed by another server, is given back (see ReservationRegistry).
            ports.markUsed(newReservation.port, family)
            let timer = timers.schedule(.reservation(newReservation.token), at: now.adding(seconds: configuration.reservationLifetime))
            reservations[newReservation.token] = Reservation(family: family, port: newReservation.port, timer: timer)
        }
        statistics.allocationsCreated &+= 1
    }

    /// Removes the allocation with everything that hangs off it: permissions, channels, timers and
    /// sockets (closed via `SocketRequest.close`; nothing is produced for them afterwards), and gives
    /// its place back to the process-wide quota.
    func deleteAllocation(_ id: AllocationID, now: Instant, out: OutboundBatch) {
        guard let allocation = allocations.remove(id) else { return }
        if allocation.relayTransport == .tcp { endTCPConnections(of: id, client: allocation.client, now: now, out: out) }
        peers.detach(id, timers: &timers, routes: &out.routeChanges)
        if let pending = allocation.pending { timers.cancel(pending.timer) }
        for relay in allocation.relays { closeRelay(relay, now: now, out: out) }
        allocationQuota.release(username: allocation.username)
    }

    /// Removes one relayed transport address of a dual allocation, with the permissions and
    /// channels towards peers of that family (only that address could reach them).
    func removeRelay(_ family: AddressFamily, of id: AllocationID, now: Instant, out: OutboundBatch) {
        guard let relay = allocations.removeRelay(family, of: id) else { return }
        peers.remove(of: id, family: family, timers: &timers, routes: &out.routeChanges)
        closeRelay(relay, now: now, out: out)
    }

    /// A relayed address that left its allocation (its socket entry already let go): its timer,
    /// its socket and its port.
    private func closeRelay(_ relay: RelaySocket, now: Instant, out: OutboundBatch) {
        timers.cancel(relay.timer)
        // Before the close request is carried out: from now on no datagram is relayed to it.
        if relay.isOpen { liveRelayPorts.setLive(relay.port, family: relay.family, false) }
        out.socketRequests.append(.close(relay.handle))
        releasePort(of: relay, now: now)
    }

    /// The shell's answer to an open. All sockets open → the success response. A failed bind is
    /// retried on another port (boundedly); then a dual allocation continues with the other
    /// family (ADDRESS-ERROR-CODE 508), a single one fails with 508.
    func handleSocketOpened(_ handle: SocketHandle, result: SocketOpenResult, now: Instant, out: OutboundBatch) {
        guard let index = handle.allocationIndex, let answered = allocations.openAnswered(socket: index) else { return }
        let (id, family) = answered
        guard let allocation = allocations.allocation(id), let pending = allocation.pending,
              let relay = allocation.relay(for: family), relay.handle == handle, !relay.isOpen else { return }
        switch result {
        case .opened:
            allocations.markOpen(family, of: id)
            liveRelayPorts.setLive(relay.port, family: family, true)
        case .failed:
            statistics.bindFailures &+= 1
            // Not ours after all: someone else on the host holds it.
            releasePort(of: relay, now: now)
            // A reserved N+1 is paired with this N, so an EVEN-PORT/R allocation is not moved; an
            // allocation for a RESERVATION-TOKEN gets that port or nothing.
            if relay.attempts < configuration.maxBindAttempts, pending.reservationToken == nil, !pending.usesReservedPort,
               let port = choosePort(PortAllocator.Request(families: [family], even: pending.evenPort)) {
                ports.markUsed(port, family)
                allocations.rebind(family, of: id, port: port)
                out.socketRequests.append(openRequest(handle, family: family, port: port, allocation.relayTransport))
                return
            }
            // No socket exists for this handle: its entry is free now.
            _ = allocations.dropFailedRelay(family, of: id)
            timers.cancel(relay.timer)
            if allocations[id].relayCount == 0 {
                failPendingAllocation(id, now: now, out: out)
                return
            }
            // RFC 8656 §7.2 step 9: "If the server can partially meet the request ... The error code
            // value signaled in the ADDRESS-ERROR-CODE attribute could be ... 508".
            allocations[id].updatePending { $0.addressError = (family, 508) }
        }
        if allocations[id].relays.allSatisfy(\.isOpen) {
            completePendingAllocation(id, now: now, out: out)
        }
    }

    /// The request that opens a relayed address: a UDP socket, or a listening TCP socket.
    func openRequest(_ handle: SocketHandle, family: AddressFamily, port: UInt16, _ transport: RelayTransport) -> SocketRequest {
        transport == .tcp ? .listen(handle, family: family, port: port) : .open(handle, family: family, port: port)
    }

    /// Every socket is open: the allocation becomes active and the success response goes out.
    func completePendingAllocation(_ id: AllocationID, now: Instant, out: OutboundBatch) {
        guard let pending = allocations.allocation(id)?.pending else { return }
        timers.cancel(pending.timer)
        allocations[id].lifecycle = .active(.init(reservationToken: pending.reservationToken, addressError: pending.addressError))
        // The lifetime runs from the moment the client is told about it.
        allocations[id].setExpiry(at: now.adding(seconds: UInt64(pending.lifetimeSeconds)), timers: &timers)
        sendAllocateSuccess(id, transactionID: pending.transactionID, signer: pending.signer,
                            lifetime: pending.lifetimeSeconds, reservationToken: pending.reservationToken,
                            addressError: pending.addressError, now: now, out: out)
    }

    /// No relayed address could be opened (or the shell never answered): 508, "The server has no
    /// more relayed transport addresses available" (RFC 8656 §7.4), and the allocation is removed.
    func failPendingAllocation(_ id: AllocationID, now: Instant, out: OutboundBatch) {
        guard let allocation = allocations.allocation(id), let pending = allocation.pending else { return }
        statistics.responses.count(errorCode: 508)
        statistics.responses.allocate.error &+= 1
        statistics.responses.byTransport[allocation.client.transport.rawValue].error &+= 1
        let type = STUNMessageType(method: .allocate, messageClass: .errorResponse)
        encode(type: type, transactionID: pending.transactionID, to: allocation.client, signer: pending.signer,
               fingerprint: pending.signer.fingerprint, now: now, out: out) { writer in
            writer.appendErrorCode(.insufficientCapacity)
        }
        deleteAllocation(id, now: now, out: out)
    }

    // MARK: Permissions and channels

    /// Installs or refreshes a permission for `peer` (RFC 8656 §9). Route changes go into `out`.
    func installPermission(_ id: AllocationID, peer: IPAddress, now: Instant, out: OutboundBatch) {
        peers.installPermission(id, peer: peer, expiresAt: now.adding(seconds: configuration.permissionLifetime), timers: &timers,
                                routes: &out.routeChanges)
    }

    /// Creates or refreshes a binding (RFC 8656 §12; the caller has checked that neither the number
    /// nor the peer is bound to something else) through `relay`. Route changes go into `out`.
    func bindChannel(_ id: AllocationID, number: ChannelNumber, peer: PeerSocket, relay: RelaySocket,
                     checksPeer: Bool = false, now: Instant, out: OutboundBatch) {
        peers.bindChannel(id, number: number, peer: peer, relayHandle: relay.handle, relayPort: relay.port, checksPeer: checksPeer,
                          peerIsLocal: peerPolicy.reachesThisHost(peer.address.ip), expiresAt: now.adding(seconds: configuration.channelLifetime), timers: &timers, routes: &out.routeChanges)
    }

    /// Makes the permissions and channels obey the peer policy just loaded. RFC 8656 §10.2: "The
    /// server MAY impose restrictions on the IP address allowed in the XOR-PEER-ADDRESS
    /// attribute"; this server applies a new policy to what was granted under the old one too. A
    /// permission to an IP the policy now denies is revoked (counted), so its channels stay bound
    /// but relay nothing in either direction (routes down); a channel whose peer is no longer
    /// simply allowed (now on this host's addresses, or refused by port) is checked per datagram
    /// and has no route.
    func enforcePeerPolicy(out: OutboundBatch) {
        let revoked = peers.enforce(denies: { peerPolicy.evaluate($0) == .denied },
                                    classify: { (admission(of: $0) != .allowed, peerPolicy.reachesThisHost($0.ip)) },
                                    timers: &timers, routes: &out.routeChanges)
        statistics.permissionsRevokedByPolicy &+= revoked
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
        guard relay.portOwner == .otherServer else { return }
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
            guard allocations.allocation(id)?.relay(for: family) != nil else { return }
            _ = allocations[id].withRelay(family) { $0.timer = .none }
            if allocations[id].relayCount > 1 {
                removeRelay(family, of: id, now: now, out: out)
            } else {
                deleteAllocation(id, now: now, out: out)
                statistics.allocationsExpired &+= 1
            }
        case .pendingAllocation(let id):
            guard allocations.allocation(id)?.pending != nil else { return }
            allocations[id].updatePending { $0.timer = .none }
            failPendingAllocation(id, now: now, out: out)
        case .permission(let key):
            // RFC 8656 §9: "the permission expires and is deleted".
            peers.expirePermission(key, routes: &out.routeChanges)
        case .channel(let key):
            // RFC 8656 §12: "When the channel binding expires, the channel becomes unbound." The
            // entry stays for the cooldown so neither side can be rebound to something else.
            peers.unbindChannel(key, cooldownEnds: { $0.adding(seconds: configuration.channelCooldown) }, timers: &timers,
                                routes: &out.routeChanges)
        case .channelCooldown(let key):
            peers.endCooldown(key, routes: &out.routeChanges)
        case .reservation(let token):
            // RFC 8656 §7.2: "The server MUST hold this reservation for at least 30 seconds". It
            // is withdrawn from the registry atomically with respect to claims: either no server
            // can claim it any more and the port is free again here, or another server claimed it
            // first and the port stays out of this server's pool until it is given back.
            guard let reservation = reservations.removeValue(forKey: token) else { return }
            if reservationRegistry.withdraw(token) { ports.release(reservation.port, reservation.family) }
            collectGivenBackPorts()
        case .tcpConnection(let id):
            expireTCPConnection(id, now: now, out: out)
        case .giveBackClaimedPorts:
            for (port, family) in claimedPortsToGiveBack { reservationRegistry.giveBack(port: port, family: family) }
            claimedPortsToGiveBack.removeAll()
        }
    }
}
