import RekeyRPC

/// The templates the notifier can send, and the variables each needs.
package enum MailTemplate: String, CaseIterable, Sendable {
    case passwordReset = "password_reset"
    case emailVerification = "email_verification"
    case passwordChanged = "password_changed"
    /// To the previous primary address when the primary address changes.
    case primaryEmailChanged = "primary_email_changed"
    case test

    /// Variables a caller must give; `name` (the recipient's) is always available.
    package var requiredVariables: [String] {
        switch self {
        case .passwordReset, .emailVerification: return ["link", "expires_in"]
        case .primaryEmailChanged: return ["new_address", "changed_by", "changed_at"]
        case .passwordChanged, .test: return []
        }
    }
}

package enum MessageStateValue: Int64, Sendable {
    case queued = 1
    case deferred = 2
    case accepted = 3
    case failed = 4
    case suppressed = 5
    /// Accepted by the relay, then reported undeliverable by a bounce (DSN) that came later.
    case bounced = 6

    package var isFinal: Bool { self != .queued && self != .deferred }
}

package enum AttemptOutcomeValue: Int64, Sendable {
    case accepted = 1
    case temporaryFailure = 2
    case permanentFailure = 3
    case interrupted = 4
}

/// Who asked for a message or a change, for the history.
package struct ActorInfo: Sendable, Hashable {
    package var userID: String
    package var clientAddress: String

    package init(userID: String = "", clientAddress: String = "") {
        self.userID = userID
        self.clientAddress = clientAddress
    }
}

/// One delivery attempt as recorded.
package struct AttemptRecord: Sendable, Hashable {
    package var startedAt: Int64
    package var finishedAt: Int64?
    package var transport: String
    package var server: String
    package var outcome: AttemptOutcomeValue?
    package var stage: String
    package var replyCode: Int
    package var enhancedStatus: String
    package var replyText: String
    package var remoteQueueID: String
    package var error: String
}

package struct MessageRecord: Sendable, Hashable {
    package var seq: Int64
    package var id: String
    package var template: String
    package var toAddress: String
    package var toName: String
    package var locale: String
    package var userID: String
    package var tokenID: String
    package var state: MessageStateValue
    package var messageIDHeader: String
    package var subject: String
    package var createdAt: Int64
    package var updatedAt: Int64
    package var nextAttemptAt: Int64?
    package var reason: String
    package var requestedBy: ActorInfo
    package var attempts: [AttemptRecord]
    /// Bounces and complaints that came after delivery, oldest first.
    package var reports: [ReportRecord] = []
}

/// A delivery report or a complaint about a message, as received after the relay took it.
package struct ReportRecord: Sendable, Hashable {
    package var receivedAt: Int64
    /// dsn or complaint.
    package var kind: String
    package var action: String
    package var status: String
    package var diagnostic: String
    package var remoteMTA: String
    package var recipient: String
    package var feedbackType: String
    package var reporter: String
}

package struct SuppressionRecord: Sendable, Hashable {
    package var address: String
    package var reason: String
    package var createdAt: Int64
    package var messageID: String
}

/// Errors of the notifier, each with the status a caller sees.
package enum NotifierError: Error, Hashable, RPCErrorConvertible {
    case invalidArgument(String)
    case notFound(String)
    case failedPrecondition(String)
    case alreadyExists(String)

    package var rpcError: RPCError {
        switch self {
        case .invalidArgument(let message): return RPCError(.invalidArgument, message)
        case .notFound(let message): return RPCError(.notFound, message)
        case .failedPrecondition(let message): return RPCError(.failedPrecondition, message)
        case .alreadyExists(let message): return RPCError(.alreadyExists, message)
        }
    }
}
