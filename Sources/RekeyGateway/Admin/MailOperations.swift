import RekeyAdminModel
import RekeyNotifierAPI
import RekeyTokensAPI

/// Sending reset, verification and test email, and following what happened to it.
package struct MailOperations: Sendable {
    let flows: Flows
    var notifier: Rekey_Notifier_V1_Notifier.Client { self.flows.backends.notifier }

    /// Sends a password reset email to the primary address of the user `reference` names (an id
    /// or any of their addresses). With an id that is four RPCs in all: the key, the user (with
    /// the rank check), the token, the message.
    package func sendReset(_ actor: AdminActor, user reference: String) async throws(AdminError) -> Admin.SentMail {
        try actor.require(.manageUsers)
        let user = try await UserOperations(flows: self.flows).record(actor, reference, for: "password_reset.send")
        guard user.state == .active else {
            throw AdminError.conflict("\(user.name) is disabled; enable the account first")
        }
        return try await adminCall {
            let sent = try await self.flows.sendReset(user: user, primary: nil, admin: actor.user.id, clientAddress: actor.clientAddress, requestID: actor.requestID)
            return Admin.SentMail(messageID: sent.messageID, sentTo: Flows.mask(sent.address), status: sent.status)
        }
    }

    /// Sends a verification email to one of the user's addresses (`emailID`), or the primary one.
    package func sendVerification(_ actor: AdminActor, user reference: String, emailID: String?) async throws(AdminError) -> Admin.SentMail {
        try actor.require(.manageUsers)
        let user = try await UserOperations(flows: self.flows).record(actor, reference, for: "verification.send")
        guard let email = emailID.map({ id in user.emails.first { $0.id == id } }) ?? user.emails.first(where: \.primary) else {
            throw AdminError.notFound("the user has no email address with the id \(emailID ?? "")")
        }
        return try await adminCall {
            let sent = try await self.flows.sendVerification(user: user, email: email, admin: actor.user.id, clientAddress: actor.clientAddress, requestID: actor.requestID)
            return Admin.SentMail(messageID: sent.messageID, sentTo: Flows.mask(sent.address), status: sent.status)
        }
    }

    /// The email sent to a user, newest first, with each delivery attempt.
    package func messages(_ actor: AdminActor, userID: String, page: PageRequest) async throws(AdminError) -> Admin.MessagesPage {
        try await adminCall {
            var list = Rekey_Notifier_V1_ListMessagesRequest()
            list.userID = userID
            list.pageSize = UInt32(clamping: page.size)
            list.pageToken = page.token
            let found = try await self.notifier.listMessages(list, options: actor.options)
            return Admin.MessagesPage(messages: found.messages.map { Admin.Message($0, mask: !actor.canSeeAddresses) }, nextPageToken: found.nextPageToken)
        }
    }

    package func message(_ actor: AdminActor, id: String) async throws(AdminError) -> Admin.Message {
        try await adminCall {
            var get = Rekey_Notifier_V1_GetMessageRequest()
            get.messageID = id
            return Admin.Message(try await self.notifier.getMessage(get, options: actor.options).message ?? .init(), mask: !actor.canSeeAddresses)
        }
    }

    /// Addresses that bounced for good; `address` narrows to one.
    package func suppressions(_ actor: AdminActor, address: String, page: PageRequest) async throws(AdminError) -> Admin.SuppressionsPage {
        try await adminCall {
            var list = Rekey_Notifier_V1_ListSuppressionsRequest()
            list.address = address
            list.pageSize = UInt32(clamping: page.size)
            list.pageToken = page.token
            let found = try await self.notifier.listSuppressions(list, options: actor.options)
            return Admin.SuppressionsPage(suppressions: found.suppressions.map(Admin.Suppression.init), nextPageToken: found.nextPageToken)
        }
    }

    /// Takes `address` off the suppression list; `reason` is kept with the removal record.
    package func removeSuppression(_ actor: AdminActor, address: String, reason: String = "") async throws(AdminError) -> Admin.Suppression {
        try actor.require(.manageUsers)
        return try await adminCall {
            var remove = Rekey_Notifier_V1_RemoveSuppressionRequest()
            remove.address = address
            remove.reason = reason
            remove.actor = actor.notifierActor
            let removed = try await self.notifier.removeSuppression(remove, options: actor.options).removed
            return removed.map(Admin.Suppression.init) ?? Admin.Suppression(address: address, reason: "", createdAt: nil, messageId: "")
        }
    }

    /// The outbox now, the last hour's attempts and the last `hours` hours' attempts per hour.
    package func health(_ actor: AdminActor, hours: Int = 24) async throws(AdminError) -> Admin.MailHealth {
        try await adminCall {
            var request = Rekey_Notifier_V1_GetQueueStatsRequest()
            request.hours = UInt32(clamping: hours)
            let stats = try await self.notifier.getQueueStats(request, options: actor.options)
            typealias Figures = Admin.MailHealth.Figures
            return Admin.MailHealth(
                queueDepth: Int(stats.depth), oldestQueuedAgeSeconds: Int(stats.oldestQueuedAgeMs / 1000),
                lastAcceptedAt: Admin.time(stats.lastAcceptedAtUnixMs), lastAttemptAt: Admin.time(stats.lastAttemptAtUnixMs),
                transport: stats.transport, server: stats.server,
                lastHour: Figures(
                    key: "all", accepted: Int(stats.recentAccepted), temporaryFailures: Int(stats.recentTemporaryFailures),
                    permanentFailures: Int(stats.recentPermanentFailures)
                ),
                lastHourByDomain: stats.recentByDomain.map {
                    Figures(key: $0.domain, accepted: Int($0.accepted), temporaryFailures: Int($0.temporaryFailures), permanentFailures: Int($0.permanentFailures))
                },
                hourly: stats.hourly.map {
                    Figures(
                        key: Admin.time($0.startUnixMs) ?? "", accepted: Int($0.accepted), temporaryFailures: Int($0.temporaryFailures),
                        permanentFailures: Int($0.permanentFailures)
                    )
                }
            )
        }
    }

    /// The sending domain as receivers see it (the notifier's check, at most a minute old unless
    /// `fresh`), with the gateway's own finding: whether the links in the mail point at a host
    /// aligned with the From domain (a link to another domain is a phishing signal to filters).
    package func checkDomain(_ actor: AdminActor, fresh: Bool) async throws(AdminError) -> Admin.DomainCheck {
        try await adminCall {
            var request = Rekey_Notifier_V1_CheckDomainRequest()
            request.fresh = fresh
            let report = try await self.notifier.checkDomain(request, options: actor.options)
            var findings = report.findings.map(Admin.DomainCheck.Finding.init)
            findings.append(Self.linkFinding(publicURL: self.flows.publicURL, fromDomain: report.fromDomain))
            return Admin.DomainCheck(
                fromDomain: report.fromDomain, envelopeDomain: report.envelopeDomain, dkimDomain: report.dkimDomain, dnsServer: report.dnsServer,
                checkedAt: Admin.time(report.checkedAtUnixMs), findings: findings
            )
        }
    }

    static func linkFinding(publicURL: String, fromDomain: String) -> Admin.DomainCheck.Finding {
        let host = (publicURL.split(separator: "/", omittingEmptySubsequences: true).dropFirst().first.map(String.init) ?? "")
            .split(separator: ":").first.map { $0.lowercased() } ?? ""
        func registered(_ name: String) -> String { name.split(separator: ".").suffix(2).joined(separator: ".") }
        if !host.isEmpty, !fromDomain.isEmpty, registered(host) == registered(fromDomain) {
            return .init(check: "link", status: "ok", summary: "the links in the mail go to \(host), aligned with the From domain \(fromDomain)")
        }
        return .init(
            check: "link", status: "warning",
            summary: "the links in the mail go to \(host.isEmpty ? publicURL : host), which is not under the From domain \(fromDomain): filters read a link to another domain as a phishing sign",
            fix: "serve the gateway under \(fromDomain) (public_url), or send from an address at \(host)'s domain"
        )
    }

    /// When the next password reset for the user will be allowed, if a rate limit holds it back now.
    package func resetHeldUntil(_ actor: AdminActor, userID: String) async throws(AdminError) -> String? {
        try await adminCall {
            var request = Rekey_Tokens_V1_GetRateLimitStatusRequest()
            request.userID = userID
            request.purpose = .passwordReset
            let limits = try await self.flows.backends.tokens.getRateLimitStatus(request, options: actor.options).limits
            return limits.map(\.nextAllowedAtUnixMs).max().flatMap { $0 > 0 ? Admin.time($0) : nil }
        }
    }

    /// A test message through the same path as reset mail.
    package func test(_ actor: AdminActor, address: String) async throws(AdminError) -> Admin.SentMail {
        try actor.require(.manageUsers)
        return try await adminCall {
            var test = Rekey_Notifier_V1_SendTestRequest()
            test.toAddress = address
            test.requestedBy = actor.notifierActor
            let sent = try await self.notifier.sendTest(test, options: actor.options)
            return Admin.SentMail(messageID: sent.messageID, sentTo: address, status: sent.status)
        }
    }
}
