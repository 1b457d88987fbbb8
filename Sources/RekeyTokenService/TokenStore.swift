import RekeyClock
import RekeyCrypto
import RekeyRPC

/// The token service's rules: what is valid, the limits and their arithmetic, lifetimes, what
/// counts as a failed redeem and how the history words it. Storage is the ``TokenRepository``'s
/// (SQLite or PostgreSQL); every rule here runs the same on both.
package struct TokenStore: Sendable {
    package let configuration: TokenServiceConfiguration
    package let clock: any WallClock
    package let repository: any TokenRepository

    package init(configuration: TokenServiceConfiguration, clock: any WallClock, repository: any TokenRepository) {
        self.configuration = configuration
        self.clock = clock
        self.repository = repository
    }

    // MARK: Issue

    package struct IssueRequest: Sendable {
        package var purpose: TokenPurpose
        package var userID: String
        package var emailIdentityID: String = ""
        package var requestedByAdminID: String = ""
        package var clientAddress: String = ""
        /// nil for the purpose's default.
        package var lifetime: Duration? = nil

        package init(purpose: TokenPurpose, userID: String) {
            self.purpose = purpose
            self.userID = userID
        }
    }

    /// Makes a token, or records a refusal and throws ``TokenError/rateLimited(_:now:)``.
    package func issue(_ request: IssueRequest) async throws -> (token: SecretToken, record: TokenRecord) {
        try Validation.identifier(request.userID, field: "user_id")
        switch request.purpose {
        case .emailVerification:
            try Validation.identifier(request.emailIdentityID, field: "email_identity_id")
        case .passwordReset:
            guard request.emailIdentityID.isEmpty else {
                throw TokenError.invalidArgument("email_identity_id is only for email verification tokens")
            }
        }
        if !request.requestedByAdminID.isEmpty {
            try Validation.identifier(request.requestedByAdminID, field: "requested_by_admin_id")
        }
        try Validation.clientAddress(request.clientAddress)
        let lifetime = request.lifetime ?? self.defaultLifetime(request.purpose)
        guard lifetime > .zero, lifetime <= self.configuration.maxLifetime else {
            throw TokenError.invalidArgument("lifetime_seconds must be from 1 to \(self.configuration.maxLifetime.milliseconds / 1000) (0 for the default)")
        }

        let now = self.clock.nowMilliseconds()
        let token = try SecretToken.generate()
        let record = TokenRecord(
            id: try Hex.randomID(prefix: ""),
            purpose: request.purpose,
            userID: request.userID,
            emailIdentityID: request.emailIdentityID,
            requestedByAdminID: request.requestedByAdminID,
            clientAddress: request.clientAddress,
            issuedAt: now,
            expiresAt: now + lifetime.milliseconds
        )
        let limits = self.limits(for: request, now: now)
        let decision = try await self.repository.issue(NewToken(record: record, digest: token.digest), limits: limits) { recent in
            for (index, times) in recent.enumerated() {
                let state = self.limitState(limits[index], times: times)
                guard state.nextAllowedAt == nil else {
                    let event = NewTokenEvent(
                        kind: .rateLimited, at: now, purpose: request.purpose, userID: request.userID,
                        clientAddress: request.clientAddress, adminID: request.requestedByAdminID,
                        detail: "\(state.scope.rawValue) limit: \(state.used) of \(state.limit) per \(state.window)"
                    )
                    return .refuse(index: index, state: state, event: event)
                }
            }
            return .issue(event: NewTokenEvent(
                kind: .issued, at: now, purpose: record.purpose, userID: record.userID, tokenID: record.id,
                clientAddress: record.clientAddress, adminID: record.requestedByAdminID, detail: "expires in \(lifetime)"
            ))
        }
        switch decision {
        case .issue:
            return (token, record)
        case .refuse(_, let state, _):
            throw TokenError.rateLimited(state, now: now)
        }
    }

    private func defaultLifetime(_ purpose: TokenPurpose) -> Duration {
        switch purpose {
        case .passwordReset: return self.configuration.resetLifetime
        case .emailVerification: return self.configuration.verificationLifetime
        }
    }

    /// The limits that apply to an issue request: per user and purpose always; per admin for
    /// admin sends, per client address for the user's own requests.
    private func limits(for request: IssueRequest, now: Int64) -> [LimitQuery] {
        var limits = [self.limitQuery(.user, subject: request.userID, purpose: request.purpose, now: now)]
        if !request.requestedByAdminID.isEmpty {
            limits.append(self.limitQuery(.admin, subject: request.requestedByAdminID, purpose: nil, now: now))
        } else if !request.clientAddress.isEmpty {
            limits.append(self.limitQuery(.clientAddress, subject: request.clientAddress, purpose: nil, now: now))
        }
        return limits
    }

    private func limit(_ scope: RateLimitState.Scope) -> TokenServiceConfiguration.Limit {
        switch scope {
        case .user: self.configuration.perUser
        case .clientAddress: self.configuration.perClientAddress
        case .admin: self.configuration.perAdmin
        }
    }

    /// The newest `limit` tokens issued in the window: the check reads at most `limit` rows,
    /// however long the history.
    private func limitQuery(_ scope: RateLimitState.Scope, subject: String, purpose: TokenPurpose?, now: Int64) -> LimitQuery {
        let limit = self.limit(scope)
        return LimitQuery(scope: scope, subject: subject, purpose: scope == .user ? (purpose ?? .passwordReset) : nil, since: now - limit.window.milliseconds, limit: limit.limit)
    }

    /// When there are `limit` issues in the window, the next one is allowed once the oldest of
    /// them leaves the window.
    private func limitState(_ query: LimitQuery, times: [Int64]) -> RateLimitState {
        let limit = self.limit(query.scope)
        var next: Int64?
        if times.count >= limit.limit, let oldest = times.last {
            next = oldest + limit.window.milliseconds
        }
        return RateLimitState(scope: query.scope, limit: limit.limit, used: times.count, window: limit.window, nextAllowedAt: next)
    }

    /// The state of each limit named: any of user (with purpose), client address, admin.
    package func rateLimitStatus(userID: String, purpose: TokenPurpose?, clientAddress: String, adminID: String) async throws -> [RateLimitState] {
        guard !userID.isEmpty || !clientAddress.isEmpty || !adminID.isEmpty else {
            throw TokenError.invalidArgument("give at least one of user_id, client_address and admin_id")
        }
        let now = self.clock.nowMilliseconds()
        var queries: [LimitQuery] = []
        if !userID.isEmpty {
            try Validation.identifier(userID, field: "user_id")
            for purpose in purpose.map({ [$0] }) ?? TokenPurpose.allCases {
                queries.append(self.limitQuery(.user, subject: userID, purpose: purpose, now: now))
            }
        }
        if !clientAddress.isEmpty {
            try Validation.clientAddress(clientAddress)
            queries.append(self.limitQuery(.clientAddress, subject: clientAddress, purpose: nil, now: now))
        }
        if !adminID.isEmpty {
            try Validation.identifier(adminID, field: "admin_id")
            queries.append(self.limitQuery(.admin, subject: adminID, purpose: nil, now: now))
        }
        var states: [RateLimitState] = []
        for query in queries {
            states.append(self.limitState(query, times: try await self.repository.recentIssues(query)))
        }
        return states
    }

    // MARK: Peek, redeem, revoke

    /// A live token of `purpose`, without spending it; nil otherwise. With `opening` (who opened
    /// the link, from where, how), the opening is recorded in the user's history, whatever state
    /// the link is in (an old link opened after a newer one was sent is worth knowing), at most
    /// ``openingsRecorded`` times per link.
    package func peek(_ token: String, purpose: TokenPurpose, openedFrom clientAddress: String = "", opening: TokenEventRecord.Opening? = nil) async throws -> TokenRecord? {
        let hash = try Validation.tokenHash(token)
        if !clientAddress.isEmpty {
            try Validation.clientAddress(clientAddress)
        }
        if let opening {
            guard ["GET", "HEAD", ""].contains(opening.method) else {
                throw TokenError.invalidArgument("method must be GET or HEAD")
            }
            guard TokenEventRecord.Opening.agentClasses.contains(opening.agent) else {
                throw TokenError.invalidArgument("user_agent_class must be browser, scanner, headless, tool or empty")
            }
        }
        let now = self.clock.nowMilliseconds()
        guard let record = try await self.repository.find(digest: hash), record.purpose == purpose else {
            return nil
        }
        let state = record.state(at: now)
        if !clientAddress.isEmpty, try await self.repository.openings(userID: record.userID, tokenID: record.id) < Self.openingsRecorded {
            var how = opening ?? TokenEventRecord.Opening(method: "", hadCookies: false, agent: "")
            how.tokenState = "\(state)"
            try await self.repository.record(NewTokenEvent(
                kind: .opened, at: now, purpose: purpose, userID: record.userID, tokenID: record.id, clientAddress: clientAddress, detail: how.detail
            ))
        }
        return state == .live ? record : nil
    }

    /// Spends a live token of `purpose`. Of concurrent redeems of one token exactly one succeeds,
    /// on either backend and across replicas. Every failure is recorded with its reason.
    package func redeem(_ token: String, purpose: TokenPurpose, clientAddress: String) async throws -> TokenRecord {
        let hash = try Validation.tokenHash(token)
        try Validation.clientAddress(clientAddress)
        let now = self.clock.nowMilliseconds()
        let redeemed = try await self.repository.redeem(digest: hash, usedFrom: clientAddress, now: now) { found in
            guard let record = found else {
                return .refuse(event: NewTokenEvent(kind: .redeemFailed, at: now, purpose: purpose, userID: "", clientAddress: clientAddress, detail: "unknown token"))
            }
            let failure: String?
            switch record.state(at: now) {
            case _ where record.purpose != purpose:
                failure = "the token is for \(record.purpose), not \(purpose)"
            case .used:
                failure = "already used"
            case .revoked:
                failure = "revoked (\(record.revokeReason ?? "no reason given"))"
            case .expired:
                failure = "expired"
            case .live:
                failure = nil
            }
            if let failure {
                return .refuse(event: NewTokenEvent(
                    kind: .redeemFailed, at: now, purpose: purpose, userID: record.userID, tokenID: record.id, clientAddress: clientAddress, detail: failure
                ))
            }
            let spent = NewTokenEvent(kind: .redeemed, at: now, purpose: purpose, userID: record.userID, tokenID: record.id, clientAddress: clientAddress)
            guard purpose == .passwordReset else { return .spend(event: spent, supersede: nil) }
            // One reset per burst of links: the user's other reset links die in the same step, so
            // two links used at once can never both change the password.
            return .spend(event: spent, supersede: .init(reason: "superseded: another reset link was used") { others in
                NewTokenEvent(
                    kind: .revoked, at: now, purpose: purpose, userID: record.userID,
                    detail: "\(others) other reset link(s): superseded when one was used"
                )
            })
        }
        guard let redeemed else { throw TokenError.notFound }
        return redeemed
    }

    /// Revokes the user's live tokens of `purpose` (every purpose when nil); returns how many.
    package func revoke(userID: String, purpose: TokenPurpose?, reason: String) async throws -> Int {
        try Validation.identifier(userID, field: "user_id")
        guard reason.utf8.count <= 200 else {
            throw TokenError.invalidArgument("reason is longer than 200 bytes")
        }
        let now = self.clock.nowMilliseconds()
        return try await self.repository.revoke(userID: userID, purpose: purpose, reason: reason, now: now) { count in
            NewTokenEvent(kind: .revoked, at: now, purpose: purpose, userID: userID, detail: "\(count) live token(s): \(reason)")
        }
    }

    // MARK: History

    /// A page of the user's tokens, newest first, and the cursor of the next page.
    package func listTokens(userID: String, pageSize: Int, cursor: String) async throws -> (tokens: [TokenRecord], next: String) {
        try Validation.identifier(userID, field: "user_id")
        guard (1...100).contains(pageSize) else {
            throw TokenError.invalidArgument("page_size must be from 1 to 100 (0 for 20)")
        }
        var position: PageCursor?
        if !cursor.isEmpty {
            guard let decoded = PageCursor(cursor) else {
                throw TokenError.invalidArgument("page_token is not one this service gave out")
            }
            position = decoded
        }
        var records = try await self.repository.tokens(userID: userID, after: position, limit: pageSize + 1)
        var next = ""
        if records.count > pageSize {
            records.removeLast()
            next = PageCursor(issuedAt: records[records.count - 1].issuedAt, id: records[records.count - 1].id).text
        }
        return (records, next)
    }

    /// The user's history, newest first.
    package func events(userID: String, since: Int64, limit: Int) async throws -> [TokenEventRecord] {
        try Validation.identifier(userID, field: "user_id")
        guard (1...500).contains(limit) else {
            throw TokenError.invalidArgument("limit must be from 1 to 500 (0 for 100)")
        }
        return try await self.repository.events(userID: userID, since: since, limit: limit)
    }

    /// Deletes tokens that expired, and history recorded, more than the retention ago.
    package func purge() async throws -> (tokens: Int, events: Int) {
        try await self.repository.purge(before: self.clock.nowMilliseconds() - self.configuration.retention.milliseconds)
    }

    /// How many openings of one link go into the history: enough to show a scanner and then the
    /// user, while reloading a page again and again adds nothing.
    package static let openingsRecorded = 5
}

/// A position in a user's token list: issue time and id of the last token on the page.
package struct PageCursor: Sendable {
    package var issuedAt: Int64
    package var id: String

    package init(issuedAt: Int64, id: String) {
        self.issuedAt = issuedAt
        self.id = id
    }

    /// Decodes a cursor; nil for anything this service did not make.
    init?(_ text: String) {
        guard let parts = PageToken.fields(text, kind: "t1", count: 2), let issuedAt = Int64(parts[0]),
              parts[1].utf8.count == 32, parts[1].utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { return nil }
        self.issuedAt = issuedAt
        self.id = String(parts[1])
    }

    var text: String {
        PageToken.encode("t1", ["\(self.issuedAt)", self.id])
    }
}

/// Input checks shared by the store's operations.
enum Validation {
    /// Ids of users, identities and admins, as the directory makes them: 1-128 printable ASCII.
    static func identifier(_ value: String, field: String) throws {
        guard !value.isEmpty else {
            throw TokenError.invalidArgument("\(field) is required")
        }
        guard value.utf8.count <= 128, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw TokenError.invalidArgument("\(field) must be 1-128 printable ASCII characters without spaces")
        }
    }

    /// Empty, or an IPv4 or IPv6 address in text form.
    static func clientAddress(_ value: String) throws {
        guard !value.isEmpty else { return }
        let allowed = value.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x61...0x66).contains(byte) || (0x41...0x46).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
        }
        guard value.utf8.count <= 45, allowed else {
            throw TokenError.invalidArgument("client_address must be an IPv4 or IPv6 address")
        }
    }

    /// The stored hash of a well-formed token.
    static func tokenHash(_ token: String) throws -> [UInt8] {
        guard !token.isEmpty else {
            throw TokenError.invalidArgument("token is required")
        }
        guard token.utf8.count == 43, let bytes = Base64URL.decode(token), bytes.count == 32 else {
            throw TokenError.invalidArgument("the token is malformed: expected 43 characters of URL-safe base64")
        }
        return SecretToken.digest(of: token)
    }
}
