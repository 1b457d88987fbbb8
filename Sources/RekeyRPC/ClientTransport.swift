import RekeyProtobuf

/// Options for one call.
package struct CallOptions: Sendable {
    /// How long to wait for the answer. A handler calling another service passes on no more than
    /// the time its own caller has left, whatever this says.
    package var timeout: Duration?
    /// Extra request metadata.
    package var metadata: Metadata

    package init(timeout: Duration? = nil, metadata: Metadata = [:]) {
        self.timeout = timeout
        self.metadata = metadata
    }

    package static let defaults = CallOptions()
}

/// Sends encoded requests and returns encoded responses; the NIO client implements it.
///
/// Implementations throw ``RPCError`` only: the status the server sent, or UNAVAILABLE,
/// DEADLINE_EXCEEDED or CANCELLED for what happened on the way.
package protocol ClientTransport: Sendable {
    func unary(
        method: MethodDescriptor,
        payload: [UInt8],
        metadata: Metadata,
        deadline: ContinuousClock.Instant?
    ) async throws -> [UInt8]
}

extension ClientTransport {
    /// Makes a typed call: encodes the request, fixes the deadline once (the earlier of the
    /// caller's timeout and the serving handler's deadline), passes on the request id, and decodes
    /// the response.
    @inlinable
    package func unary<Input: ProtobufMessage, Output: ProtobufMessage>(
        request: Input,
        method: MethodDescriptor,
        options: CallOptions
    ) async throws -> Output {
        let payload: [UInt8]
        do {
            payload = try request.serializedBytes()
        } catch ProtobufError.embeddedNUL(_, let field) {
            // Said in the caller's terms: the field, not the message type behind it.
            throw RPCError(.invalidArgument, "\(field) must not contain a NUL character")
        } catch {
            throw RPCError(.invalidArgument, "the request cannot be encoded: \(error)")
        }
        var deadline = options.timeout.map { ContinuousClock.now + $0 }
        var metadata = options.metadata
        if let parent = ServerContext.current {
            if let inherited = parent.deadline {
                deadline = deadline.map { min($0, inherited) } ?? inherited
            }
            if metadata[MetadataKey.requestID] == nil {
                metadata[MetadataKey.requestID] = parent.requestID
            }
        }
        let response = try await self.unary(method: method, payload: payload, metadata: metadata, deadline: deadline)
        do {
            return try Output(serializedBytes: response)
        } catch {
            throw RPCError(.internalError, "the server's response is not a valid \(Output.protoMessageName) message")
        }
    }
}
