import Logging

/// One call as a transport received it, before routing.
package struct IncomingCall: Sendable {
    package var method: String
    package var metadata: Metadata
    package var payload: [UInt8]
    package var deadline: ContinuousClock.Instant?
    package var peer: String
    /// The caller's workload from its verified certificate; nil on a plaintext connection.
    package var peerIdentity: String?

    package init(
        method: String, metadata: Metadata, payload: [UInt8], deadline: ContinuousClock.Instant?, peer: String, peerIdentity: String? = nil
    ) {
        self.method = method
        self.metadata = metadata
        self.payload = payload
        self.deadline = deadline
        self.peer = peer
        self.peerIdentity = peerIdentity
    }
}

/// The outcome of one call, ready for a transport to send.
package struct CallOutcome: Sendable {
    package var code: RPCError.Code
    package var message: String
    package var payload: [UInt8]
    package var trailers: Metadata

    package static func success(_ response: ServerResponse) -> CallOutcome {
        CallOutcome(code: .ok, message: "", payload: response.payload, trailers: response.trailers)
    }

    package static func failure(_ error: RPCError) -> CallOutcome {
        CallOutcome(code: error.code, message: error.message, payload: [], trailers: error.trailers)
    }
}

/// Turns incoming calls into outcomes: builds the context, runs the interceptors, routes to the
/// handler and maps every error to a status. Knows nothing of sockets.
package struct RPCDispatcher: Sendable {
    private let router: RPCRouter
    private let chain: RPCRouter.Handler
    private let logger: Logger

    package init(router: RPCRouter, interceptors: [any ServerInterceptor], logger: Logger) {
        self.router = router
        self.logger = logger
        let route: RPCRouter.Handler = { [router] request, context in
            guard let handler = router.route(context.method.fullyQualifiedMethod)?.handler else {
                throw RPCError(.unimplemented, "method \(context.method) is not implemented by this server")
            }
            return try await handler(request, context)
        }
        self.chain = interceptors.reversed().reduce(route) { next, interceptor in
            { request, context in
                try await interceptor.intercept(request: request, context: context, next: next)
            }
        }
    }

    package init(services: [any RPCService], interceptors: [any ServerInterceptor], logger: Logger) {
        var router = RPCRouter()
        for service in services {
            service.registerMethods(with: &router)
        }
        self.init(router: router, interceptors: interceptors, logger: logger)
    }

    /// The context a call will see; transports use it to log and to enforce the deadline.
    package func makeContext(for call: IncomingCall) -> ServerContext {
        let known = self.router.route(call.method)?.descriptor
        let descriptor = known ?? Self.descriptor(parsing: call.method)
        let requestID: String
        if let given = call.metadata[MetadataKey.requestID], RequestID.isAcceptable(given) {
            requestID = given
        } else {
            requestID = RequestID.make()
        }
        return ServerContext(
            method: descriptor,
            metadata: call.metadata,
            requestID: requestID,
            caller: call.metadata[MetadataKey.caller] ?? "",
            deadline: call.deadline,
            peer: call.peer,
            peerIdentity: call.peerIdentity,
            methodIsKnown: known != nil,
            logger: self.logger
        )
    }

    /// Runs one call to completion. Never throws: every failure becomes a status.
    package func handle(_ call: IncomingCall, context: ServerContext) async -> CallOutcome {
        do {
            let response = try await ServerContext.$current.withValue(context) {
                try await self.chain(ServerRequest(payload: call.payload), context)
            }
            return .success(response)
        } catch {
            return .failure(Self.rpcError(for: error, context: context))
        }
    }

    /// The status a caller sees for `error`; unexpected errors are logged here and hidden.
    package static func rpcError(for error: any Error, context: ServerContext) -> RPCError {
        switch error {
        case let error as RPCError:
            return error
        case let error as any RPCErrorConvertible:
            return error.rpcError
        case is CancellationError:
            return RPCError(.cancelled, "the call was cancelled")
        default:
            context.logger.error("handler failed", metadata: ["error": "\(String(reflecting: error))"])
            return RPCError(.internalError, "internal error (request id \(context.requestID))")
        }
    }

    private static func descriptor(parsing name: String) -> MethodDescriptor {
        let parts = name.split(separator: "/", omittingEmptySubsequences: true)
        if parts.count == 2, name.hasPrefix("/") {
            return MethodDescriptor(service: String(parts[0]), method: String(parts[1]))
        }
        return MethodDescriptor(service: "", method: name)
    }
}
