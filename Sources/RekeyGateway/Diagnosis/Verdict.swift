import RekeyAdminModel
import RekeyNotifierAPI
import RekeyTokensAPI

/// The verdict of a diagnosis: pure rules over the gathered evidence and the time, each finding
/// with a stable code (docs/diagnose.md), a summary, the next step and the evidence it rests on.
/// No RPC and no clock here, so every rule is tested on its own (`VerdictTests`).
enum Verdict {
    /// The findings, most likely first, from what was gathered and the time now (Unix ms).
    static func findings(_ evidence: DiagnosisEvidence, now: Int64) -> [Admin.Diagnosis.Finding] {
        let (user, matched, primary, candidates) = (evidence.user, evidence.matched, evidence.primary, evidence.candidates)
        let (events, tokens, limits, messages) = (evidence.events, evidence.tokens, evidence.limits, evidence.messages)
        let (suppression, queue, unreachable) = (evidence.suppression, evidence.queue, evidence.unreachable)
        let mask = evidence.mask
        let domainCheck = evidence.domainCheck
        var findings: [Admin.Diagnosis.Finding] = []
        func time(_ ms: Int64) -> String { Admin.time(ms) ?? "?" }
        let input = evidence.input

        // A service that did not answer makes every other conclusion uncertain: first.
        if !unreachable.isEmpty {
            findings.append(.init(
                code: "platform_service_unreachable",
                summary: "Platform problem: \(unreachable.joined(separator: ", ")) did not answer, so this diagnosis is incomplete and reset email may not be sent.",
                nextStep: "Escalate to infrastructure with the report below; check that rekey-\(unreachable[0]) is running (its healthcheck).",
                evidence: unreachable.map { "\($0): no answer within the deadline" }
            ))
        }
        guard let user else {
            if !candidates.isEmpty {
                findings.append(.init(
                    code: "ambiguous", summary: "`\(input)` matches \(candidates.count) users; nothing else was looked at.",
                    nextStep: "Run again with the user's id or email address.", evidence: candidates
                ))
            } else if unreachable.contains("directory") {
                // Said above.
            } else {
                let bounced = messages.first { $0.state == .failed || $0.state == .suppressed }
                findings.append(.init(
                    code: "unknown_address",
                    summary: "No account has \(input.contains("@") ? "the address \(mask(input))" : "the name or id `\(input)`"), so no reset email is ever sent to it.",
                    nextStep: "Ask the user which address they signed up with; find them with `rekey users search --all TEXT`.",
                    evidence: ["directory: no user has \(mask(input))"] + (bounced.map { ["notifier: message \($0.id) to it: \($0.reason)"] } ?? [])
                ))
            }
            return findings + Self.platformFindings(queue, domain: input.split(separator: "@").last.map(String.init), unreachable: unreachable, alreadyPlatform: !unreachable.isEmpty)
        }

        let primaryAddress = primary.map { mask($0.address) } ?? "(none)"
        if user.state == .disabled {
            findings.append(.init(
                code: "account_disabled",
                summary: "The account of \(user.name) is disabled: the forgot-password page sends nothing and admins cannot send a reset.",
                nextStep: "If the user should have access, `rekey users enable \(user.id)`, then `rekey reset send \(user.id)`.",
                evidence: ["directory: \(user.id) state disabled"]
            ))
        }
        if let matched, !matched.primary {
            findings.append(.init(
                code: "secondary_address",
                summary: "\(mask(matched.address)) is a secondary address of \(user.name): reset mail goes to the primary address \(primaryAddress), not to the one typed.",
                nextStep: "Ask the user to look in the mailbox of \(primaryAddress); or make \(mask(matched.address)) primary if that is where they read mail.",
                evidence: ["directory: \(matched.id) \(mask(matched.address)) secondary\(matched.verified ? ", verified" : ", unverified"); primary \(primaryAddress)"]
            ))
        }

        let resets = messages.filter { $0.templateName == "password_reset" }
        let issued = events.filter { $0.kind == .issued && $0.purpose == .passwordReset }
        let limited = events.filter { $0.kind == .rateLimited }
        if let suppression {
            findings.append(.init(
                code: "suppressed",
                summary: "\(mask(suppression.address)) is on the suppression list since \(time(suppression.createdAtUnixMs)): its server refused it for good (\(suppression.reason)). Nothing is sent to it.",
                nextStep: "Have the user fix the mailbox or give another address (update it), then `rekey suppressions remove \(suppression.address)` and send again.",
                evidence: ["notifier: suppression since \(time(suppression.createdAtUnixMs)), message \(suppression.messageID): \(suppression.reason)"]
            ))
        }
        if let latest = resets.first ?? messages.first {
            let attempt = latest.attempts.last
            let reply = attempt.map { $0.replyCode > 0 ? "\($0.replyCode) \($0.enhancedStatus) \($0.replyText)".replacingOccurrences(of: "  ", with: " ") : $0.error } ?? ""
            let evidence = ["notifier: message \(latest.id) (\(latest.templateName)) queued \(time(latest.createdAtUnixMs)), state \(DiagnosisNames.state(latest.state))"]
                + latest.attempts.map { "  attempt \(time($0.startedAtUnixMs)) via \($0.server): \(DiagnosisNames.outcome($0.outcome)) at \($0.stage) — \($0.replyCode > 0 ? "\($0.replyCode) \($0.enhancedStatus) \($0.replyText)" : $0.error)\($0.remoteQueueID.isEmpty ? "" : " [queue id \($0.remoteQueueID)]")" }
            switch latest.state {
            case .accepted where attempt?.transport == "maildir":
                findings.append(.init(
                    code: "delivered",
                    summary: "Delivered to the local mail folder \(attempt?.server ?? "") at \(time(attempt?.finishedAtUnixMs ?? latest.updatedAtUnixMs)) as \(attempt?.remoteQueueID ?? "a file") (the maildir transport: nothing leaves this machine).",
                    nextStep: "Open that file in the mail folder; to reach real mailboxes, run the notifier with --transport smtp.",
                    evidence: evidence
                ))
            case .accepted:
                let server = attempt?.server ?? "the mail server"
                findings.append(.init(
                    code: "delivered",
                    summary: "Delivered: \(server) accepted the \(latest.templateName.replacingOccurrences(of: "_", with: " ")) email at \(time(attempt?.finishedAtUnixMs ?? latest.updatedAtUnixMs)) (\(reply)\(attempt?.remoteQueueID.isEmpty == false ? ", queue id \(attempt!.remoteQueueID)" : "")). From there it is up to the recipient's mail system.",
                    nextStep: "Ask the user to check spam/junk and other folders, and that they are signed in to \(mask(latest.toAddress)); mark the message as not spam. Subject: \"\(latest.subject)\".",
                    evidence: evidence
                ))
                findings += Self.unauthenticated(domainCheck)
            case .deferred where attempt?.outcome == .permanentFailure, .failed where latest.reason.hasPrefix("the relay refuses"):
                // A 5xx about us, not the mailbox: the notifier kept the message (and suppressed nothing).
                let retry = latest.state == .deferred
                    ? "the message is kept and retried (next attempt \(time(latest.nextAttemptAtUnixMs)))"
                    : "the message gave up after retrying: \(latest.reason)"
                findings.append(.init(
                    code: "platform_relay_refuses",
                    summary: "Platform problem: the relay refuses our mail (\(reply) at \(attempt?.stage ?? "RCPT")). That is its policy or our setup, not \(mask(latest.toAddress))'s mailbox: nothing was suppressed, and \(retry).",
                    nextStep: "Escalate to whoever runs the relay \(attempt?.server ?? "") with the report below: \(attempt.map(Self.relayHint) ?? "the reply names what it refuses"). \(retry.hasPrefix("the message is kept") ? "Once fixed, the message goes out on its next attempt." : "Once fixed, `rekey reset send \(user.id)`.")",
                    evidence: evidence
                ))
            case .deferred:
                findings.append(.init(
                    code: "deferred",
                    summary: "Not delivered yet: the last attempt failed temporarily (\(reply)); the next attempt is at \(time(latest.nextAttemptAtUnixMs)).",
                    nextStep: "Wait for the retry; if the same reply keeps coming, the recipient's server or our relay has a problem (see platform).",
                    evidence: evidence
                ))
            case .failed:
                let bounced = latest.reason.contains("hard bounce")
                findings.append(.init(
                    code: bounced ? "hard_bounce" : "failed",
                    summary: bounced
                        ? "Bounced: the recipient's server refused \(mask(latest.toAddress)) for good (\(reply)); the address is now suppressed."
                        : "The email failed for good: \(latest.reason).",
                    nextStep: bounced
                        ? "Check the address with the user; once fixed, `rekey suppressions remove \(latest.toAddress)` and `rekey reset send \(user.id)`."
                        : "Send again with `rekey reset send \(user.id)`; if it fails the same way, escalate.",
                    evidence: evidence
                ))
            case .bounced:
                let report = latest.reports.last { $0.kind == "dsn" && $0.action == "failed" }
                let suppressedNow = latest.reason.contains("address suppressed")
                let words = [report?.status, report?.diagnosticCode].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
                findings.append(.init(
                    code: "bounced_later",
                    summary: "Bounced after delivery: \(attempt?.server ?? "the relay") accepted the email at \(time(attempt?.finishedAtUnixMs ?? latest.createdAtUnixMs)), but \(report?.remoteMta.isEmpty == false ? report!.remoteMta : "the recipient's server") refused it later (\(words.isEmpty ? latest.reason : words)), reported at \(time(report?.receivedAtUnixMs ?? latest.updatedAtUnixMs))\(suppressedNow ? "; the address is now suppressed" : "").",
                    nextStep: suppressedNow
                        ? "Check the address with the user; once fixed, `rekey suppressions remove \(latest.toAddress)` and `rekey reset send \(user.id)`."
                        : "The recipient's server refused it for another reason than the mailbox (see its words): if it is about spam or policy, escalate with them; else send again.",
                    evidence: evidence + latest.reports.map { "notifier: \($0.kind) report \(time($0.receivedAtUnixMs)) from \($0.reporter): \($0.action) \($0.status) \($0.diagnosticCode) \($0.remoteMta)" }
                ))
            case .queued:
                findings.append(.init(
                    code: "queued",
                    summary: "Queued at \(time(latest.createdAtUnixMs)) and not tried yet.",
                    nextStep: "If it stays queued for more than a minute, the delivery workers are stalled: escalate (see platform).",
                    evidence: evidence
                ))
            case .suppressed:
                if suppression == nil {
                    findings.append(.init(
                        code: "suppressed", summary: "The last email was not sent: \(latest.reason).",
                        nextStep: "Fix the address, then `rekey suppressions remove \(latest.toAddress)`.", evidence: evidence
                    ))
                }
            default:
                break
            }
        }
        findings += Self.linkFindings(evidence)
        // A complaint about any message in the window: the user (or their provider) marked it as spam.
        for message in messages {
            guard let complaint = message.reports.last(where: { $0.kind == "complaint" && $0.feedbackType != "not-spam" }) else { continue }
            findings.append(.init(
                code: "complaint",
                summary: "The email of \(time(message.createdAtUnixMs)) (\(message.subject)) was marked as spam by its recipient at \(time(complaint.receivedAtUnixMs))\(complaint.reporter.isEmpty ? "" : ", reported by \(complaint.reporter)"); the address is suppressed, so nothing more is sent to it.",
                nextStep: "Ask the user whether they did. If it was a mistake, `rekey suppressions remove \(message.toAddress)`, ask them to mark our mail as not spam, and send again.",
                evidence: ["notifier: complaint (\(complaint.feedbackType)) about message \(message.id) received \(time(complaint.receivedAtUnixMs))"]
            ))
            break
        }

        if let limit = limited.first {
            let next = limits.map(\.nextAllowedAtUnixMs).max() ?? 0
            findings.append(.init(
                code: "rate_limited",
                summary: "\(limited.count) reset request\(limited.count == 1 ? " was" : "s were") refused by the rate limit (last at \(time(limit.atUnixMs)), \(limit.detail)); no email goes out for those.",
                nextStep: next > now ? "The next request is allowed at \(time(next)); ask the user to wait until then." : "Requests are allowed again now; ask the user to try once more.",
                evidence: limited.prefix(5).map { "reset-token: rate limited at \(time($0.atUnixMs)) (\($0.detail)) from \($0.clientAddress)" }
            ))
        }

        for token in tokens where token.purpose == .passwordReset {
            if token.state == .used {
                let issuedFrom = token.clientAddress
                let redeemed = events.first { $0.kind == .redeemed && $0.tokenID == token.tokenID }
                let usedFrom = redeemed?.clientAddress ?? ""
                let other = !usedFrom.isEmpty && !issuedFrom.isEmpty && usedFrom != issuedFrom
                findings.append(.init(
                    code: other ? "token_used_elsewhere" : "token_used",
                    summary: "The reset link of \(time(token.issuedAtUnixMs)) was used at \(time(token.usedAtUnixMs)) from \(usedFrom.isEmpty ? "an unknown address" : usedFrom)\(other ? ", not from \(issuedFrom) where it was requested" : ""): the password was changed.",
                    nextStep: other
                        ? "If the user did not do this, treat the account as compromised: disable it, reset the password and check the mailbox's security."
                        : "The email did arrive. If the user cannot sign in, send a new reset.",
                    evidence: ["reset-token: \(token.tokenID) issued \(time(token.issuedAtUnixMs)) from \(issuedFrom.isEmpty ? "?" : issuedFrom), used \(time(token.usedAtUnixMs)) from \(usedFrom.isEmpty ? "?" : usedFrom)"]
                ))
                break
            }
            if token.state == .expired {
                findings.append(.init(
                    code: "token_expired",
                    summary: "The reset link of \(time(token.issuedAtUnixMs)) expired at \(time(token.expiresAtUnixMs)) without being used.",
                    nextStep: "Send a new one with `rekey reset send \(user.id)` and ask the user to open it soon.",
                    evidence: ["reset-token: \(token.tokenID) issued \(time(token.issuedAtUnixMs)), expired \(time(token.expiresAtUnixMs)), never used"]
                ))
                break
            }
        }

        if issued.isEmpty && resets.isEmpty && limited.isEmpty && user.state == .active {
            findings.append(.init(
                code: "never_requested",
                summary: "No password reset was requested for \(user.name) since \(time(evidence.since)): there is no email to look for.",
                nextStep: "Send one with `rekey reset send \(user.id)` (it goes to \(primaryAddress)), or ask the user to use \"Forgot password?\" with that address.",
                evidence: ["reset-token: no reset token issued since \(time(evidence.since))", "notifier: no reset email since \(time(evidence.since))"]
            ))
        }
        if !user.hasPassword && user.state == .active {
            findings.append(.init(
                code: "no_password",
                summary: "\(user.name) has no password yet; a reset email is how they set the first one.",
                nextStep: "`rekey reset send \(user.id)`.",
                evidence: ["directory: no password set"]
            ))
        }
        let domain = primary?.address.split(separator: "@").last.map { String($0).lowercased() }
        let platform = Self.platformFindings(queue, domain: domain, unreachable: unreachable, alreadyPlatform: !unreachable.isEmpty)
        // A stalled relay explains a deferred or queued message better than anything else.
        if !platform.isEmpty, let index = findings.firstIndex(where: { $0.code == "deferred" || $0.code == "queued" }) {
            findings.insert(contentsOf: platform, at: index)
            return findings
        }
        return findings + platform
    }

    /// What a relay's refusal of us most likely asks to fix, from its stage, code and words.
    static func relayHint(_ attempt: Rekey_Notifier_V1_Attempt) -> String {
        let text = attempt.replyText.lowercased()
        switch (attempt.stage, attempt.enhancedStatus) {
        case ("AUTH", _):
            return "it refuses the notifier's user name or password (smtp_username, smtp_password: changed or rotated on the relay?)"
        case (_, "5.7.0") where text.contains("starttls"), (_, _) where text.contains("must issue a starttls"):
            return "it requires TLS first (check smtp_tls and the relay's certificate)"
        case (_, _) where text.contains("helo"):
            return "it refuses the notifier's EHLO name: set smtp_helo to this host's fully qualified DNS name"
        case (_, "5.6.7"), (_, _) where text.contains("smtputf8"):
            return "it wants SMTPUTF8 declared for an address with non-ASCII characters"
        case (_, _) where text.contains("relay access denied"):
            return "it does not relay for this host: allow the notifier's address (Postfix: mynetworks) or give it credentials"
        case ("MAIL", _), (_, "5.1.7"), (_, "5.1.8"):
            return "it refuses the sender address (from_address): its domain, or the relay's sender rules"
        default:
            return "the reply names what it refuses (HELO name, sender, relay access, authentication, TLS, SMTPUTF8)"
        }
    }

    /// Who opened the reset links: a scanner that looked at the newest one (and the user has not),
    /// the user who opened it and did not finish, or an older link opened after a newer was sent.
    static func linkFindings(_ evidence: DiagnosisEvidence) -> [Admin.Diagnosis.Finding] {
        func time(_ ms: Int64) -> String { Admin.time(ms) ?? "?" }
        let openings = evidence.events.filter { $0.kind == .opened && $0.purpose == .passwordReset }
        guard !openings.isEmpty else { return [] }
        var findings: [Admin.Diagnosis.Finding] = []
        let resets = evidence.tokens.filter { $0.purpose == .passwordReset }.sorted { $0.issuedAtUnixMs > $1.issuedAtUnixMs }
        if let newest = resets.first, newest.state == .live {
            let opened = openings.filter { $0.tokenID == newest.tokenID }.sorted { $0.atUnixMs < $1.atUnixMs }
            let delivered = Self.deliveredAt(token: newest.tokenID, evidence.messages)
            let people = opened.filter { !Self.isRobot($0) }
            if let person = people.last {
                findings.append(.init(
                    code: "opened_not_finished",
                    summary: "The user opened the newest reset link at \(time(person.atUnixMs)), \(DiagnosisNames.opening(person, deliveredAt: delivered)), and did not finish: the password was not changed.",
                    nextStep: "The email arrived. Ask them to open the link again and choose a new password before \(time(newest.expiresAtUnixMs)).",
                    evidence: opened.map { "reset-token: \($0.tokenID) opened \(time($0.atUnixMs)) from \($0.clientAddress): \(DiagnosisNames.opening($0, deliveredAt: delivered))" }
                ))
            } else if let first = opened.first {
                findings.append(.init(
                    code: "opened_by_scanner",
                    summary: "The newest reset link was opened \(DiagnosisNames.opening(first, deliveredAt: delivered)), not by the user, who has not opened it yet; the link still works (looking does not spend it).",
                    nextStep: "The email did arrive. Ask the user to find it (spam/junk, other folders, the right mailbox) and open the link themselves before \(time(newest.expiresAtUnixMs)).",
                    evidence: opened.map { "reset-token: \($0.tokenID) opened \(time($0.atUnixMs)) from \($0.clientAddress): \(DiagnosisNames.opening($0, deliveredAt: delivered))" }
                ))
            }
        }
        // An older link, no longer usable, opened once a newer one had been sent.
        for opening in openings where !Self.isRobot(opening) && !["live", ""].contains(opening.tokenState) {
            guard let old = resets.first(where: { $0.tokenID == opening.tokenID }),
                  let newer = resets.first(where: { $0.issuedAtUnixMs > old.issuedAtUnixMs && $0.issuedAtUnixMs <= opening.atUnixMs })
            else { continue }
            findings.append(.init(
                code: "superseded_link",
                summary: "The user opened an older reset link (sent \(time(old.issuedAtUnixMs)), \(opening.tokenState) by then) at \(time(opening.atUnixMs)), after a newer one was sent at \(time(newer.issuedAtUnixMs)): the page said the link no longer works.",
                nextStep: "Tell them to use the link in the newest email (sent \(time(newer.issuedAtUnixMs))) and to ignore the older ones.",
                evidence: ["reset-token: \(old.tokenID) issued \(time(old.issuedAtUnixMs)), opened \(time(opening.atUnixMs)) from \(opening.clientAddress) while \(opening.tokenState); \(newer.tokenID) issued \(time(newer.issuedAtUnixMs))"]
            ))
            break
        }
        return findings
    }

    /// An opening that a person in a browser would not make: a HEAD, a known link scanner, a
    /// headless browser, a tool or no User-Agent at all.
    static func isRobot(_ event: Rekey_Tokens_V1_TokenEvent) -> Bool {
        event.method == "HEAD" || ["scanner", "headless", "tool", "empty"].contains(event.userAgentClass)
    }

    /// When the message carrying `token` was accepted, if it was.
    static func deliveredAt(token: String, _ messages: [Rekey_Notifier_V1_Message]) -> Int64? {
        messages.first { $0.tokenID == token }?.attempts.last { $0.outcome == .accepted }?.finishedAtUnixMs
    }

    /// Mail the relay took but receivers are likely to file as spam: no DKIM, SPF not allowing
    /// the relay, no DMARC or From not aligned (the notifier's domain check).
    static func unauthenticated(_ check: Rekey_Notifier_V1_CheckDomainResponse?) -> [Admin.Diagnosis.Finding] {
        guard let check else { return [] }
        let problems = check.findings.filter { $0.status == .problem && ["spf", "dkim", "dmarc"].contains($0.check) }
        guard !problems.isEmpty else { return [] }
        let what = problems.map(\.check).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }.map { $0.uppercased() }
        return [.init(
            code: "likely_spam_unauthenticated",
            summary: "Likely in spam: the mail from \(check.fromDomain) is not properly authenticated (\(what.joined(separator: ", "))), so receivers are apt to file it as spam or drop it.",
            nextStep: "Ask the user to look in spam/junk first. To fix it for everyone, send the fixes below to whoever runs the \(check.fromDomain) DNS (rekey mail check-domain shows them all).",
            evidence: problems.map { "domain check \(Admin.time(check.checkedAtUnixMs) ?? ""): \($0.check) — \($0.summary)\($0.fix.isEmpty ? "" : "; fix: \($0.fix)")" }
        )]
    }

    /// The relay refusing or unreachable, or the queue not moving.
    static func platformFindings(_ queue: Rekey_Notifier_V1_QueueStats?, domain: String?, unreachable: [String], alreadyPlatform: Bool) -> [Admin.Diagnosis.Finding] {
        guard let queue, !alreadyPlatform else { return [] }
        let stalled = queue.depth > 0 && queue.oldestQueuedAgeMs > 5 * 60_000
        let failing = queue.recentTemporaryFailures >= 3 && queue.recentAccepted == 0
        guard stalled || failing else { return [] }
        var evidence = [
            "notifier: \(queue.depth) queued, oldest \(queue.oldestQueuedAgeMs / 60_000) min old",
            "notifier: last hour \(queue.recentAccepted) accepted, \(queue.recentTemporaryFailures) temporary failures, \(queue.recentPermanentFailures) permanent",
            "notifier: last accepted delivery \(Admin.time(queue.lastAcceptedAtUnixMs) ?? "never"), via \(queue.transport) \(queue.server)",
        ]
        if let domain, let figures = queue.recentByDomain.first(where: { $0.domain == domain }) {
            evidence.append("notifier: \(domain) last hour \(figures.accepted) accepted, \(figures.temporaryFailures) temporary, \(figures.permanentFailures) permanent failures")
        }
        return [.init(
            code: "platform_mail_stalled",
            summary: "Platform problem: mail is not going out — \(queue.depth) message\(queue.depth == 1 ? "" : "s") waiting, \(queue.recentTemporaryFailures) temporary failures and \(queue.recentAccepted) deliveries in the last hour (relay \(queue.server)).",
            nextStep: "Escalate to infrastructure with the report below: the relay is refusing or unreachable. Messages are kept and retried; nothing needs to be sent again.",
            evidence: evidence
        )]
    }

    static func escalation(_ report: Admin.Diagnosis) -> String {
        var lines = ["Rekey diagnosis \(report.reportId) at \(report.generatedAt) for \(report.who?.userId ?? report.input)"]
        for finding in report.findings where finding.code.hasPrefix("platform_") || finding.code == "likely_spam_unauthenticated" {
            lines.append(finding.summary)
            lines += finding.evidence.map { "  " + $0 }
        }
        if !report.platform.unreachable.isEmpty {
            lines.append("Unreachable: " + report.platform.unreachable.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
