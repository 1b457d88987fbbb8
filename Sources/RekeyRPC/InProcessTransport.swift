/// A client transport that hands each call to a dispatcher in the same process: the request is
/// encoded, dispatched (interceptors, routing, error mapping) and the answer decoded exactly as
/// over TCP, without sockets or frames. For tests that want a whole system in milliseconds, as
/// grpc-swift's `InProcessTransport` is.
///
/// The deadline is enforced: past it the call fails with DEADLINE_EXCEEDED and its handler is
/// cancelled.
package struct InProcessTransport: ClientTransport {
    private let dispatcher: RPCDispatcher
    /// The fixed metadata a TCP client would send on every call (credential, caller name).
    private let fixedMetadata: Metadata
    private let peer: String

    package init(dispatcher: RPCDispatcher, credential: String? = nil, caller: String = "", peer: String = "in-process") {
        self.dispatcher = dispatcher
        var metadata = Metadata()
        if let credential { metadata[MetadataKey.authorization] = "Bearer \(credential)" }
        if !caller.isEmpty { metadata[MetadataKey.caller] = caller }
        self.fixedMetadata = metadata
        self.peer = peer
    }

    package func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        var all = metadata
        for entry in self.fixedMetadata {
            all[entry.key] = entry.value
        }
        let call = IncomingCall(method: method.fullyQualifiedMethod, metadata: all, payload: payload, deadline: deadline, peer: self.peer)
        let context = self.dispatcher.makeContext(for: call)
        let dispatcher = self.dispatcher
        let outcome: CallOutcome
        if let deadline {
            outcome = try await withThrowingTaskGroup(of: CallOutcome?.self) { group in
                group.addTask { await dispatcher.handle(call, context: context) }
                group.addTask {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let outcome = first else {
                    throw RPCError(.deadlineExceeded, "the deadline passed before \(method) answered")
                }
                return outcome
            }
        } else {
            outcome = await dispatcher.handle(call, context: context)
        }
        guard outcome.code == .ok else {
            throw RPCError(outcome.code, outcome.message, trailers: outcome.trailers)
        }
        return outcome.payload
    }
}
