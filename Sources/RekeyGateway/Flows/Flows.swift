import Foundation
import Logging
import Metrics
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyTokensAPI

/// The flows that tie the services together (see DESIGN.md), apart from HTTP: what the pages and
/// the admin API run.
package struct Flows: Sendable {
    package let backends: Backends
    /// Links in mail are built from this, never from the request's Host header.
    package let publicURL: String
    package let logger: Logger

    package init(backends: Backends, publicURL: String, logger: Logger) {
        self.backends = backends
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        self.logger = logger
    }

    // MARK: Sign-in

    /// Checks an address and password with the directory (which applies the sign-in limits);
    /// UNAUTHENTICATED when they do not match an active user.
    package func signIn(email: String, password: String, clientAddress: String, requestID: String) async throws -> Rekey_Directory_V1_User {
        var verify = Rekey_Directory_V1_VerifyPasswordRequest()
        verify.email = email
        verify.password = password
        verify.clientAddress = clientAddress
        guard let user = try await self.backends.directory.verifyPassword(verify, options: Backends.options(requestID)).user else {
            throw RPCError(.unauthenticated, "the email address or the password is not right")
        }
        return user
    }

    /// A new sign-on session for `userID`; its token goes in the session cookie.
    package func startSession(userID: String, requestID: String) async throws -> String {
        var create = Rekey_Directory_V1_CreateSessionRequest()
        create.userID = userID
        return try await self.backends.directory.createSession(create, options: Backends.options(requestID)).token
    }

    /// Ends every session of `userID` (signing out signs out everywhere).
    package func endSessions(userID: String, clientAddress: String, requestID: String) async throws {
        var revoke = Rekey_Directory_V1_RevokeSessionsRequest()
        revoke.userID = userID
        revoke.actor = Self.directoryActor(userID, clientAddress)
        _ = try await self.backends.directory.revokeSessions(revoke, options: Backends.options(requestID))
    }

    // MARK: Forgot password

    /// `rekey_gateway_forgot_password_total{outcome}`: sent, no_account, disabled, rate_limited.
    /// For operators only; the page itself never tells these apart.
    private static func countForgot(_ outcome: String) {
        Counter(label: "rekey_gateway_forgot_password_total", dimensions: [("outcome", outcome)]).increment()
    }

    /// Runs the reset flow for `email` when an active account has it: find the user (any of their
    /// addresses) → issue a token → queue the email to the primary address. Says nothing about
    /// the outcome to the caller, on purpose; refusals (unknown, disabled, rate-limited) are only
    /// logged. Throws only when a service is unavailable.
    package func forgotPassword(email: String, clientAddress: String, requestID: String) async throws {
        let options = Backends.options(requestID)
        var find = Rekey_Directory_V1_FindUserByEmailRequest()
        find.email = email
        let found: Rekey_Directory_V1_FindUserByEmailResponse
        do {
            found = try await self.backends.directory.findUserByEmail(find, options: options)
        } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
            self.logger.info("reset requested for an address no user has", metadata: ["request.id": "\(requestID)"])
            Self.countForgot("no_account")
            return
        }
        guard let user = found.user, user.state == .active else {
            self.logger.info("reset requested for a disabled user", metadata: ["request.id": "\(requestID)", "user.id": "\(found.user?.id ?? "")"])
            Self.countForgot("disabled")
            return
        }
        do {
            _ = try await self.sendReset(user: user, primary: found.primary, admin: "", clientAddress: clientAddress, requestID: requestID)
            Self.countForgot("sent")
        } catch let error as RPCError where error.code == .resourceExhausted {
            self.logger.notice("reset request refused by the rate limit", metadata: ["request.id": "\(requestID)", "user.id": "\(user.id)"])
            Self.countForgot("rate_limited")
        }
    }

    /// Issues a reset token and queues the email to the primary address; the message id and the
    /// address it went to.
    package func sendReset(
        user: Rekey_Directory_V1_User, primary: Rekey_Directory_V1_EmailIdentity?, admin: String, clientAddress: String, requestID: String
    ) async throws -> (messageID: String, address: String, status: Rekey_Notifier_V1_EnqueueStatus) {
        guard let primary = primary ?? user.emails.first(where: \.primary) else {
            throw RPCError(.failedPrecondition, "the user has no primary email address")
        }
        return try await self.issueAndQueue(
            .passwordReset, user: user, to: primary, template: "password_reset", path: "/password/reset", admin: admin,
            clientAddress: clientAddress, requestID: requestID
        )
    }

    /// Issues a verification token for one of the user's addresses and queues the email to it.
    package func sendVerification(
        user: Rekey_Directory_V1_User, email: Rekey_Directory_V1_EmailIdentity, admin: String, clientAddress: String, requestID: String
    ) async throws -> (messageID: String, address: String, status: Rekey_Notifier_V1_EnqueueStatus) {
        try await self.issueAndQueue(
            .emailVerification, user: user, to: email, template: "email_verification", path: "/email/verify", admin: admin,
            clientAddress: clientAddress, requestID: requestID
        )
    }

    /// The common part of both: a token, then the email with its link, idempotent per token.
    private func issueAndQueue(
        _ purpose: Rekey_Tokens_V1_Purpose, user: Rekey_Directory_V1_User, to email: Rekey_Directory_V1_EmailIdentity, template: String,
        path: String, admin: String, clientAddress: String, requestID: String
    ) async throws -> (messageID: String, address: String, status: Rekey_Notifier_V1_EnqueueStatus) {
        let options = Backends.options(requestID)
        var issue = Rekey_Tokens_V1_IssueTokenRequest()
        issue.purpose = purpose
        issue.userID = user.id
        if purpose == .emailVerification {
            issue.emailIdentityID = email.id
        }
        issue.requestedByAdminID = admin
        issue.clientAddress = clientAddress
        let issued = try await self.backends.tokens.issueToken(issue, options: options)
        let info = issued.info ?? Rekey_Tokens_V1_TokenInfo()
        var enqueue = Rekey_Notifier_V1_EnqueueRequest()
        enqueue.templateName = template
        enqueue.toAddress = email.address
        enqueue.toName = user.name
        enqueue.locale = user.locale
        enqueue.variables = [
            Self.variable("link", "\(self.publicURL)\(path)?token=\(issued.token)"),
            Self.variable("expires_in", Self.describe(milliseconds: info.expiresAtUnixMs - info.issuedAtUnixMs)),
        ]
        enqueue.userID = user.id
        enqueue.tokenID = info.tokenID
        enqueue.idempotencyKey = "\(template)-\(info.tokenID)"
        enqueue.requestedBy = Self.notifierActor(admin, clientAddress)
        let queued = try await self.backends.notifier.enqueue(enqueue, options: options)
        self.logger.info(
            "email queued",
            metadata: [
                "request.id": "\(requestID)", "user.id": "\(user.id)", "message.template": "\(template)",
                "message.id": "\(queued.messageID)", "message.status": "\(queued.status)",
            ]
        )
        return (queued.messageID, email.address, queued.status)
    }

    // MARK: Reset and verify

    /// How a reset or verification link was opened, for the user's history (never the token).
    package struct LinkOpening: Sendable {
        /// GET or HEAD.
        package var method: String
        /// Whether the request carried this site's cookies.
        package var hadCookies: Bool
        /// browser, scanner, headless, tool or empty (``LinkOpening/agentClass(_:)``).
        package var agent: String

        package init(method: String, hadCookies: Bool, userAgent: String?) {
            self.method = method
            self.hadCookies = hadCookies
            self.agent = Self.agentClass(userAgent)
        }

        /// The User-Agent's class. Link scanners name themselves more often than not (or their
        /// vendor); the rest of automation shows as a headless browser or a library. Anything
        /// else starting `Mozilla/` is taken for a browser.
        package static func agentClass(_ userAgent: String?) -> String {
            let lower = (userAgent ?? "").trimmingCharacters(in: .whitespaces).lowercased()
            guard !lower.isEmpty else { return "empty" }
            let scanners = [
                "safelinks", "safe links", "microsoft office", "ms-office", "mimecast", "proofpoint", "urldefense", "barracuda", "bingpreview",
                "symantec", "messagelabs", "trend micro", "trendmicro", "forcepoint", "fireeye", "sophos", "ironport", "zscaler", "checkpoint",
                "google-safety", "googleimageproxy", "yahoomailproxy", "linkscanner", "virustotal", "skypeuripreview", "slackbot",
                "facebookexternalhit", "twitterbot", "discordbot", "telegrambot", "whatsapp",
            ]
            if scanners.contains(where: lower.contains) { return "scanner" }
            if ["headlesschrome", "phantomjs", "puppeteer", "playwright", "selenium"].contains(where: lower.contains) { return "headless" }
            if lower.hasPrefix("mozilla/") { return "browser" }
            return "tool"
        }
    }

    /// The token's info when it is live; nil when it is unknown, used, expired or revoked.
    /// `clientAddress` and `opening` (who opened the link, and how) go into the user's history.
    package func peek(
        _ token: String, purpose: Rekey_Tokens_V1_Purpose, clientAddress: String = "", opening: LinkOpening? = nil, requestID: String
    ) async throws -> Rekey_Tokens_V1_TokenInfo? {
        guard !token.isEmpty, token.utf8.count <= 100 else { return nil }
        var request = Rekey_Tokens_V1_PeekTokenRequest()
        request.token = token
        request.purpose = purpose
        request.clientAddress = clientAddress
        if let opening {
            request.method = opening.method
            request.hadCookies = opening.hadCookies
            request.userAgentClass = opening.agent
        }
        do {
            return try await self.backends.tokens.peekToken(request, options: Backends.options(requestID)).info
        } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
            return nil
        }
    }

    package enum ResetOutcome: Sendable {
        case changed
        /// The token cannot be used (any more).
        case invalidToken
        /// The password was refused; the token is not spent.
        case refused([String])
    }

    /// Sets a new password with a reset token: checks the policy first (so a refused password
    /// does not spend the token), redeems, sets, revokes the user's other reset tokens and
    /// sessions, and queues the `password_changed` notice.
    package func resetPassword(token: String, password: String, clientAddress: String, requestID: String) async throws -> ResetOutcome {
        let options = Backends.options(requestID)
        guard let info = try await self.peek(token, purpose: .passwordReset, requestID: requestID) else { return .invalidToken }
        var check = Rekey_Directory_V1_CheckPasswordPolicyRequest()
        check.userID = info.userID
        check.password = password
        let problems = try await self.backends.directory.checkPasswordPolicy(check, options: options).problems
        guard problems.isEmpty else { return .refused(problems) }

        var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
        redeem.token = token
        redeem.purpose = .passwordReset
        redeem.clientAddress = clientAddress
        do {
            _ = try await self.backends.tokens.redeemToken(redeem, options: options)
        } catch let error as RPCError where error.code == .notFound {
            return .invalidToken
        }
        var set = Rekey_Directory_V1_SetPasswordRequest()
        set.userID = info.userID
        set.password = password
        set.actor = Self.directoryActor(info.userID, clientAddress)
        do {
            _ = try await self.backends.directory.setPassword(set, options: options)
        } catch let error as RPCError where error.code == .invalidArgument {
            // The policy changed between the check and now; the token is spent, say so plainly.
            return .refused([error.message])
        }
        var revoke = Rekey_Tokens_V1_RevokeUserTokensRequest()
        revoke.userID = info.userID
        revoke.reason = "the password was changed"
        _ = try? await self.backends.tokens.revokeUserTokens(revoke, options: options)
        var sessions = Rekey_Directory_V1_RevokeSessionsRequest()
        sessions.userID = info.userID
        sessions.actor = Self.directoryActor(info.userID, clientAddress)
        _ = try? await self.backends.directory.revokeSessions(sessions, options: options)

        var get = Rekey_Directory_V1_GetUserRequest()
        get.userID = info.userID
        if let user = try? await self.backends.directory.getUser(get, options: options).user, let primary = user.emails.first(where: \.primary) {
            var notice = Rekey_Notifier_V1_EnqueueRequest()
            notice.templateName = "password_changed"
            notice.toAddress = primary.address
            notice.toName = user.name
            notice.locale = user.locale
            notice.variables = [Self.variable("reset_link", "\(self.publicURL)/password/forgot")]
            notice.userID = user.id
            notice.idempotencyKey = "changed-" + info.tokenID
            notice.requestedBy = Self.notifierActor(info.userID, clientAddress)
            do {
                _ = try await self.backends.notifier.enqueue(notice, options: options)
            } catch {
                self.logger.error("could not queue the password-changed notice", metadata: ["request.id": "\(requestID)", "error": "\(error)"])
            }
        }
        self.logger.info("password reset", metadata: ["request.id": "\(requestID)", "user.id": "\(info.userID)"])
        return .changed
    }

    /// Spends a verification token and marks its address verified; false when the token cannot be used.
    package func verifyEmail(token: String, clientAddress: String, requestID: String) async throws -> Bool {
        let options = Backends.options(requestID)
        var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
        redeem.token = token
        redeem.purpose = .emailVerification
        redeem.clientAddress = clientAddress
        let info: Rekey_Tokens_V1_TokenInfo
        do {
            guard let redeemed = try await self.backends.tokens.redeemToken(redeem, options: options).info else { return false }
            info = redeemed
        } catch let error as RPCError where error.code == .notFound || error.code == .invalidArgument {
            return false
        }
        var mark = Rekey_Directory_V1_EmailChangeRequest()
        mark.userID = info.userID
        mark.emailID = info.emailIdentityID
        mark.actor = Self.directoryActor(info.userID, clientAddress)
        _ = try await self.backends.directory.markEmailVerified(mark, options: options)
        return true
    }

    // MARK: Helpers

    /// Tells the previous primary address that mail now goes elsewhere: the new address masked,
    /// who changed it and when. Queued idempotently per change.
    package func notifyPrimaryChanged(
        user: Rekey_Directory_V1_User, previous: Rekey_Directory_V1_EmailIdentity, new: Rekey_Directory_V1_EmailIdentity,
        changedBy: Rekey_Directory_V1_User, clientAddress: String, requestID: String
    ) async throws {
        let now = Date()
        var enqueue = Rekey_Notifier_V1_EnqueueRequest()
        enqueue.templateName = "primary_email_changed"
        enqueue.toAddress = previous.address
        enqueue.toName = user.name
        enqueue.locale = user.locale
        enqueue.variables = [
            Self.variable("new_address", Self.mask(new.address)),
            Self.variable("changed_by", changedBy.id == user.id ? user.name : "\(changedBy.name) (\(changedBy.role))"),
            // 2026-12-01 07:12 UTC
            Self.variable("changed_at", String(now.ISO8601Format().prefix(16)).replacingOccurrences(of: "T", with: " ") + " UTC"),
        ]
        enqueue.userID = user.id
        enqueue.idempotencyKey = "primary_email_changed-\(user.id)-\(new.id)-\(Int64(now.timeIntervalSince1970 * 1000))"
        enqueue.requestedBy = Self.notifierActor(changedBy.id, clientAddress)
        _ = try await self.backends.notifier.enqueue(enqueue, options: Backends.options(requestID))
    }

    static func variable(_ key: String, _ value: String) -> Rekey_Notifier_V1_Variable {
        var variable = Rekey_Notifier_V1_Variable()
        variable.key = key
        variable.value = value
        return variable
    }

    static func notifierActor(_ userID: String, _ clientAddress: String) -> Rekey_Notifier_V1_Actor {
        var actor = Rekey_Notifier_V1_Actor()
        actor.userID = userID
        actor.clientAddress = clientAddress
        return actor
    }

    static func directoryActor(_ userID: String, _ clientAddress: String) -> Rekey_Directory_V1_Actor {
        var actor = Rekey_Directory_V1_Actor()
        actor.userID = userID
        actor.clientAddress = clientAddress
        return actor
    }

    /// "30 minutes", "24 hours", "3 days".
    static func describe(milliseconds: Int64) -> String {
        let minutes = max(1, milliseconds / 60_000)
        if minutes % (24 * 60) == 0 { return "\(minutes / (24 * 60)) day" + (minutes == 24 * 60 ? "" : "s") }
        if minutes % 60 == 0 { return "\(minutes / 60) hour" + (minutes == 60 ? "" : "s") }
        return "\(minutes) minute" + (minutes == 1 ? "" : "s")
    }

    /// `j***@example.com`: enough for a person to recognise, not to harvest.
    package static func mask(_ address: String) -> String {
        guard let at = address.lastIndex(of: "@"), at > address.startIndex else { return "***" }
        return String(address[address.startIndex]) + "***" + address[at...]
    }
}
