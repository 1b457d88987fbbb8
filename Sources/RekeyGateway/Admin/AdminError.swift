import NIOCore
import RekeyInput
import RekeyRPC

/// What went wrong with an admin operation (or an end-user flow), in terms a renderer can answer
/// with: a kind that fixes the HTTP status, a stable code for scripts, a message for people.
///
/// ``init(_:)`` is the one place errors from elsewhere become this: the services' statuses (a
/// refusal keeps its reason, such as `outranked`), numbers out of range, bodies too large. The
/// JSON API and the pages both render it (``ErrorAnswers``).
package struct AdminError: Error, Sendable, CustomStringConvertible {
    package enum Kind: Sendable {
        case invalidArgument
        case unauthenticated
        case permissionDenied
        case notFound
        case conflict
        case tooLarge
        case tooManyRequests
        /// A service did not answer in time; `service` says which, when known.
        case unavailable
        case internalError
    }

    package var kind: Kind
    package var code: String
    package var message: String
    /// Seconds to wait before trying again (rate limits, outages).
    package var retryAfter: String?
    /// "rekey-directory (host:port)" for ``Kind/unavailable``.
    package var service: String?

    package init(_ kind: Kind, _ code: String, _ message: String, retryAfter: String? = nil) {
        self.kind = kind
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    package var description: String { "\(self.code): \(self.message)" }

    static func invalid(_ message: String) -> AdminError { AdminError(.invalidArgument, "invalid_argument", message) }
    static func notFound(_ message: String) -> AdminError { AdminError(.notFound, "not_found", message) }
    static func conflict(_ message: String) -> AdminError { AdminError(.conflict, "failed_precondition", message) }
    static let unauthenticated = AdminError(.unauthenticated, "unauthenticated", "the API key is unknown, revoked or expired")
    static let staffOnly = AdminError(.permissionDenied, "permission_denied", "the admin API is for staff")

    /// Any error as an admin error: itself, a service's status, a number out of range, a body
    /// over its limit; anything else is internal (its text is logged, never shown).
    package init(_ error: any Error) {
        switch error {
        case let error as AdminError:
            self = error
        case let error as RPCError:
            self.init(rpc: error)
        case let error as OutOfBounds:
            self = .invalid(error.description)
        case is NIOTooManyBytesError:
            self.init(.tooLarge, "too_large", "the body is larger than this call takes (1 MiB of JSON)")
        default:
            self.init(.internalError, "internal", "something went wrong")
        }
    }

    private init(rpc error: RPCError) {
        let kind: Kind
        switch error.code {
        case .invalidArgument: kind = .invalidArgument
        case .notFound: kind = .notFound
        case .alreadyExists, .failedPrecondition: kind = .conflict
        case .permissionDenied: kind = .permissionDenied
        case .unauthenticated: kind = .unauthenticated
        case .resourceExhausted: kind = .tooManyRequests
        case .outOfRange: kind = .tooLarge
        case .unavailable, .deadlineExceeded: kind = .unavailable
        default: kind = .internalError
        }
        switch kind {
        case .unavailable:
            self.init(
                kind, "unavailable", "\(error.service ?? "a service Rekey depends on") is not answering; try again shortly or tell your operators",
                retryAfter: "30"
            )
            self.service = error.service
        case .internalError:
            self.init(kind, "internal", "something went wrong")
        default:
            // A refusal names why (outranked, owner_only, own_keys_only, …); other errors their status.
            let code = error.code == .permissionDenied ? error.trailers[MetadataKey.refusal] ?? "permission_denied" : error.code.description.lowercased()
            self.init(kind, code, error.message, retryAfter: error.trailers[MetadataKey.retryAfterSeconds])
        }
    }
}
