import NIOCore
import NIOHTTP1
import NIOPosix

/// A one-shot plain-HTTP `GET` for health checks: the status code, or nil when nothing answered
/// in time. Made on NIO so that executables need no libcurl (FoundationNetworking) at run time.
package enum HTTPProbe {
    package static func status(host: String, port: Int, path: String, timeout: Duration = .seconds(3)) async -> Int? {
        let group = MultiThreadedEventLoopGroup.singleton
        let answer = group.any().makePromise(of: Int.self)
        let deadline = TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        let timer = answer.futureResult.eventLoop.scheduleTask(in: deadline) { answer.fail(ChannelError.connectTimeout(deadline)) }
        do {
            let channel = try await ClientBootstrap(group: group)
                .connectTimeout(deadline)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(StatusHandler(answer: answer))
                    }
                }
                .connect(host: host, port: port)
                .get()
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
            head.headers.add(name: "Host", value: "\(host):\(port)")
            head.headers.add(name: "Connection", value: "close")
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            defer { channel.close(promise: nil) }
            let status = try await answer.futureResult.get()
            timer.cancel()
            return status
        } catch {
            timer.cancel()
            answer.fail(error)
            return nil
        }
    }

    private final class StatusHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let answer: EventLoopPromise<Int>

        init(answer: EventLoopPromise<Int>) {
            self.answer = answer
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .head(let head) = self.unwrapInboundIn(data) {
                self.answer.succeed(Int(head.status.code))
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            self.answer.fail(error)
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.answer.fail(ChannelError.eof)
        }
    }
}
