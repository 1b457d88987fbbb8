import RekeyProtobuf

/// A set of RPC methods served together; generated service protocols conform to it.
package protocol RPCService: Sendable {
    /// Adds a handler for each of the service's methods to `router`.
    func registerMethods(with router: inout RPCRouter)
}

/// What a server request looks like to interceptors: the method's message, still encoded.
package struct ServerRequest: Sendable {
    package var payload: [UInt8]

    package init(payload: [UInt8]) {
        self.payload = payload
    }
}

/// What a server response looks like to interceptors: the method's reply, encoded, and trailers.
package struct ServerResponse: Sendable {
    package var payload: [UInt8]
    package var trailers: Metadata

    package init(payload: [UInt8], trailers: Metadata = [:]) {
        self.payload = payload
        self.trailers = trailers
    }
}

/// Maps full method names to handlers that take and return encoded messages.
package struct RPCRouter: Sendable {
    package typealias Handler = @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse

    @usableFromInline
    private(set) var handlers: [String: (descriptor: MethodDescriptor, handler: Handler)] = [:]

    package init() {}

    /// The methods this router serves.
    package var methods: [MethodDescriptor] {
        self.handlers.values.map(\.descriptor)
    }

    /// Registers a typed handler: the router decodes requests and encodes responses.
    ///
    /// A request whose bytes do not decode as `Input` is answered with INVALID_ARGUMENT.
    @inlinable
    package mutating func registerHandler<Input: ProtobufMessage, Output: ProtobufMessage>(
        forMethod descriptor: MethodDescriptor,
        handler: @escaping @Sendable (Input, ServerContext) async throws -> Output
    ) {
        self.handlers[descriptor.fullyQualifiedMethod] = (descriptor, { request, context in
            let input: Input
            do {
                input = try Input(serializedBytes: request.payload)
            } catch {
                throw RPCError(.invalidArgument, "the request is not a valid \(Input.protoMessageName) message")
            }
            let output = try await handler(input, context)
            return ServerResponse(payload: try output.serializedBytes())
        })
    }

    /// Registers every method of `service`.
    package mutating func register(_ service: some RPCService) {
        service.registerMethods(with: &self)
    }

    /// The handler and descriptor for a full method name, or `nil` for methods not served here.
    package func route(_ fullyQualifiedMethod: String) -> (descriptor: MethodDescriptor, handler: Handler)? {
        self.handlers[fullyQualifiedMethod]
    }
}
