import RekeyRPC

/// The built-in roles; `staff` means every one but customer.
package enum BuiltinRole: String, CaseIterable, Sendable {
    case owner, admin, agent, collaborator, customer

    package var isStaff: Bool { self != .customer }

    package var permissions: [String] {
        switch self {
        case .owner, .admin: return [Permissions.usersManage]
        case .agent, .collaborator, .customer: return []
        }
    }
}

/// The permissions that exist.
package enum Permissions {
    /// "Create and update users and organizations": what sending reset emails needs.
    package static let usersManage = "users.manage"

    package static let all: [(name: String, description: String)] = [
        (usersManage, "Create and update users and organizations"),
    ]
}

package enum UserStateValue: Int64, Sendable {
    case active = 1
    case disabled = 2
}

package struct EmailRecord: Sendable, Hashable {
    package var id: String
    package var address: String
    package var isPrimary: Bool
    package var verified: Bool
}

package struct UserRecord: Sendable, Hashable {
    package var id: String
    package var name: String
    package var role: String
    package var staff: Bool
    package var organizationID: String?
    package var state: UserStateValue
    package var locale: String
    package var emails: [EmailRecord]
    package var passwordHash: String?
    package var passwordChangedAt: Int64?
    package var createdAt: Int64
    package var updatedAt: Int64

    package var primaryEmail: EmailRecord? { self.emails.first(where: \.isPrimary) }
}

package struct OrganizationRecord: Sendable, Hashable {
    package var id: String
    package var name: String
    package var domains: [String]
    package var createdAt: Int64
}

package struct RoleRecord: Sendable, Hashable {
    package var name: String
    package var permissions: [String]
    package var staff: Bool
    package var builtin: Bool
}

package struct APIKeyRecord: Sendable, Hashable {
    package var id: String
    package var userID: String
    package var name: String
    package var createdAt: Int64
    package var expiresAt: Int64
    package var lastUsedAt: Int64?
    package var revokedAt: Int64?
}

/// One change made to the directory, for the audit trail.
package struct AuditRecord: Sendable, Hashable {
    package var id: Int64
    package var at: Int64
    package var actorUserID: String
    package var actorClientAddress: String
    package var action: String
    package var target: String
    package var detail: String
}

/// Who makes a change, for the audit record.
package struct ActorInfo: Sendable, Hashable {
    package var userID: String
    package var clientAddress: String

    package init(userID: String = "", clientAddress: String = "") {
        self.userID = userID
        self.clientAddress = clientAddress
    }

    package static let system = ActorInfo()
}

/// Errors of the directory, each with the status a caller sees.
package enum DirectoryError: Error, Hashable, RPCErrorConvertible {
    case invalidArgument(String)
    case notFound(String)
    case alreadyExists(String)
    case failedPrecondition(String)
    case unauthenticated(String)
    case resourceExhausted(String)
    /// Past a size limit (an import's bytes or rows).
    case outOfRange(String)
    /// Too many failed sign-ins from one address; the next is allowed in `retryAfter` seconds.
    case signInLimited(retryAfter: Int64)
    /// An admin action the actor may not take on this user; audited by the service.
    case refused(Refusal, message: String)

    package var rpcError: RPCError {
        switch self {
        case .invalidArgument(let message): return RPCError(.invalidArgument, message)
        case .notFound(let message): return RPCError(.notFound, message)
        case .alreadyExists(let message): return RPCError(.alreadyExists, message)
        case .failedPrecondition(let message): return RPCError(.failedPrecondition, message)
        case .unauthenticated(let message): return RPCError(.unauthenticated, message)
        case .resourceExhausted(let message): return RPCError(.resourceExhausted, message)
        case .outOfRange(let message): return RPCError(.outOfRange, message)
        case .signInLimited(let seconds):
            return RPCError(
                .resourceExhausted, "too many failed sign-ins from this address; try again in \(seconds) s",
                trailers: [MetadataKey.retryAfterSeconds: "\(seconds)"]
            )
        case .refused(let refusal, let message):
            return RPCError(.permissionDenied, message, trailers: [MetadataKey.refusal: refusal.rawValue])
        }
    }
}
