import RekeyDirectoryAPI
import RekeyNotifierAPI

/// The admin API's JSON shapes (snake_case on the wire). Times are ISO 8601 in UTC.
struct EmailJSON: Encodable {
    var id: String
    var address: String
    var primary: Bool
    var verified: Bool

    init(_ email: Rekey_Directory_V1_EmailIdentity) {
        self.id = email.id
        self.address = email.address
        self.primary = email.primary
        self.verified = email.verified
    }
}

struct UserJSON: Encodable {
    var id: String
    var name: String
    var role: String
    var staff: Bool
    var organizationId: String?
    var state: String
    var locale: String
    var emails: [EmailJSON]
    var hasPassword: Bool
    var passwordChangedAt: String?
    var createdAt: String?
    var updatedAt: String?
    /// What the admin should know after a create or an added address (look-alike addresses).
    var warnings: [String]?

    init(_ user: Rekey_Directory_V1_User, warnings: [String] = []) {
        self.id = user.id
        self.name = user.name
        self.role = user.role
        self.staff = user.staff
        self.organizationId = user.organizationID.isEmpty ? nil : user.organizationID
        self.state = user.state == .disabled ? "disabled" : "active"
        self.locale = user.locale
        self.emails = user.emails.map(EmailJSON.init)
        self.hasPassword = user.hasPassword
        self.passwordChangedAt = AdminAPI.time(user.passwordChangedAtUnixMs)
        self.createdAt = AdminAPI.time(user.createdAtUnixMs)
        self.updatedAt = AdminAPI.time(user.updatedAtUnixMs)
        self.warnings = warnings.isEmpty ? nil : warnings
    }
}

struct UsersPageJSON: Encodable {
    var users: [UserJSON]
    var nextPageToken: String
}

struct LookupJSON: Encodable {
    var user: UserJSON
    var matched: EmailJSON
}

struct SentJSON: Encodable {
    var messageId: String
    /// Masked: `j***@example.com`.
    var sentTo: String
    var status: String
}

struct ImportJSON: Encodable {
    struct Row: Encodable {
        var line: Int
        var email: String
        var userId: String
        var error: String?
    }

    var committed: Bool
    var created: Int
    var refused: Int
    /// Every row for files of up to 1,000 rows; else the first 1,000 refused rows.
    var rows: [Row]
    /// Rows left out of `rows`.
    var rowsOmitted: Int

    init(_ report: Rekey_Directory_V1_ImportUsersResponse) {
        self.committed = report.committed
        self.created = Int(report.created)
        self.refused = Int(report.refused)
        self.rows = report.rows.map { Row(line: Int($0.line), email: $0.email, userId: $0.userID, error: $0.error.isEmpty ? nil : $0.error) }
        self.rowsOmitted = Int(report.rowsOmitted)
    }
}

struct OrganizationJSON: Encodable {
    var id: String
    var name: String
    var domains: [String]
    var createdAt: String?

    init(_ organization: Rekey_Directory_V1_Organization) {
        self.id = organization.id
        self.name = organization.name
        self.domains = organization.domains
        self.createdAt = AdminAPI.time(organization.createdAtUnixMs)
    }
}

/// One admin action or refusal from the directory's audit trail.
struct AuditJSON: Encodable {
    var id: Int64
    var at: String?
    var actorUserId: String
    var actorClientAddress: String
    var action: String
    var target: String
    var detail: String

    init(_ record: Rekey_Directory_V1_AuditRecord) {
        self.id = record.id
        self.at = AdminAPI.time(record.atUnixMs)
        self.actorUserId = record.actorUserID
        self.actorClientAddress = record.actorClientAddress
        self.action = record.action
        self.target = record.target
        self.detail = record.detail
    }
}

struct AuditPageJSON: Encodable {
    var records: [AuditJSON]
    var nextPageToken: String
}

struct AttemptJSON: Encodable {
    var startedAt: String?
    var finishedAt: String?
    var transport: String
    var server: String
    var outcome: String
    var stage: String
    var replyCode: Int
    var enhancedStatus: String
    var replyText: String
    var remoteQueueId: String
    var error: String

    init(_ attempt: Rekey_Notifier_V1_Attempt) {
        self.startedAt = AdminAPI.time(attempt.startedAtUnixMs)
        self.finishedAt = AdminAPI.time(attempt.finishedAtUnixMs)
        self.transport = attempt.transport
        self.server = attempt.server
        switch attempt.outcome {
        case .accepted: self.outcome = "accepted"
        case .temporaryFailure: self.outcome = "temporary_failure"
        case .permanentFailure: self.outcome = "permanent_failure"
        case .interrupted: self.outcome = "interrupted"
        default: self.outcome = "in_progress"
        }
        self.stage = attempt.stage
        self.replyCode = Int(attempt.replyCode)
        self.enhancedStatus = attempt.enhancedStatus
        self.replyText = attempt.replyText
        self.remoteQueueId = attempt.remoteQueueID
        self.error = attempt.error
    }
}

struct MessageJSON: Encodable {
    var id: String
    var template: String
    var to: String
    var state: String
    var subject: String
    var messageIdHeader: String
    var createdAt: String?
    var nextAttemptAt: String?
    var reason: String
    var requestedBy: String
    var attempts: [AttemptJSON]

    init(_ message: Rekey_Notifier_V1_Message, mask: Bool) {
        self.id = message.id
        self.template = message.templateName
        self.to = mask ? Flows.mask(message.toAddress) : message.toAddress
        switch message.state {
        case .queued: self.state = "queued"
        case .deferred: self.state = "deferred"
        case .accepted: self.state = "accepted"
        case .failed: self.state = "failed"
        case .suppressed: self.state = "suppressed"
        default: self.state = "unknown"
        }
        self.subject = message.subject
        self.messageIdHeader = message.messageIDHeader
        self.createdAt = AdminAPI.time(message.createdAtUnixMs)
        self.nextAttemptAt = AdminAPI.time(message.nextAttemptAtUnixMs)
        self.reason = message.reason
        self.requestedBy = message.requestedBy?.userID ?? ""
        self.attempts = message.attempts.map(AttemptJSON.init)
    }
}

struct MessagesJSON: Encodable {
    var messages: [MessageJSON]
    var nextPageToken: String
}

struct SuppressionsJSON: Encodable {
    struct Item: Encodable {
        var address: String
        var reason: String
        var createdAt: String?
        var messageId: String
    }

    var suppressions: [Item]
    var nextPageToken: String
}

/// Says what was wrong with a JSON body in the request's own terms (`$.name must be a string`),
/// never in the decoder's (`DecodingError.typeMismatch(Swift.String, …)`).
enum JSONBodyError {
    static func describe(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "the body is not valid JSON" }
        switch error {
        case .typeMismatch(let type, let context):
            return "\(Self.path(context.codingPath)) must be \(Self.kind(type))"
        case .valueNotFound(let type, let context):
            return "\(Self.path(context.codingPath)) must be \(Self.kind(type)), not null"
        case .keyNotFound(let key, let context):
            return "\(Self.path(context.codingPath + [key])) is required"
        case .dataCorrupted(let context):
            // Foundation reports a number it cannot hold (1e309, 2^63, 1.5 for a whole number) as
            // invalid JSON without a path, so the message covers both.
            return context.codingPath.isEmpty
                ? "the body is not valid JSON, or a number in it is not a whole number within range"
                : "\(Self.path(context.codingPath)) is not a valid value (numbers must be whole and in range)"
        @unknown default:
            return "the body is not the JSON this call takes"
        }
    }

    /// `$.organization_id`, `$.domains[2]`: the JSON path with the API's snake_case names.
    static func path(_ codingPath: [any CodingKey]) -> String {
        codingPath.reduce("$") { path, key in
            if let index = key.intValue { return path + "[\(index)]" }
            return path + "." + Self.snakeCase(key.stringValue)
        }
    }

    static func snakeCase(_ name: String) -> String {
        var out = ""
        for character in name {
            if character.isUppercase {
                out += "_" + character.lowercased()
            } else {
                out.append(character)
            }
        }
        return out
    }

    static func kind(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is Int64.Type, is UInt32.Type, is Int32.Type: return "a whole number"
        case is [String].Type: return "an array of strings"
        default: return type is any Collection.Type ? "an array" : "an object"
        }
    }
}
