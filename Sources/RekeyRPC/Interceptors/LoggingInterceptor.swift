import Logging

/// Logs the outcome of every call: at debug when it succeeds, at info when it fails. Refusals
/// (UNAUTHENTICATED, PERMISSION_DENIED) are logged at most once per peer address per interval,
/// with the number left out since the last one.
package struct LoggingInterceptor: ServerInterceptor {
    private let refusals: RefusalLogLimiter

    package init(refusals: RefusalLogLimiter = RefusalLogLimiter()) {
        self.refusals = refusals
    }

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
            var metadata: Logger.Metadata = [
                "rpc.code": "\(status.code)",
                "rpc.message": "\(status.message)",
                "rpc.caller": "\(context.caller)",
                "rpc.duration_ms": "\(Self.milliseconds(since: start))",
            ]
            if status.code == .unauthenticated || status.code == .permissionDenied {
                let (log, suppressed) = self.refusals.admit(peer: context.peer)
                guard log else { throw status }
                if suppressed > 0 { metadata["rpc.refusals_not_logged"] = "\(suppressed)" }
            }
            context.logger.info("rpc failed", metadata: metadata)
            throw status
        }
    }

    private static func milliseconds(since start: ContinuousClock.Instant) -> String {
        let elapsed = ContinuousClock.now - start
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        return "\(Double(micros) / 1000)"
    }
}
