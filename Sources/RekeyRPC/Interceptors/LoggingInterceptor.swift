/// Logs the outcome of every call: at debug when it succeeds, at info when it fails.
package struct LoggingInterceptor: ServerInterceptor {
    package init() {}

    package func intercept(
        request: ServerRequest,
        context: ServerContext,
        next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
    ) async throws -> ServerResponse {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            guard context.baseLogger.logLevel <= .debug else { return response }
            context.logger.debug("rpc finished", metadata: [
                "rpc.code": "OK",
                "rpc.caller": "\(context.caller)",
                "rpc.duration_ms": "\(Self.milliseconds(since: start))",
            ])
            return response
        } catch {
            let status = RPCDispatcher.rpcError(for: error, context: context)
            context.logger.info("rpc failed", metadata: [
                "rpc.code": "\(status.code)",
                "rpc.message": "\(status.message)",
                "rpc.caller": "\(context.caller)",
                "rpc.duration_ms": "\(Self.milliseconds(since: start))",
            ])
            throw status
        }
    }

    private static func milliseconds(since start: ContinuousClock.Instant) -> String {
        let elapsed = ContinuousClock.now - start
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        return "\(Double(micros) / 1000)"
    }
}
