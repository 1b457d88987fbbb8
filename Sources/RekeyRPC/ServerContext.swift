import Logging

/// What a handler knows about the call it is serving.
package struct ServerContext: Sendable {
    /// The context of the call the current task is serving, if any.
    ///
    /// Clients read it to pass on the remaining time and the request id when a handler calls
    /// another service, so deadlines and tracing propagate without any code in the handler.
    @TaskLocal package static var current: ServerContext?

    package var method: MethodDescriptor
    package var metadata: Metadata
    /// The id that ties the log lines of one external request together across services.
    package var requestID: String
    /// The calling service's name, as it said (`caller` metadata); empty when not given.
    package var caller: String
    /// When the caller stops waiting; `nil` when it set no deadline.
    package var deadline: ContinuousClock.Instant?
    /// The caller's address, for logs.
    package var peer: String
    /// A logger carrying `rpc.method` and `request.id`.
    package var logger: Logger

    package init(
        method: MethodDescriptor,
        metadata: Metadata,
        requestID: String,
        caller: String,
        deadline: ContinuousClock.Instant?,
        peer: String,
        logger: Logger
    ) {
        self.method = method
        self.metadata = metadata
        self.requestID = requestID
        self.caller = caller
        self.deadline = deadline
        self.peer = peer
        self.logger = logger
    }

    /// The time left before the deadline, or `nil` without one.
    package var timeRemaining: Duration? {
        self.deadline.map { $0 - .now }
    }
}

/// Makes request ids: 16 lower-case hex digits from the system's random generator.
package enum RequestID {
    package static func make() -> String {
        let value = UInt64.random(in: .min ... .max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Whether a request id received from outside is safe to log and pass on.
    package static func isAcceptable(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
