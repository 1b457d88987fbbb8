import RekeyAdminModel
import RekeyDirectoryAPI
import RekeyNotifierAPI

// The services' messages as the admin model's values (snake_case JSON on the wire).

extension Admin.Email {
    init(_ email: Rekey_Directory_V1_EmailIdentity) {
        self.init(id: email.id, address: email.address, primary: email.primary, verified: email.verified)
    }
}

extension Admin.User {
    init(_ user: Rekey_Directory_V1_User, warnings: [String] = []) {
        self.init(
            id: user.id, name: user.name, role: user.role, staff: user.staff,
            organizationId: user.organizationID.isEmpty ? nil : user.organizationID,
            state: user.state == .disabled ? "disabled" : "active", locale: user.locale, emails: user.emails.map(Admin.Email.init),
            hasPassword: user.hasPassword, passwordChangedAt: Admin.time(user.passwordChangedAtUnixMs), createdAt: Admin.time(user.createdAtUnixMs),
            updatedAt: Admin.time(user.updatedAtUnixMs), warnings: warnings.isEmpty ? nil : warnings
        )
    }
}

extension Admin.ImportReport {
    init(_ report: Rekey_Directory_V1_ImportUsersResponse) {
        self.init(
            committed: report.committed, created: Int(report.created), refused: Int(report.refused),
            rows: report.rows.map { Row(line: Int($0.line), email: $0.email, userId: $0.userID, error: $0.error.isEmpty ? nil : $0.error) },
            rowsOmitted: Int(report.rowsOmitted)
        )
    }
}

extension Admin.Organization {
    init(_ organization: Rekey_Directory_V1_Organization) {
        self.init(id: organization.id, name: organization.name, domains: organization.domains, createdAt: Admin.time(organization.createdAtUnixMs))
    }
}

extension Admin.AuditRecord {
    init(_ record: Rekey_Directory_V1_AuditRecord) {
        self.init(
            id: record.id, at: Admin.time(record.atUnixMs), actorUserId: record.actorUserID, actorClientAddress: record.actorClientAddress,
            action: record.action, target: record.target, detail: record.detail
        )
    }
}

extension Admin.APIKey {
    init(_ info: Rekey_Directory_V1_ApiKeyInfo, key: String? = nil) {
        self.init(id: info.id, userId: info.userID, name: info.name, expiresAt: Admin.time(info.expiresAtUnixMs), key: key)
    }
}

extension Admin.Attempt {
    init(_ attempt: Rekey_Notifier_V1_Attempt) {
        let outcome: String
        switch attempt.outcome {
        case .accepted: outcome = "accepted"
        case .temporaryFailure: outcome = "temporary_failure"
        case .permanentFailure: outcome = "permanent_failure"
        case .interrupted: outcome = "interrupted"
        default: outcome = "in_progress"
        }
        self.init(
            startedAt: Admin.time(attempt.startedAtUnixMs), finishedAt: Admin.time(attempt.finishedAtUnixMs), transport: attempt.transport,
            server: attempt.server, outcome: outcome, stage: attempt.stage, replyCode: Int(attempt.replyCode), enhancedStatus: attempt.enhancedStatus,
            replyText: attempt.replyText, remoteQueueId: attempt.remoteQueueID, error: attempt.error
        )
    }
}

extension Admin.Message {
    /// `mask`: the recipient as `j***@example.com`, for callers who may not see addresses.
    init(_ message: Rekey_Notifier_V1_Message, mask: Bool) {
        self.init(
            id: message.id, template: message.templateName, to: mask ? Flows.mask(message.toAddress) : message.toAddress,
            state: MessageNames.state(message.state), subject: message.subject, messageIdHeader: message.messageIDHeader,
            createdAt: Admin.time(message.createdAtUnixMs), nextAttemptAt: Admin.time(message.nextAttemptAtUnixMs), reason: message.reason,
            requestedBy: message.requestedBy?.userID ?? "", attempts: message.attempts.map(Admin.Attempt.init),
            tokenId: message.tokenID.isEmpty ? nil : message.tokenID
        )
        self.reports = message.reports.map { report in
            Admin.Report(
                receivedAt: Admin.time(report.receivedAtUnixMs), kind: report.kind, action: report.action, status: report.status,
                diagnosticCode: report.diagnosticCode, remoteMta: report.remoteMta, recipient: mask ? Flows.mask(report.recipient) : report.recipient,
                feedbackType: report.feedbackType, reporter: report.reporter
            )
        }
    }
}

extension Admin.Suppression {
    init(_ suppression: Rekey_Notifier_V1_Suppression) {
        self.init(address: suppression.address, reason: suppression.reason, createdAt: Admin.time(suppression.createdAtUnixMs), messageId: suppression.messageID)
    }
}

extension Admin.SentMail {
    init(messageID: String, sentTo: String, status: Rekey_Notifier_V1_EnqueueStatus) {
        self.init(messageId: messageID, sentTo: sentTo, status: MessageNames.status(status))
    }
}

/// The notifier's enum values by their API names.
enum MessageNames {
    static func state(_ state: Rekey_Notifier_V1_MessageState) -> String {
        switch state {
        case .queued: return "queued"
        case .deferred: return "deferred"
        case .accepted: return "accepted"
        case .failed: return "failed"
        case .suppressed: return "suppressed"
        case .bounced: return "bounced"
        default: return "unknown"
        }
    }

    static func status(_ status: Rekey_Notifier_V1_EnqueueStatus) -> String {
        switch status {
        case .queued: return "queued"
        case .suppressed: return "suppressed"
        case .duplicate: return "duplicate"
        default: return "unknown"
        }
    }
}

extension Admin.DomainCheck.Finding {
    init(_ finding: Rekey_Notifier_V1_DomainFinding) {
        let status = switch finding.status {
        case .ok: "ok"
        case .warning: "warning"
        case .problem: "problem"
        default: "unknown"
        }
        self.init(check: finding.check, status: status, summary: finding.summary, fix: finding.fix, evidence: finding.evidence)
    }
}
