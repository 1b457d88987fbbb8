import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import RekeyRPC

/// The gateway's HTTP application: pages, admin API, `/healthz` and `/readyz`.
package enum Gateway {
    /// HTTP/1.1 with a time limit on each request's headers (``HeaderDeadlineHandler``) and on a
    /// keep-alive connection's wait for its next request (`idleTimeout`).
    package static func httpServer(headerTimeout: Duration, idleTimeout: Duration = .seconds(75), logger: Logger) -> HTTPServerBuilder {
        let timeout = Self.timeAmount(headerTimeout)
        return .http1(configuration: .init(
            additionalChannelHandlers: [HeaderDeadlineHandler(timeout: timeout, logger: logger)],
            idleTimeout: Self.timeAmount(idleTimeout)
        ))
    }

    private static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    package static func router(
        flows: Flows, logger: Logger, secret: String, background: BackgroundQueue, trustedProxies: Set<String> = [],
        forgotMinimumDuration: Duration = .milliseconds(400), brand: Brand = .rekey
    ) -> Router<GatewayContext> {
        // Read now, so that a gateway installed without its resources says so at start.
        _ = OpenAPIDocument.bytes
        let operations = AdminOperations(flows: flows)
        let router = Router(context: GatewayContext.self)
        // Outermost, so that it counts the 503 pages and security-header responses too.
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: GatewayMiddleware(logger: logger, trustedProxies: trustedProxies, brand: brand))
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("/readyz") { _, context in
            let down = await flows.backends.unhealthy(requestID: context.requestID)
            let text = down.isEmpty ? "ready\n" : "not ready: " + down.joined(separator: ", ") + " not answering\n"
            return Response(
                status: down.isEmpty ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: text))
            )
        }
        let stylesheet = ByteBuffer(string: Assets.stylesheet(brand))
        let script = ByteBuffer(string: Assets.script)
        let icon = ByteBuffer(string: Assets.icon(brand))
        router.get(RouterPath(Assets.iconPath)) { _, _ in
            Response(status: .ok, headers: [.contentType: "image/svg+xml", .cacheControl: "public, max-age=3600"], body: .init(byteBuffer: icon))
        }
        // Browsers ask for it whatever the pages say.
        router.get("/favicon.ico") { _, _ in Web.redirect(Assets.iconPath) }
        router.get(RouterPath(Assets.stylesheetPath)) { _, _ in
            Response(status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "public, max-age=3600"], body: .init(byteBuffer: stylesheet))
        }
        router.get(RouterPath(Assets.scriptPath)) { _, _ in
            Response(status: .ok, headers: [.contentType: "text/javascript; charset=utf-8", .cacheControl: "public, max-age=3600"], body: .init(byteBuffer: script))
        }
        let web = Web(flows: flows, secret: secret, background: background, forgotMinimumDuration: forgotMinimumDuration)
        web.add(to: router, authentication: operations.authentication)
        Console(operations: operations, web: web).add(to: router)
        AdminRoutes.add(to: router, operations: operations, logger: logger)
        return router
    }
}
