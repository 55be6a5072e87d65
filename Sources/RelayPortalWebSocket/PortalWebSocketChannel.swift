import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import RelayPortal
import Synchronization
import WSClient
@_spi(WSInternal) import WSCore

/// The portal refused the WebSocket upgrade with this HTTP response.
struct PortalUpgradeRefused: Error, CustomStringConvertible {
    var rejection: PortalRejection
    var description: String { "HTTP \(rejection.status)" }
}

/// The `WebSocketContext` handed to the data handler.
struct PortalWebSocketContext: WebSocketContext {
    let logger: Logger
}

/// One WebSocket connection to the portal, as WSClient's `WebSocketClient` makes it, except that an
/// upgrade the portal refuses is reported with its status, `Retry-After` and body
/// (`PortalUpgradeRefused`) instead of a bare "upgrade failed": the relay must tell a 401 (fatal)
/// from a 503 with `Retry-After` (wait that long) from other errors (back off).
struct PortalWebSocketChannel: ClientConnectionChannel {
    enum Upgrade: Sendable {
        case websocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        case refused(EventLoopFuture<PortalRejection>)
    }

    typealias Value = EventLoopFuture<Upgrade>
    typealias Result = WebSocketCloseFrame?

    let host: String
    let port: Int
    /// Path and query of the request.
    let target: String
    let headers: HTTPFields
    let maxFrameSize: Int
    let sslContext: NIOSSLContext?
    let handler: WebSocketDataHandler<PortalWebSocketContext>
    /// Set when the WebSocket layer refused what the portal sent (`FrameErrorObserver`): NIO's
    /// frame decoder then closes the connection itself (close code 1009 for a frame over
    /// `maxFrameSize`) and the data handler only sees its inbound stream end.
    let rejected: FrameRejection

    /// `url` is ws:// or wss://.
    init(url: String, headers: HTTPFields, maxFrameSize: Int, rejected: FrameRejection = FrameRejection(),
         handler: @escaping WebSocketDataHandler<PortalWebSocketContext>) throws {
        self.rejected = rejected
        guard let components = URLComponents(string: url), let host = components.host, !host.isEmpty,
              let scheme = components.scheme?.lowercased(), scheme == "ws" || scheme == "wss"
        else { throw WebSocketClientError.invalidURL }
        let secure = scheme == "wss"
        self.host = host
        port = components.port ?? (secure ? 443 : 80)
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        target = path + (components.percentEncodedQuery.map { "?\($0)" } ?? "")
        self.headers = headers
        self.maxFrameSize = maxFrameSize
        sslContext = secure ? try NIOSSLContext(configuration: .makeClientConfiguration()) : nil
        self.handler = handler
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture { try configure(channel) }
    }

    private func configure(_ channel: any Channel) throws -> Value {
        let collector = RefusalCollector(promise: channel.eventLoop.makePromise())
        let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(maxFrameSize: maxFrameSize) { channel, _ in
            channel.eventLoop.makeCompletedFuture {
                // Upgraded: the collector must not see WebSocket frames.
                _ = channel.pipeline.syncOperations.removeHandler(collector)
                try channel.pipeline.syncOperations.addHandler(FrameErrorObserver(rejected: rejected))
                return .websocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
            }
        }
        var request = HTTPHeaders()
        let hostHeader = host.contains(":") ? "[\(host)]" : host
        let defaultPort = sslContext == nil ? 80 : 443
        request.add(name: "Host", value: port == defaultPort ? hostHeader : "\(hostHeader):\(port)")
        for field in headers { request.add(name: field.name.rawName, value: field.value) }
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: request)
        let upgrade = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
            upgradeRequestHead: head, upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                // The refusing response is passed down the pipeline after this returns: the
                // collector, last in the pipeline, reads it.
                channel.eventLoop.makeSucceededFuture(.refused(collector.promise.futureResult))
            })
        var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: upgrade)
        pipeline.leftOverBytesStrategy = .forwardBytes
        if let sslContext {
            let tls = try NIOSSLClientHandler(context: sslContext, serverHostname: host.contains(":") ? nil : host)
            try channel.pipeline.syncOperations.addHandler(tls, position: .first)
        }
        let result = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: pipeline)
        try channel.pipeline.syncOperations.addHandler(collector)
        return result
    }

    func handle(value: Value, logger: Logger) async throws -> WebSocketCloseFrame? {
        switch try await value.get() {
        case .websocket(let channel):
            return try await WebSocketHandler.handle(
                type: .client,
                configuration: .init(extensions: [], autoPing: .disabled, validateUTF8: true, maxFrameSize: maxFrameSize),
                asyncChannel: channel, context: PortalWebSocketContext(logger: logger), handler: handler)
        case .refused(let response):
            throw PortalUpgradeRefused(rejection: try await response.get())
        }
    }
}

/// Reads the HTTP response of a refused upgrade: status, `Retry-After`, and up to 16 KiB of body.
/// Completes at the response's end or when the connection closes, whichever comes first.
private final class RefusalCollector: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    let promise: EventLoopPromise<PortalRejection>
    private var head: HTTPResponseHead?
    private var body = ""
    private var done = false

    init(promise: EventLoopPromise<PortalRejection>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let response):
            head = response
        case .body(let buffer):
            if body.utf8.count < 16 * 1024 { body += String(buffer: buffer) }
        case .end:
            finish()
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(error)
        context.fireErrorCaught(error)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(CancellationError())
    }

    private func finish(_ error: (any Error)? = nil) {
        guard !done else { return }
        guard let head else {
            if let error {
                done = true
                promise.fail(error)
            }
            return
        }
        done = true
        let retryAfter = head.headers.first(name: "retry-after").flatMap { PortalRejection.retryAfter($0) }
        promise.succeed(PortalRejection(status: Int(head.status.code), retryAfter: retryAfter, body: body))
    }
}

/// Whether the WebSocket layer refused a frame of this connection, and why.
final class FrameRejection: Sendable {
    private let reason = Mutex<String?>(nil)
    private let told = Mutex(false)
    var value: String? { reason.withLock { $0 } }
    func record(_ text: String) { reason.withLock { $0 = $0 ?? text } }
    /// The channel has been told (once, on the refusal itself); later reports are skipped.
    var hasBeenTold: Bool { told.withLock { $0 } }
    func markTold() { told.withLock { $0 = true } }
}

/// Sits after NIO's WebSocket frame decoder and its protocol error handler: notes a
/// `NIOWebSocketError` (a frame over the size limit, a fragmented or over-long control frame, ...)
/// on its way to the async channel, which ends the inbound stream without saying why.
private final class FrameErrorObserver: ChannelInboundHandler, Sendable {
    typealias InboundIn = WebSocketFrame
    typealias InboundOut = WebSocketFrame

    let rejected: FrameRejection

    init(rejected: FrameRejection) { self.rejected = rejected }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError { rejected.record("\(error)") }
        context.fireErrorCaught(error)
    }
}
