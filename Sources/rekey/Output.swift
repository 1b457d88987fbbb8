import Foundation
import RekeyAdminModel

/// How the CLI prints the admin model's values.
enum Output {
    static func userLine(_ user: Admin.User) -> String {
        "\(user.id)  \(user.name)  <\(user.primaryEmail?.address ?? "")>  \(user.role)\(user.state == "disabled" ? "  (disabled)" : "")"
    }

    static func user(_ user: Admin.User) {
        print(Self.userLine(user))
        for email in user.emails {
            let flags = [email.primary ? "primary" : nil, email.verified ? "verified" : "unverified"].compactMap { $0 }
            print("  \(email.address)  \(flags.joined(separator: ", "))  \(email.id)")
        }
        print("  password: \(user.hasPassword ? "set" + (user.passwordChangedAt.map { " \($0)" } ?? "") : "none yet")")
        if let organization = user.organizationId { print("  organization: \(organization)") }
        print("  locale: \(user.locale)  created: \(user.createdAt ?? "")")
    }

    static func warnings(_ user: Admin.User) {
        for warning in user.warnings ?? [] { print("Warning: \(warning)") }
    }

    static func message(_ message: Admin.Message, indent: String = "") {
        func print(_ line: String) { Swift.print(indent + line) }
        print("\(message.createdAt ?? "")  \(message.id)  \(message.template)  to \(message.to)  \(message.state)")
        if !message.reason.isEmpty { print("  \(message.reason)") }
        for attempt in message.attempts {
            var line = "  \(attempt.startedAt ?? "")  \(attempt.outcome)  \(attempt.server)"
            if attempt.replyCode > 0 {
                line += "  \(attempt.replyCode) \(attempt.enhancedStatus) \(attempt.replyText)"
            } else if !attempt.error.isEmpty {
                line += "  \(attempt.error)"
            }
            if !attempt.remoteQueueId.isEmpty { line += "  [queue id \(attempt.remoteQueueId)]" }
            print(line)
        }
    }

    /// "Password reset email queued for j***@example.com (message m_…)", or why it was not sent.
    static func sent(_ sent: Admin.SentMail, what: String) {
        switch sent.status {
        case "suppressed":
            print("\(what) NOT sent: \(sent.sentTo) is on the suppression list (\(sent.messageId)). See `rekey suppressions list`.")
        default:
            print("\(what) queued for \(sent.sentTo) (message \(sent.messageId)). Follow it with `rekey message \(sent.messageId)`.")
        }
    }
}
