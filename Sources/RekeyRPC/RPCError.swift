import RekeyInput
/// The error every Rekey RPC fails with: a gRPC canonical status code and a message for humans.
///
/// Domain errors convert to it through ``RPCErrorConvertible``; any other error leaves a server as
/// ``Code/internalError`` with a generic message while its text goes to the server's log.
package struct RPCError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A gRPC canonical status code, with gRPC's numbers.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        package let rawValue: Int32

        package init(rawValue: Int32) {
            self.rawValue = rawValue
        }

        package static let ok = Code(rawValue: 0)
        package static let cancelled = Code(rawValue: 1)
        package static let unknown = Code(rawValue: 2)
        package static let invalidArgument = Code(rawValue: 3)
        package static let deadlineExceeded = Code(rawValue: 4)
        package static let notFound = Code(rawValue: 5)
        package static let alreadyExists = Code(rawValue: 6)
        package static let permissionDenied = Code(rawValue: 7)
        package static let resourceExhausted = Code(rawValue: 8)
        package static let failedPrecondition = Code(rawValue: 9)
        package static let aborted = Code(rawValue: 10)
        package static let outOfRange = Code(rawValue: 11)
        package static let unimplemented = Code(rawValue: 12)
        package static let internalError = Code(rawValue: 13)
        package static let unavailable = Code(rawValue: 14)
        package static let dataLoss = Code(rawValue: 15)
        package static let unauthenticated = Code(rawValue: 16)

        private static let names = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
            "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
            "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
            "UNAUTHENTICATED",
        ]

        /// The canonical name, such as `NOT_FOUND`; `CODE_<n>` for numbers gRPC does not define.
        package var description: String {
            Self.names.indices.contains(Int(self.rawValue)) ? Self.names[Int(self.rawValue)] : "CODE_\(self.rawValue)"
        }
    }

    package var code: Code
    package var message: String
    /// Extra facts for the caller, sent as response trailers (such as `retry-after-seconds`).
    package var trailers: Metadata
    /// Which service the call went to, as "rekey-directory (host:port)", when the caller's
    /// transport names it (the gateway's do); never sent on the wire.
    package var service: String?
    /// No server started this call: it never left this process (no connection, or the write
    /// failed), or the server refused it before running it (draining; the `not-started` trailer).
    /// Sending it to another replica cannot run it twice. Never sent on the wire as such.
    package var notStarted: Bool

    package init(_ code: Code, _ message: String, trailers: Metadata = [:], notStarted: Bool = false) {
        self.code = code
        self.message = message
        self.trailers = trailers
        self.service = nil
        self.notStarted = notStarted
    }

    package var description: String {
        "\(self.code): \(self.message)"
    }
}

/// A domain error that knows which RPC status describes it to a caller.
package protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension OutOfBounds: RPCErrorConvertible {
    /// A number outside its range is the caller's mistake: INVALID_ARGUMENT, naming the field.
    package var rpcError: RPCError { RPCError(.invalidArgument, self.description) }
}
