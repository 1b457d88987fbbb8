import CoreMetrics
import Logging
import NIOCore

/// Closes a connection whose peer began a frame and did not finish it within `timeout`, so that a
/// peer dripping bytes (one a second keeps the idle timer quiet) cannot hold a connection and its
/// buffer for long. Sits in front of the ``FrameDecoder`` and only counts bytes.
///
/// Metric: `rekey_rpc_server_connections_closed_total{reason="slow_frame"}`.
final class FrameDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let timeout: TimeAmount
    private let logger: Logger
    /// Bytes of the current frame's length prefix seen so far (up to 4).
    private var prefix: UInt32 = 0
    private var prefixBytes = 0
    /// Body bytes of the current frame still to come.
    private var remaining = 0
    private var timer: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Self.unwrapInboundIn(data).readableBytesView
        var index = bytes.startIndex
        while index < bytes.endIndex {
            if self.prefixBytes < FrameDecoder.prefixLength {
                self.prefix = self.prefix << 8 | UInt32(bytes[index])
                self.prefixBytes += 1
                index += 1
                if self.prefixBytes == FrameDecoder.prefixLength {
                    self.remaining = Int(self.prefix)
                }
            } else {
                let taken = min(self.remaining, bytes.endIndex - index)
                index += taken
                self.remaining -= taken
            }
            if self.prefixBytes == FrameDecoder.prefixLength, self.remaining == 0 {
                self.frameFinished()
            }
        }
        // The clock runs only for a frame this read left unfinished: frames that arrive whole (the
        // usual case) cost no timer.
        if self.prefixBytes > 0, self.timer == nil {
            self.arm(context: context)
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
    }

    private func arm(context: ChannelHandlerContext) {
        let channel = context.channel
        let (logger, timeout) = (self.logger, self.timeout)
        self.timer = context.eventLoop.scheduleTask(in: timeout) {
            logger.info("closing a connection that did not finish a frame in time", metadata: ["rpc.frame_timeout_ms": "\(timeout.nanoseconds / 1_000_000)"])
            Counter(label: "rekey_rpc_server_connections_closed_total", dimensions: [("reason", "slow_frame")]).increment()
            channel.close(promise: nil)
        }
    }

    private func frameFinished() {
        self.timer?.cancel()
        self.timer = nil
        self.prefix = 0
        self.prefixBytes = 0
        self.remaining = 0
    }
}
