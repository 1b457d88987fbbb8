import CoreMetrics
import Logging
import NIOCore
import NIOHTTPTypes

/// Closes an HTTP connection whose request head has not arrived in full within `timeout` of its
/// first byte (or of the connection's start): a client sending its headers a byte at a time
/// (slowloris) cannot hold connections open. A keep-alive connection waiting for its next request
/// is the idle timeout's business, not this one's.
///
/// It sits after the HTTP decoder, where Hummingbird puts extra handlers, and puts a small
/// ``ByteWatcher`` at the front of the pipeline to hear when a new request's first bytes arrive.
///
/// Metric: `rekey_gateway_connections_closed_total{reason="slow_headers"}`.
final class HeaderDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let timeout: TimeAmount
    private let logger: Logger
    private var timer: Scheduled<Void>?
    /// Between requests: the next bytes that arrive start the clock for the next head.
    private var betweenRequests = false

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let watcher = ByteWatcher { handler.value.bytesArrived(context: context) }
        try? context.pipeline.syncOperations.addHandler(watcher, position: .first)
        // The first request's head is due from the start of the connection.
        self.arm(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = Self.unwrapInboundIn(data) {
            self.cancel()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = Self.unwrapOutboundIn(data) {
            self.betweenRequests = true
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancel()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancel()
    }

    fileprivate func bytesArrived(context: ChannelHandlerContext) {
        guard self.betweenRequests else { return }
        self.betweenRequests = false
        self.arm(context: context)
    }

    private func arm(context: ChannelHandlerContext) {
        self.timer?.cancel()
        let channel = context.channel
        let logger = self.logger
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            logger.debug("closing a connection whose request headers did not arrive in time")
            Counter(label: "rekey_gateway_connections_closed_total", dimensions: [("reason", "slow_headers")]).increment()
            channel.close(promise: nil)
        }
    }

    private func cancel() {
        self.timer?.cancel()
        self.timer = nil
    }
}

/// Tells its owner that bytes arrived, and passes them on untouched.
private final class ByteWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let arrived: () -> Void

    init(arrived: @escaping () -> Void) {
        self.arrived = arrived
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.arrived()
        context.fireChannelRead(data)
    }
}
