import RekeyRPC

/// What a token is for.
package enum TokenPurpose: Int64, Sendable, CaseIterable, CustomStringConvertible {
    case passwordReset = 1
    case emailVerification = 2

    package var description: String {
        switch self {
        case .passwordReset: return "password reset"
        case .emailVerification: return "email verification"
        }
    }
}

/// A token's stored facts: never the token or its hash.
package struct TokenRecord: Sendable, Hashable {
    package enum State: Sendable {
        case live, used, expired, revoked
    }

    package var id: String
    package var purpose: TokenPurpose
    package var userID: String
    package var emailIdentityID: String
    package var requestedByAdminID: String
    package var clientAddress: String
    package var issuedAt: Int64
    package var expiresAt: Int64
    package var usedAt: Int64?
    package var revokedAt: Int64?
    package var revokeReason: String?

    package func state(at now: Int64) -> State {
        if self.usedAt != nil { return .used }
        if self.revokedAt != nil { return .revoked }
        if self.expiresAt <= now { return .expired }
        return .live
    }
}

/// One entry of a user's token history.
package struct TokenEventRecord: Sendable, Hashable {
    package enum Kind: String, Sendable {
        case issued, redeemed, redeemFailed = "redeem_failed", rateLimited = "rate_limited", revoked, opened
    }

    package var kind: Kind
    package var at: Int64
    package var purpose: TokenPurpose?
    package var tokenID: String
    package var clientAddress: String
    package var adminID: String
    package var detail: String

    /// How a link was opened (``Kind/opened``), kept in `detail` as `method=GET cookies=yes
    /// agent=browser state=live`.
    package struct Opening: Sendable, Hashable {
        package static let agentClasses: Set<String> = ["browser", "scanner", "headless", "tool", "empty", ""]

        package var method: String
        package var hadCookies: Bool
        package var agent: String
        /// The token's state when it was opened: live, used, expired or revoked.
        package var tokenState: String = ""

        package init(method: String, hadCookies: Bool, agent: String, tokenState: String = "") {
            self.method = method
            self.hadCookies = hadCookies
            self.agent = agent
            self.tokenState = tokenState
        }

        var detail: String {
            "method=\(self.method) cookies=\(self.hadCookies ? "yes" : "no") agent=\(self.agent) state=\(self.tokenState)"
        }

        /// From `detail`; nil for the openings recorded before these fields existed.
        init?(detail: String) {
            var fields: [Substring: Substring] = [:]
            for pair in detail.split(separator: " ") {
                guard let equals = pair.firstIndex(of: "=") else { return nil }
                fields[pair[..<equals]] = pair[pair.index(after: equals)...]
            }
            guard let method = fields["method"], let cookies = fields["cookies"] else { return nil }
            self.init(method: String(method), hadCookies: cookies == "yes", agent: String(fields["agent"] ?? ""), tokenState: String(fields["state"] ?? ""))
        }
    }

    package var opening: Opening? {
        self.kind == .opened ? Opening(detail: self.detail) : nil
    }
}

/// A rate limit's state for one subject.
package struct RateLimitState: Sendable, Hashable {
    package enum Scope: String, Sendable {
        case user, clientAddress = "client_address", admin
    }

    package var scope: Scope
    package var limit: Int
    /// Tokens issued in the window, counted up to `limit` (a full limit reads as `limit`).
    package var used: Int
    package var window: Duration
    /// When the next token will be allowed; nil when one is allowed now.
    package var nextAllowedAt: Int64?
}

/// Errors of the token service, each with the status a caller sees.
package enum TokenError: Error, Hashable, RPCErrorConvertible {
    case invalidArgument(String)
    /// The token does not exist or cannot be used; the reason is in the history only.
    case notFound
    case rateLimited(RateLimitState, now: Int64)

    package var rpcError: RPCError {
        switch self {
        case .invalidArgument(let message):
            return RPCError(.invalidArgument, message)
        case .notFound:
            return RPCError(.notFound, "the token is not valid: it may have expired or been used already")
        case .rateLimited(let state, let now):
            let seconds = max(1, ((state.nextAllowedAt ?? now) - now + 999) / 1000)
            let who: String
            switch state.scope {
            case .user: who = "this user"
            case .clientAddress: who = "this client address"
            case .admin: who = "this admin"
            }
            return RPCError(
                .resourceExhausted,
                "too many tokens for \(who): \(state.used) of \(state.limit) in the last \(state.window); the next one is allowed in \(seconds) s",
                trailers: [MetadataKey.retryAfterSeconds: "\(seconds)"]
            )
        }
    }
}
