import RekeyInput
import Logging
import RekeyClock
import RekeyCrypto
import Metrics
import RekeyRPC
import RekeyTokensAPI

/// The `rekey.tokens.v1.Tokens` RPC service: checks and converts messages; the ``TokenStore``
/// applies the rules and its repository stores (SQLite or PostgreSQL).
///
/// Metrics: `rekey_tokens_issued_total{purpose}`, `rekey_tokens_redeemed_total{purpose}`,
/// `rekey_tokens_redeem_failed_total{purpose}`, `rekey_tokens_rate_limited_total{scope}`.
package struct TokenService: Rekey_Tokens_V1_Tokens.ServiceProtocol {
    private let store: TokenStore

    package init(store: TokenStore) {
        self.store = store
    }

    package func issueToken(
        request: Rekey_Tokens_V1_IssueTokenRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_IssueTokenResponse {
        var issue = TokenStore.IssueRequest(purpose: try Self.purpose(request.purpose), userID: request.userID)
        issue.emailIdentityID = request.emailIdentityID
        issue.requestedByAdminID = request.requestedByAdminID
        issue.clientAddress = request.clientAddress
        issue.lifetime = request.lifetimeSeconds == 0 ? nil : .seconds(Int64(request.lifetimeSeconds))
        let token: SecretToken
        let record: TokenRecord
        do {
            (token, record) = try await self.store.issue(issue)
        } catch TokenError.rateLimited(let state, let now) {
            Counter(label: "rekey_tokens_rate_limited_total", dimensions: [("scope", state.scope.rawValue)]).increment()
            throw TokenError.rateLimited(state, now: now)
        }
        Counter(label: "rekey_tokens_issued_total", dimensions: [("purpose", Self.metricName(issue.purpose))]).increment()
        context.logger.debug("issued a token", metadata: ["token.id": "\(record.id)", "user.id": "\(record.userID)"])
        var response = Rekey_Tokens_V1_IssueTokenResponse()
        response.token = token.value
        response.info = self.info(record)
        return response
    }

    package func peekToken(
        request: Rekey_Tokens_V1_PeekTokenRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_PeekTokenResponse {
        let purpose = try Self.purpose(request.purpose)
        let opening = TokenEventRecord.Opening(method: request.method, hadCookies: request.hadCookies, agent: request.userAgentClass)
        guard let record = try await self.store.peek(request.token, purpose: purpose, openedFrom: request.clientAddress, opening: opening) else {
            throw TokenError.notFound
        }
        var response = Rekey_Tokens_V1_PeekTokenResponse()
        response.info = self.info(record)
        return response
    }

    package func redeemToken(
        request: Rekey_Tokens_V1_RedeemTokenRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_RedeemTokenResponse {
        let purpose = try Self.purpose(request.purpose)
        let record: TokenRecord
        do {
            record = try await self.store.redeem(request.token, purpose: purpose, clientAddress: request.clientAddress)
        } catch {
            Counter(label: "rekey_tokens_redeem_failed_total", dimensions: [("purpose", Self.metricName(purpose))]).increment()
            throw error
        }
        Counter(label: "rekey_tokens_redeemed_total", dimensions: [("purpose", Self.metricName(purpose))]).increment()
        var response = Rekey_Tokens_V1_RedeemTokenResponse()
        response.info = self.info(record)
        return response
    }

    package func revokeUserTokens(
        request: Rekey_Tokens_V1_RevokeUserTokensRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_RevokeUserTokensResponse {
        let purpose = request.purpose == .unspecified ? nil : try Self.purpose(request.purpose)
        let count = try await self.store.revoke(userID: request.userID, purpose: purpose, reason: request.reason)
        var response = Rekey_Tokens_V1_RevokeUserTokensResponse()
        response.revoked = UInt32(count)
        return response
    }

    package func listUserTokens(
        request: Rekey_Tokens_V1_ListUserTokensRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_ListUserTokensResponse {
        let pageSize = try Bounded.pageSize(request.pageSize, default: 20, max: 100)
        let (records, next) = try await self.store.listTokens(userID: request.userID, pageSize: pageSize, cursor: request.pageToken)
        var response = Rekey_Tokens_V1_ListUserTokensResponse()
        response.tokens = records.map(self.info)
        response.nextPageToken = next
        return response
    }

    package func listUserEvents(
        request: Rekey_Tokens_V1_ListUserEventsRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_ListUserEventsResponse {
        let limit = try Bounded.pageSize(request.limit, "limit", default: 100, max: 500)
        let events = try await self.store.events(userID: request.userID, since: request.sinceUnixMs, limit: limit)
        var response = Rekey_Tokens_V1_ListUserEventsResponse()
        response.events = events.map { event in
            var wire = Rekey_Tokens_V1_TokenEvent()
            switch event.kind {
            case .issued: wire.kind = .issued
            case .redeemed: wire.kind = .redeemed
            case .redeemFailed: wire.kind = .redeemFailed
            case .rateLimited: wire.kind = .rateLimited
            case .opened: wire.kind = .opened
            case .revoked: wire.kind = .revoked
            }
            wire.atUnixMs = event.at
            wire.purpose = event.purpose.map(Self.wirePurpose) ?? .unspecified
            wire.tokenID = event.tokenID
            wire.clientAddress = event.clientAddress
            wire.adminID = event.adminID
            if let opening = event.opening {
                wire.method = opening.method
                wire.hadCookies = opening.hadCookies
                wire.userAgentClass = opening.agent
                wire.tokenState = opening.tokenState
            } else {
                wire.detail = event.detail
            }
            return wire
        }
        return response
    }

    package func getRateLimitStatus(
        request: Rekey_Tokens_V1_GetRateLimitStatusRequest,
        context: ServerContext
    ) async throws -> Rekey_Tokens_V1_GetRateLimitStatusResponse {
        let purpose = request.purpose == .unspecified ? nil : try Self.purpose(request.purpose)
        let states = try await self.store.rateLimitStatus(
            userID: request.userID, purpose: purpose, clientAddress: request.clientAddress, adminID: request.adminID
        )
        var response = Rekey_Tokens_V1_GetRateLimitStatusResponse()
        response.limits = states.map { state in
            var limit = Rekey_Tokens_V1_RateLimit()
            limit.scope = state.scope.rawValue
            limit.limit = UInt32(state.limit)
            limit.used = UInt32(state.used)
            limit.windowSeconds = UInt32(state.window.milliseconds / 1000)
            limit.nextAllowedAtUnixMs = state.nextAllowedAt ?? 0
            return limit
        }
        return response
    }

    // MARK: Conversions

    private static func metricName(_ purpose: TokenPurpose) -> String {
        switch purpose {
        case .passwordReset: return "password_reset"
        case .emailVerification: return "email_verification"
        }
    }

    private static func purpose(_ purpose: Rekey_Tokens_V1_Purpose) throws -> TokenPurpose {
        switch purpose {
        case .passwordReset: return .passwordReset
        case .emailVerification: return .emailVerification
        case .unspecified, .unrecognized:
            throw TokenError.invalidArgument("purpose must be PURPOSE_PASSWORD_RESET or PURPOSE_EMAIL_VERIFICATION")
        }
    }

    private static func wirePurpose(_ purpose: TokenPurpose) -> Rekey_Tokens_V1_Purpose {
        switch purpose {
        case .passwordReset: return .passwordReset
        case .emailVerification: return .emailVerification
        }
    }

    private func info(_ record: TokenRecord) -> Rekey_Tokens_V1_TokenInfo {
        var info = Rekey_Tokens_V1_TokenInfo()
        info.tokenID = record.id
        info.purpose = Self.wirePurpose(record.purpose)
        info.userID = record.userID
        info.emailIdentityID = record.emailIdentityID
        info.requestedByAdminID = record.requestedByAdminID
        info.clientAddress = record.clientAddress
        info.issuedAtUnixMs = record.issuedAt
        info.expiresAtUnixMs = record.expiresAt
        info.usedAtUnixMs = record.usedAt ?? 0
        info.revokedAtUnixMs = record.revokedAt ?? 0
        info.revokeReason = record.revokeReason ?? ""
        switch record.state(at: self.store.clock.nowMilliseconds()) {
        case .live: info.state = .live
        case .used: info.state = .used
        case .expired: info.state = .expired
        case .revoked: info.state = .revoked
        }
        return info
    }
}
