import Logging
import Synchronization

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
    /// The caller's workload, from the verified certificate it presented (mutual TLS); nil on a
    /// plaintext connection.
    package var peerIdentity: String?
    /// Whether this server serves `method`; metrics name unknown methods `unknown`, so that
    /// made-up names cannot grow them without bound.
    package var methodIsKnown: Bool
    /// The server's logger, without the call's metadata; see ``logger``.
    package var baseLogger: Logger

    /// A logger carrying `rpc.method` and `request.id`.
    ///
    /// Built when asked for, so that calls that log nothing pay nothing for it.
    package var logger: Logger {
        var logger = self.baseLogger
        logger[metadataKey: "rpc.method"] = .string(self.methodIsKnown ? self.method.fullyQualifiedMethod : "unknown")
        logger[metadataKey: "request.id"] = .string(self.requestID)
        return logger
    }

    package init(
        method: MethodDescriptor,
        metadata: Metadata,
        requestID: String,
        caller: String,
        deadline: ContinuousClock.Instant?,
        peer: String,
        peerIdentity: String? = nil,
        methodIsKnown: Bool = true,
        logger: Logger
    ) {
        self.method = method
        self.metadata = metadata
        self.requestID = requestID
        self.caller = caller
        self.deadline = deadline
        self.peer = peer
        self.peerIdentity = peerIdentity
        self.methodIsKnown = methodIsKnown
        self.baseLogger = logger
    }

    /// The method's name for metrics: `unknown` for a method this server does not serve.
    package var methodLabel: String {
        self.methodIsKnown ? self.method.fullyQualifiedMethod : "unknown"
    }

    /// The time left before the deadline, or `nil` without one.
    package var timeRemaining: Duration? {
        self.deadline.map { $0 - .now }
    }
}

/// Makes request ids: 16 lower-case hex digits, a random prefix fixed per process followed by a
/// counter, so ids are unique without a system call per call.
package enum RequestID {
    private static let prefix: UInt64 = UInt64.random(in: .min ... .max) & 0xFFFF_FFFF_0000_0000
    private static let counter = Atomic<UInt64>(UInt64.random(in: 0..<(1 << 31)))

    package static func make() -> String {
        let value = Self.prefix | (Self.counter.wrappingAdd(1, ordering: .relaxed).newValue & 0xFFFF_FFFF)
        // Sixteen hex digits written in place: one allocation per call instead of three.
        return String(unsafeUninitializedCapacity: 16) { buffer in
            let digits: StaticString = "0123456789abcdef"
            for index in 0..<16 {
                let nibble = Int(truncatingIfNeeded: value >> UInt64(60 - 4 * index)) & 0xF
                buffer[index] = digits.utf8Start[nibble]
            }
            return 16
        }
    }

    /// Whether a request id received from outside is safe to log and pass on.
    package static func isAcceptable(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
