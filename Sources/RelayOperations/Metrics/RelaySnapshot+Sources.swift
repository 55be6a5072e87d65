import RelayCore
import RelayIO

extension RelaySnapshot {
    /// The core's counters under their exported names. Every `ServerStatistics` field is mapped.
    public init(_ s: ServerStatistics) {
        self.init()
        self[.allocationsCreated] = s.allocationsCreated
        self[.allocationsExpired] = s.allocationsExpired
        self[.allocationsDeleted] = s.allocationsDeleted
        self[.allocationBindFailures] = s.bindFailures

        let r = s.responses
        self[.responsesSuccess] = r.success
        self[.responses300] = r.tryAlternate300
        self[.responses400] = r.badRequest400
        self[.responses401] = r.unauthorized401
        self[.responses403] = r.forbidden403
        self[.responses420] = r.unknownAttribute420
        self[.responses437] = r.allocationMismatch437
        self[.responses438] = r.staleNonce438
        self[.responses440] = r.addressFamilyNotSupported440
        self[.responses441] = r.wrongCredentials441
        self[.responses442] = r.unsupportedTransport442
        self[.responses443] = r.peerAddressFamilyMismatch443
        self[.responses486] = r.quotaReached486
        self[.responses500] = r.serverError500
        self[.responses508] = r.insufficientCapacity508
        self[.responsesRetransmitted] = r.retransmitted
        self[.responsesBareChallenges] = r.bareChallenges
        self[.responsesBindingSuccess] = r.binding.success
        self[.responsesBindingError] = r.binding.error
        self[.responsesAllocateSuccess] = r.allocate.success
        self[.responsesAllocateError] = r.allocate.error
        self[.responsesRefreshSuccess] = r.refresh.success
        self[.responsesRefreshError] = r.refresh.error
        self[.responsesCreatePermissionSuccess] = r.createPermission.success
        self[.responsesCreatePermissionError] = r.createPermission.error
        self[.responsesChannelBindSuccess] = r.channelBind.success
        self[.responsesChannelBindError] = r.channelBind.error
        self[.responsesOtherMethodSuccess] = r.otherMethod.success
        self[.responsesOtherMethodError] = r.otherMethod.error
        // RFC 8489 §9.2.4: a 401 carries the NONCE a client must use, a 438 a fresh one; both are
        // the server's nonce challenges.
        self[.nonceChallenges401] = r.unauthorized401
        self[.nonceChallenges438] = r.staleNonce438
        self[.challengesRateLimited] = s.drops.challengeRateLimited

        self[.relayedPacketsClientToPeer] = s.clientToPeer.packets
        self[.relayedBytesClientToPeer] = s.clientToPeer.bytes
        self[.relayedPacketsPeerToClient] = s.peerToClient.packets
        self[.relayedBytesPeerToClient] = s.peerToClient.bytes
        self[.dataIndicationsSent] = s.dataIndicationsSent
        self[.sendIndicationsRelayed] = s.sendIndicationsRelayed

        let d = s.drops
        self[.dropSourcePortZero] = d.sourcePortZero
        self[.dropUnknownFirstByte] = d.unknownFirstByte
        self[.dropMalformed] = d.malformed
        self[.dropIgnoredMessage] = d.ignoredMessage
        self[.dropNoAllocation] = d.noAllocation
        self[.dropNoChannel] = d.noChannel
        self[.dropNoPermission] = d.noPermission
        self[.dropPeerDenied] = d.peerDenied
        self[.dropRateLimited] = d.challengeRateLimited
        self[.dropPendingRetransmission] = d.pendingRetransmission
        self[.dropOutputFull] = d.outputFull
    }

    /// An I/O worker's counters under their exported names.
    public init(_ w: WorkerStatistics) {
        self.init()
        func i(_ v: UInt64) -> Int { Int(truncatingIfNeeded: v) }
        self[.ioDatagramsReceived] = i(w.datagramsReceived)
        self[.ioBytesReceived] = i(w.bytesReceived)
        self[.ioDatagramsSent] = i(w.datagramsSent)
        self[.ioBytesSent] = i(w.bytesSent)
        self[.ioSendCalls] = i(w.sendCalls)
        self[.ioSegmentedSends] = i(w.segmentedSends)
        self[.ioCoalescedReceives] = i(w.coalescedReceives)
        self[.ioReceiveRearms] = i(w.receiveRearms)
        self[.ioReceiveBuffersExhausted] = i(w.receiveBuffersExhausted)
        self[.ioReceiveErrors] = i(w.receiveErrors)
        self[.ioSendErrors] = i(w.sendErrors)
        self[.ioSegmentationFallbacks] = i(w.segmentationFallbacks)
        self[.ioGSOFallbackDisabled] = i(w.gsoFallbackDisabled)
        self[.ioGSOFallbackSegmentLowered] = i(w.gsoFallbackSegmentLowered)
        self[.ioGSOFallbackDestinationRefused] = i(w.gsoFallbackDestinationRefused)
        self[.ioAllocationSocketsOpen] = w.allocationSocketsOpen
        self[.ioAllocationSocketsOpened] = i(w.allocationSocketsOpened)
        self[.ioAllocationSocketsFailed] = i(w.allocationSocketsFailed)
        self[.dropSendQueueFull] = i(w.droppedSendQueueFull)
        self[.dropTransmitBuffersFull] = i(w.droppedTransmitBuffersFull)
        self[.dropSocketBufferFull] = i(w.droppedSocketBufferFull)
        self[.dropTruncated] = i(w.droppedTruncated)
        self[.dropMalformedReceive] = i(w.droppedMalformedReceive)
        self[.dropGROSegments] = i(w.droppedGROSegments)
        self[.dropBatchFull] = i(w.droppedBatchFull)
        self[.dropOversize] = i(w.droppedOversize)
        self[.dropUnknownSocket] = i(w.droppedUnknownSocket)
        self[.dropInvalidOutbound] = i(w.droppedInvalidOutbound)
    }
}
