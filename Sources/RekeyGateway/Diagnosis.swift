import Foundation
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyTokensAPI

/// `rekey diagnose`: why a user is not receiving the reset email, put together from what the
/// three services know — who the input names and where their mail goes, what was asked, what the
/// mail system did, how the platform is — and a verdict with the next step, ranked by
/// likelihood, each citing its evidence. Never a token, a password or a mail body.
package struct Diagnoser: Sendable {
    let flows: Flows

    /// The JSON shape of a diagnosis (documented in docs/diagnose.md); stable for scripts.
    struct Report: Encodable {
        struct Who: Encodable {
            var userId: String
            var name: String
            var role: String
            var state: String
            var hasPassword: Bool
            /// The address the input matched, and how.
            var matchedAddress: String?
            var matchedIsPrimary: Bool?
            var matchedVerified: Bool?
            /// Where reset mail goes (masked unless the caller has users.manage).
            var primaryAddress: String
            var primaryVerified: Bool
        }

        struct Request: Encodable {
            var at: String?
            var kind: String
            var purpose: String
            /// "self" or the admin's user id.
            var by: String
            var clientAddress: String
            var tokenId: String
            var detail: String
        }

        struct Token: Encodable {
            var tokenId: String
            var purpose: String
            var state: String
            var issuedAt: String?
            var expiresAt: String?
            var usedAt: String?
            var requestedFrom: String
        }

        struct Platform: Encodable {
            var queueDepth: Int?
            var oldestQueuedAgeSeconds: Int?
            var lastAcceptedAt: String?
            var recentAccepted: Int?
            var recentTemporaryFailures: Int?
            var recentPermanentFailures: Int?
            var recipientDomain: String?
            var recipientDomainAccepted: Int?
            var recipientDomainFailures: Int?
            var transport: String?
            var server: String?
            /// Services that did not answer.
            var unreachable: [String]
        }

        struct Finding: Encodable {
            /// A stable code: delivered, never_requested, secondary_address, unknown_address, …
            var code: String
            var summary: String
            var nextStep: String
            var evidence: [String]
        }

        var reportId: String
        var generatedAt: String
        var input: String
        var since: String
        var who: Who?
        var candidates: [String]
        var requests: [Request]
        var tokens: [Token]
        var messages: [MessageJSON]
        var suppression: String?
        var platform: Platform
        /// Most likely first.
        var findings: [Finding]
        /// A block to paste into a ticket when the platform is at fault.
        var escalation: String?
    }

    struct Context {
        var input: String
        var since: Int64
        var now: Int64
        var requestID: String
        var canSeeAddresses: Bool
    }

    func diagnose(_ input: String, since: Int64, requestID: String, canSeeAddresses: Bool) async throws -> Report {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let context = Context(input: input.trimmingCharacters(in: .whitespaces), since: since, now: now, requestID: requestID, canSeeAddresses: canSeeAddresses)
        var report = Report(
            reportId: try Hex.randomID(prefix: "dg_"), generatedAt: AdminAPI.time(now) ?? "", input: context.input,
            since: AdminAPI.time(since) ?? "", who: nil, candidates: [], requests: [], tokens: [], messages: [], suppression: nil,
            platform: .init(unreachable: []), findings: [], escalation: nil
        )
        let options = Backends.options(requestID)
        let mask: (String) -> String = { canSeeAddresses ? $0 : Flows.mask($0) }

        // 1. Who and where.
        var user: Rekey_Directory_V1_User?
        var matched: Rekey_Directory_V1_EmailIdentity?
        do {
            (user, matched, report.candidates) = try await self.resolve(context, options: options)
        } catch let error as RPCError where error.code == .unavailable || error.code == .deadlineExceeded {
            report.platform.unreachable.append("directory")
        }
        var primary: Rekey_Directory_V1_EmailIdentity?
        if let user {
            primary = user.emails.first(where: \.primary)
            report.who = .init(
                userId: user.id, name: user.name, role: user.role, state: user.state == .disabled ? "disabled" : "active",
                hasPassword: user.hasPassword, matchedAddress: matched.map { mask($0.address) }, matchedIsPrimary: matched?.primary,
                matchedVerified: matched?.verified, primaryAddress: primary.map { mask($0.address) } ?? "", primaryVerified: primary?.verified ?? false
            )
        }

        // 2-4, side by side: what was asked, what the mail system did, how the platform is.
        async let events = self.events(user, context, options)
        async let tokens = self.tokens(user, context, options)
        async let limits = self.limits(user, options)
        async let messages = self.messages(user, context, options)
        async let suppression = self.suppression(primary?.address ?? (context.input.contains("@") ? context.input : nil), options)
        async let stats = self.stats(options)

        let (eventList, eventsDown) = await events
        let (tokenList, tokensDown) = await tokens
        let (limitList, _) = await limits
        let (messageList, messagesDown) = await messages
        let (suppressionRecord, suppressionDown) = await suppression
        let (queue, statsDown) = await stats
        if eventsDown || tokensDown { report.platform.unreachable.append("reset-token") }
        if messagesDown || suppressionDown || statsDown { report.platform.unreachable.append("notifier") }
        report.platform.unreachable = Array(Set(report.platform.unreachable)).sorted()

        report.requests = eventList.map { event in
            Report.Request(
                at: AdminAPI.time(event.atUnixMs), kind: Self.kind(event.kind), purpose: Self.purpose(event.purpose),
                by: event.adminID.isEmpty ? "self" : event.adminID, clientAddress: event.clientAddress, tokenId: event.tokenID, detail: event.detail
            )
        }
        report.tokens = tokenList.map { token in
            Report.Token(
                tokenId: token.tokenID, purpose: Self.purpose(token.purpose), state: Self.state(token.state), issuedAt: AdminAPI.time(token.issuedAtUnixMs),
                expiresAt: AdminAPI.time(token.expiresAtUnixMs), usedAt: AdminAPI.time(token.usedAtUnixMs), requestedFrom: token.clientAddress
            )
        }
        report.messages = messageList.map { MessageJSON($0, mask: !canSeeAddresses) }
        if let suppressionRecord {
            report.suppression = "\(mask(suppressionRecord.address)) since \(AdminAPI.time(suppressionRecord.createdAtUnixMs) ?? "?"): \(suppressionRecord.reason)"
        }
        let domain = (primary?.address ?? context.input).split(separator: "@").last.map { String($0).lowercased() }
        if let queue {
            report.platform.queueDepth = Int(queue.depth)
            report.platform.oldestQueuedAgeSeconds = Int(queue.oldestQueuedAgeMs / 1000)
            report.platform.lastAcceptedAt = AdminAPI.time(queue.lastAcceptedAtUnixMs)
            report.platform.recentAccepted = Int(queue.recentAccepted)
            report.platform.recentTemporaryFailures = Int(queue.recentTemporaryFailures)
            report.platform.recentPermanentFailures = Int(queue.recentPermanentFailures)
            report.platform.transport = queue.transport
            report.platform.server = queue.server
            if let domain, let figures = queue.recentByDomain.first(where: { $0.domain == domain }) {
                report.platform.recipientDomain = domain
                report.platform.recipientDomainAccepted = Int(figures.accepted)
                report.platform.recipientDomainFailures = Int(figures.temporaryFailures + figures.permanentFailures)
            }
        }

        // 5. The verdict.
        report.findings = Self.findings(
            context: context, user: user, matched: matched, primary: primary, candidates: report.candidates, events: eventList,
            tokens: tokenList, limits: limitList, messages: messageList, suppression: suppressionRecord, queue: queue,
            unreachable: report.platform.unreachable, mask: mask
        )
        if report.findings.contains(where: { $0.code.hasPrefix("platform_") }) {
            report.escalation = Self.escalation(report)
        }
        return report
    }

    // MARK: Gathering

    private func resolve(_ context: Context, options: CallOptions) async throws -> (Rekey_Directory_V1_User?, Rekey_Directory_V1_EmailIdentity?, [String]) {
        let directory = self.flows.backends.directory
        if context.input.contains("@") {
            var find = Rekey_Directory_V1_FindUserByEmailRequest()
            find.email = context.input
            do {
                let found = try await directory.findUserByEmail(find, options: options)
                return (found.user, found.matched, [])
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                return (nil, nil, [])
            }
        }
        if context.input.hasPrefix("u_") {
            var get = Rekey_Directory_V1_GetUserRequest()
            get.userID = context.input
            do {
                return (try await directory.getUser(get, options: options).user, nil, [])
            } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
                return (nil, nil, [])
            }
        }
        var search = Rekey_Directory_V1_SearchUsersRequest()
        search.query = context.input
        search.scope = .all
        search.pageSize = 10
        let users = try await directory.searchUsers(search, options: options).users
        if users.count == 1 { return (users[0], nil, []) }
        return (nil, nil, users.map { "\($0.id)  \($0.name)  <\(context.canSeeAddresses ? ($0.emails.first(where: \.primary)?.address ?? "") : Flows.mask($0.emails.first(where: \.primary)?.address ?? ""))>" })
    }

    /// The most messages and tokens of the window a diagnosis reads (newest first).
    static let maximumItems = 2000

    private static func isDown(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return true }
        return error.code == .unavailable || error.code == .deadlineExceeded
    }

    private func events(_ user: Rekey_Directory_V1_User?, _ context: Context, _ options: CallOptions) async -> ([Rekey_Tokens_V1_TokenEvent], Bool) {
        guard let user else { return ([], false) }
        var request = Rekey_Tokens_V1_ListUserEventsRequest()
        request.userID = user.id
        request.sinceUnixMs = context.since
        request.limit = 500
        do {
            return (try await self.flows.backends.tokens.listUserEvents(request, options: options).events, false)
        } catch {
            return ([], Self.isDown(error))
        }
    }

    private func tokens(_ user: Rekey_Directory_V1_User?, _ context: Context, _ options: CallOptions) async -> ([Rekey_Tokens_V1_TokenInfo], Bool) {
        guard let user else { return ([], false) }
        var request = Rekey_Tokens_V1_ListUserTokensRequest()
        request.userID = user.id
        request.pageSize = 100
        var tokens: [Rekey_Tokens_V1_TokenInfo] = []
        do {
            // Newest first: stop at the window's start, or at the cap.
            while tokens.count < Self.maximumItems {
                let page = try await self.flows.backends.tokens.listUserTokens(request, options: options)
                tokens += page.tokens.filter { $0.issuedAtUnixMs >= context.since }
                guard !page.nextPageToken.isEmpty, page.tokens.last.map({ $0.issuedAtUnixMs >= context.since }) == true else { break }
                request.pageToken = page.nextPageToken
            }
            return (tokens, false)
        } catch {
            return (tokens, Self.isDown(error))
        }
    }

    private func limits(_ user: Rekey_Directory_V1_User?, _ options: CallOptions) async -> ([Rekey_Tokens_V1_RateLimit], Bool) {
        guard let user else { return ([], false) }
        var request = Rekey_Tokens_V1_GetRateLimitStatusRequest()
        request.userID = user.id
        request.purpose = .passwordReset
        do {
            return (try await self.flows.backends.tokens.getRateLimitStatus(request, options: options).limits, false)
        } catch {
            return ([], Self.isDown(error))
        }
    }

    private func messages(_ user: Rekey_Directory_V1_User?, _ context: Context, _ options: CallOptions) async -> ([Rekey_Notifier_V1_Message], Bool) {
        var request = Rekey_Notifier_V1_ListMessagesRequest()
        if let user {
            request.userID = user.id
        } else if context.input.contains("@") {
            request.toAddress = context.input
        } else {
            return ([], false)
        }
        request.sinceUnixMs = context.since
        request.pageSize = 100
        var messages: [Rekey_Notifier_V1_Message] = []
        do {
            while messages.count < Self.maximumItems {
                let page = try await self.flows.backends.notifier.listMessages(request, options: options)
                messages += page.messages
                guard !page.nextPageToken.isEmpty else { break }
                request.pageToken = page.nextPageToken
            }
            return (messages, false)
        } catch {
            return (messages, Self.isDown(error))
        }
    }

    private func suppression(_ address: String?, _ options: CallOptions) async -> (Rekey_Notifier_V1_Suppression?, Bool) {
        guard let address else { return (nil, false) }
        var request = Rekey_Notifier_V1_ListSuppressionsRequest()
        request.address = address
        do {
            return (try await self.flows.backends.notifier.listSuppressions(request, options: options).suppressions.first, false)
        } catch {
            return (nil, Self.isDown(error))
        }
    }

    private func stats(_ options: CallOptions) async -> (Rekey_Notifier_V1_QueueStats?, Bool) {
        do {
            return (try await self.flows.backends.notifier.getQueueStats(.init(), options: options), false)
        } catch {
            return (nil, Self.isDown(error))
        }
    }

    // MARK: The verdict

    static func findings(
        context: Context,
        user: Rekey_Directory_V1_User?,
        matched: Rekey_Directory_V1_EmailIdentity?,
        primary: Rekey_Directory_V1_EmailIdentity?,
        candidates: [String],
        events: [Rekey_Tokens_V1_TokenEvent],
        tokens: [Rekey_Tokens_V1_TokenInfo],
        limits: [Rekey_Tokens_V1_RateLimit],
        messages: [Rekey_Notifier_V1_Message],
        suppression: Rekey_Notifier_V1_Suppression?,
        queue: Rekey_Notifier_V1_QueueStats?,
        unreachable: [String],
        mask: (String) -> String
    ) -> [Report.Finding] {
        var findings: [Report.Finding] = []
        func time(_ ms: Int64) -> String { AdminAPI.time(ms) ?? "?" }
        let input = context.input

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
            let evidence = ["notifier: message \(latest.id) (\(latest.templateName)) queued \(time(latest.createdAtUnixMs)), state \(Self.state(latest.state))"]
                + latest.attempts.map { "  attempt \(time($0.startedAtUnixMs)) via \($0.server): \(Self.outcome($0.outcome)) at \($0.stage) — \($0.replyCode > 0 ? "\($0.replyCode) \($0.enhancedStatus) \($0.replyText)" : $0.error)\($0.remoteQueueID.isEmpty ? "" : " [queue id \($0.remoteQueueID)]")" }
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

        if let limit = limited.first {
            let next = limits.map(\.nextAllowedAtUnixMs).max() ?? 0
            findings.append(.init(
                code: "rate_limited",
                summary: "\(limited.count) reset request\(limited.count == 1 ? " was" : "s were") refused by the rate limit (last at \(time(limit.atUnixMs)), \(limit.detail)); no email goes out for those.",
                nextStep: next > context.now ? "The next request is allowed at \(time(next)); ask the user to wait until then." : "Requests are allowed again now; ask the user to try once more.",
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
                summary: "No password reset was requested for \(user.name) since \(time(context.since)): there is no email to look for.",
                nextStep: "Send one with `rekey reset send \(user.id)` (it goes to \(primaryAddress)), or ask the user to use \"Forgot password?\" with that address.",
                evidence: ["reset-token: no reset token issued since \(time(context.since))", "notifier: no reset email since \(time(context.since))"]
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

    /// The relay refusing or unreachable, or the queue not moving.
    static func platformFindings(_ queue: Rekey_Notifier_V1_QueueStats?, domain: String?, unreachable: [String], alreadyPlatform: Bool) -> [Report.Finding] {
        guard let queue, !alreadyPlatform else { return [] }
        let stalled = queue.depth > 0 && queue.oldestQueuedAgeMs > 5 * 60_000
        let failing = queue.recentTemporaryFailures >= 3 && queue.recentAccepted == 0
        guard stalled || failing else { return [] }
        var evidence = [
            "notifier: \(queue.depth) queued, oldest \(queue.oldestQueuedAgeMs / 60_000) min old",
            "notifier: last hour \(queue.recentAccepted) accepted, \(queue.recentTemporaryFailures) temporary failures, \(queue.recentPermanentFailures) permanent",
            "notifier: last accepted delivery \(AdminAPI.time(queue.lastAcceptedAtUnixMs) ?? "never"), via \(queue.transport) \(queue.server)",
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

    static func escalation(_ report: Report) -> String {
        var lines = ["Rekey diagnosis \(report.reportId) at \(report.generatedAt) for \(report.who?.userId ?? report.input)"]
        for finding in report.findings where finding.code.hasPrefix("platform_") {
            lines.append(finding.summary)
            lines += finding.evidence.map { "  " + $0 }
        }
        if !report.platform.unreachable.isEmpty {
            lines.append("Unreachable: " + report.platform.unreachable.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }

    // MARK: Names

    static func kind(_ kind: Rekey_Tokens_V1_TokenEvent.Kind) -> String {
        switch kind {
        case .issued: return "issued"
        case .redeemed: return "redeemed"
        case .redeemFailed: return "redeem_failed"
        case .rateLimited: return "rate_limited"
        case .revoked: return "revoked"
        default: return "unknown"
        }
    }

    static func purpose(_ purpose: Rekey_Tokens_V1_Purpose) -> String {
        switch purpose {
        case .passwordReset: return "password_reset"
        case .emailVerification: return "email_verification"
        default: return "unknown"
        }
    }

    static func state(_ state: Rekey_Tokens_V1_TokenState) -> String {
        switch state {
        case .live: return "live"
        case .used: return "used"
        case .expired: return "expired"
        case .revoked: return "revoked"
        default: return "unknown"
        }
    }

    static func state(_ state: Rekey_Notifier_V1_MessageState) -> String {
        switch state {
        case .queued: return "queued"
        case .deferred: return "deferred"
        case .accepted: return "accepted"
        case .failed: return "failed"
        case .suppressed: return "suppressed"
        default: return "unknown"
        }
    }

    static func outcome(_ outcome: Rekey_Notifier_V1_AttemptOutcome) -> String {
        switch outcome {
        case .accepted: return "accepted"
        case .temporaryFailure: return "temporary failure"
        case .permanentFailure: return "permanent failure"
        case .interrupted: return "interrupted"
        default: return "in progress"
        }
    }
}
