import RekeyClock
import RekeyCrypto
import RekeyRPC
import RekeySQLite

/// The token service's storage and rules. Every method is synchronous and runs inside one SQLite
/// transaction; ``TokenService`` calls it on the database's thread pool.
package struct TokenStore: Sendable {
    package let configuration: TokenServiceConfiguration
    package let clock: any WallClock

    package init(configuration: TokenServiceConfiguration, clock: any WallClock) {
        self.configuration = configuration
        self.clock = clock
    }

    package static let migrations = [
        SQLiteMigration(version: 1, name: "tokens and events", sql: """
            CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                hash BLOB NOT NULL UNIQUE,
                purpose INTEGER NOT NULL,
                user_id TEXT NOT NULL,
                email_identity_id TEXT NOT NULL DEFAULT '',
                requested_by_admin_id TEXT NOT NULL DEFAULT '',
                client_address TEXT NOT NULL DEFAULT '',
                issued_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                used_at INTEGER,
                used_from TEXT,
                revoked_at INTEGER,
                revoke_reason TEXT
            );
            CREATE INDEX tokens_by_user ON tokens (user_id, issued_at);
            CREATE INDEX tokens_by_address ON tokens (client_address, issued_at) WHERE client_address != '';
            CREATE INDEX tokens_by_admin ON tokens (requested_by_admin_id, issued_at) WHERE requested_by_admin_id != '';
            CREATE INDEX tokens_by_expiry ON tokens (expires_at);
            CREATE TABLE events (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                purpose INTEGER,
                user_id TEXT NOT NULL DEFAULT '',
                token_id TEXT NOT NULL DEFAULT '',
                client_address TEXT NOT NULL DEFAULT '',
                admin_id TEXT NOT NULL DEFAULT '',
                detail TEXT NOT NULL DEFAULT ''
            );
            CREATE INDEX events_by_user ON events (user_id, at);
            CREATE INDEX events_by_time ON events (at);
            """),
    ]

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

    private enum IssueOutcome {
        case issued(SecretToken, TokenRecord)
        case refused(RateLimitState, now: Int64)
    }

    /// Makes a token, or records a refusal and throws ``TokenError/rateLimited(_:now:)``.
    package func issue(_ request: IssueRequest, in connection: SQLiteConnection) throws -> (token: SecretToken, record: TokenRecord) {
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

        let outcome: IssueOutcome = try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            for state in try self.limits(for: request, now: now, in: connection) where state.nextAllowedAt != nil {
                try self.record(
                    .rateLimited, now: now, purpose: request.purpose, userID: request.userID, tokenID: "",
                    clientAddress: request.clientAddress, adminID: request.requestedByAdminID,
                    detail: "\(state.scope.rawValue) limit: \(state.used) of \(state.limit) per \(state.window)",
                    in: connection
                )
                return .refused(state, now: now)
            }
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
            try connection.run(
                """
                INSERT INTO tokens (id, hash, purpose, user_id, email_identity_id, requested_by_admin_id, client_address, issued_at, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                .text(record.id), .blob(token.digest), .integer(record.purpose.rawValue), .text(record.userID),
                .text(record.emailIdentityID), .text(record.requestedByAdminID), .text(record.clientAddress),
                .integer(record.issuedAt), .integer(record.expiresAt)
            )
            try self.record(
                .issued, now: now, purpose: record.purpose, userID: record.userID, tokenID: record.id,
                clientAddress: record.clientAddress, adminID: record.requestedByAdminID,
                detail: "expires in \(lifetime)", in: connection
            )
            return .issued(token, record)
        }
        switch outcome {
        case .issued(let token, let record):
            return (token, record)
        case .refused(let state, let now):
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
    private func limits(for request: IssueRequest, now: Int64, in connection: SQLiteConnection) throws -> [RateLimitState] {
        var limits = [try self.limitState(.user, subject: request.userID, purpose: request.purpose, now: now, in: connection)]
        if !request.requestedByAdminID.isEmpty {
            limits.append(try self.limitState(.admin, subject: request.requestedByAdminID, purpose: nil, now: now, in: connection))
        } else if !request.clientAddress.isEmpty {
            limits.append(try self.limitState(.clientAddress, subject: request.clientAddress, purpose: nil, now: now, in: connection))
        }
        return limits
    }

    private func limitState(
        _ scope: RateLimitState.Scope,
        subject: String,
        purpose: TokenPurpose?,
        now: Int64,
        in connection: SQLiteConnection
    ) throws -> RateLimitState {
        let limit: TokenServiceConfiguration.Limit
        switch scope {
        case .user: limit = self.configuration.perUser
        case .clientAddress: limit = self.configuration.perClientAddress
        case .admin: limit = self.configuration.perAdmin
        }
        var bindings: [SQLiteValue] = [.text(subject)]
        if scope == .user {
            bindings.append(.integer((purpose ?? .passwordReset).rawValue))
        }
        let since = now - limit.window.milliseconds
        // The newest `limit` tokens issued in the window: the check reads at most `limit` rows,
        // however long the history. When there are that many, the next one is allowed once the
        // oldest of them leaves the window.
        let times = try connection.query(
            Self.limitQuery(scope),
            bindings + [.integer(since), .integer(Int64(limit.limit))]
        ).compactMap { $0.int("issued_at") }
        var next: Int64?
        if times.count >= limit.limit, let oldest = times.last {
            next = oldest + limit.window.milliseconds
        }
        return RateLimitState(scope: scope, limit: limit.limit, used: times.count, window: limit.window, nextAllowedAt: next)
    }

    /// The query behind a limit check: the newest tokens issued in the window for the subject
    /// (then the purpose, for `.user`), the window's start and the limit bound in that order.
    /// Each reads one index (`TokenStoreTests` checks the plans); the `!= ''` lets SQLite use the
    /// partial indexes, which it cannot tell from a bound value.
    package static func limitQuery(_ scope: RateLimitState.Scope) -> String {
        let condition: String
        switch scope {
        case .user: condition = "user_id = ? AND purpose = ?"
        case .clientAddress: condition = "client_address = ? AND client_address != '' AND requested_by_admin_id = ''"
        case .admin: condition = "requested_by_admin_id = ? AND requested_by_admin_id != ''"
        }
        return "SELECT issued_at FROM tokens WHERE \(condition) AND issued_at > ? ORDER BY issued_at DESC LIMIT ?"
    }

    /// The state of each limit named: any of user (with purpose), client address, admin.
    package func rateLimitStatus(
        userID: String,
        purpose: TokenPurpose?,
        clientAddress: String,
        adminID: String,
        in connection: SQLiteConnection
    ) throws -> [RateLimitState] {
        guard !userID.isEmpty || !clientAddress.isEmpty || !adminID.isEmpty else {
            throw TokenError.invalidArgument("give at least one of user_id, client_address and admin_id")
        }
        let now = self.clock.nowMilliseconds()
        var states: [RateLimitState] = []
        if !userID.isEmpty {
            try Validation.identifier(userID, field: "user_id")
            for purpose in purpose.map({ [$0] }) ?? TokenPurpose.allCases {
                states.append(try self.limitState(.user, subject: userID, purpose: purpose, now: now, in: connection))
            }
        }
        if !clientAddress.isEmpty {
            try Validation.clientAddress(clientAddress)
            states.append(try self.limitState(.clientAddress, subject: clientAddress, purpose: nil, now: now, in: connection))
        }
        if !adminID.isEmpty {
            try Validation.identifier(adminID, field: "admin_id")
            states.append(try self.limitState(.admin, subject: adminID, purpose: nil, now: now, in: connection))
        }
        return states
    }

    // MARK: Peek, redeem, revoke

    /// A live token of `purpose`, without spending it; nil otherwise. With `opening` (who opened
    /// the link, from where, how), the opening is recorded in the user's history, whatever state
    /// the link is in (an old link opened after a newer one was sent is worth knowing), at most
    /// ``openingsRecorded`` times per link.
    package func peek(_ token: String, purpose: TokenPurpose, openedFrom clientAddress: String = "", opening: TokenEventRecord.Opening? = nil, in connection: SQLiteConnection) throws -> TokenRecord? {
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
        guard let record = try self.find(hash: hash, in: connection), record.purpose == purpose else {
            return nil
        }
        let state = record.state(at: now)
        if !clientAddress.isEmpty, try self.openings(of: record, in: connection) < Self.openingsRecorded {
            var how = opening ?? TokenEventRecord.Opening(method: "", hadCookies: false, agent: "")
            how.tokenState = "\(state)"
            try self.record(.opened, now: now, purpose: purpose, userID: record.userID, tokenID: record.id, clientAddress: clientAddress, adminID: "", detail: how.detail, in: connection)
        }
        return state == .live ? record : nil
    }

    /// Spends a live token of `purpose`. Serialised by the transaction: of concurrent redeems of
    /// one token exactly one succeeds. Every failure is recorded with its reason.
    package func redeem(_ token: String, purpose: TokenPurpose, clientAddress: String, in connection: SQLiteConnection) throws -> TokenRecord {
        let hash = try Validation.tokenHash(token)
        try Validation.clientAddress(clientAddress)
        let redeemed: TokenRecord? = try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            guard var record = try self.find(hash: hash, in: connection) else {
                try self.record(.redeemFailed, now: now, purpose: purpose, userID: "", tokenID: "", clientAddress: clientAddress, adminID: "", detail: "unknown token", in: connection)
                return nil
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
                try self.record(.redeemFailed, now: now, purpose: purpose, userID: record.userID, tokenID: record.id, clientAddress: clientAddress, adminID: "", detail: failure, in: connection)
                return nil
            }
            try connection.run(
                "UPDATE tokens SET used_at = ?, used_from = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
                .integer(now), .text(clientAddress), .text(record.id)
            )
            record.usedAt = now
            try self.record(.redeemed, now: now, purpose: purpose, userID: record.userID, tokenID: record.id, clientAddress: clientAddress, adminID: "", detail: "", in: connection)
            if purpose == .passwordReset {
                // One reset per burst of links: the user's other reset links die in the same step,
                // so two links used at once can never both change the password.
                let others = try connection.run(
                    """
                    UPDATE tokens SET revoked_at = ?, revoke_reason = 'superseded: another reset link was used'
                    WHERE user_id = ? AND purpose = ? AND id != ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
                    """,
                    .integer(now), .text(record.userID), .integer(purpose.rawValue), .text(record.id), .integer(now)
                )
                if others > 0 {
                    try self.record(
                        .revoked, now: now, purpose: purpose, userID: record.userID, tokenID: "", clientAddress: "", adminID: "",
                        detail: "\(others) other reset link(s): superseded when one was used", in: connection
                    )
                }
            }
            return record
        }
        guard let redeemed else { throw TokenError.notFound }
        return redeemed
    }

    /// Revokes the user's live tokens of `purpose` (every purpose when nil); returns how many.
    package func revoke(userID: String, purpose: TokenPurpose?, reason: String, in connection: SQLiteConnection) throws -> Int {
        try Validation.identifier(userID, field: "user_id")
        guard reason.utf8.count <= 200 else {
            throw TokenError.invalidArgument("reason is longer than 200 bytes")
        }
        return try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            var sql = "UPDATE tokens SET revoked_at = ?, revoke_reason = ? WHERE user_id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?"
            var bindings: [SQLiteValue] = [.integer(now), .text(reason), .text(userID), .integer(now)]
            if let purpose {
                sql += " AND purpose = ?"
                bindings.append(.integer(purpose.rawValue))
            }
            let count = try connection.run(sql, bindings)
            if count > 0 {
                try self.record(.revoked, now: now, purpose: purpose, userID: userID, tokenID: "", clientAddress: "", adminID: "", detail: "\(count) live token(s): \(reason)", in: connection)
            }
            return count
        }
    }

    // MARK: History

    /// A page of the user's tokens, newest first, and the cursor of the next page.
    package func listTokens(userID: String, pageSize: Int, cursor: String, in connection: SQLiteConnection) throws -> (tokens: [TokenRecord], next: String) {
        try Validation.identifier(userID, field: "user_id")
        guard (1...100).contains(pageSize) else {
            throw TokenError.invalidArgument("page_size must be from 1 to 100 (0 for 20)")
        }
        var sql = "SELECT * FROM tokens WHERE user_id = ?"
        var bindings: [SQLiteValue] = [.text(userID)]
        if !cursor.isEmpty {
            guard let position = PageCursor(cursor) else {
                throw TokenError.invalidArgument("page_token is not one this service gave out")
            }
            sql += " AND (issued_at < ? OR (issued_at = ? AND id < ?))"
            bindings += [.integer(position.issuedAt), .integer(position.issuedAt), .text(position.id)]
        }
        sql += " ORDER BY issued_at DESC, id DESC LIMIT ?"
        bindings.append(.integer(Int64(pageSize + 1)))
        var records = try connection.query(sql, bindings).map(Self.record(from:))
        var next = ""
        if records.count > pageSize {
            records.removeLast()
            next = PageCursor(issuedAt: records[records.count - 1].issuedAt, id: records[records.count - 1].id).text
        }
        return (records, next)
    }

    /// The user's history, newest first.
    package func events(userID: String, since: Int64, limit: Int, in connection: SQLiteConnection) throws -> [TokenEventRecord] {
        try Validation.identifier(userID, field: "user_id")
        guard (1...500).contains(limit) else {
            throw TokenError.invalidArgument("limit must be from 1 to 500 (0 for 100)")
        }
        return try connection.query(
            "SELECT * FROM events WHERE user_id = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
            .text(userID), .integer(since), .integer(Int64(limit))
        ).map { row in
            TokenEventRecord(
                kind: TokenEventRecord.Kind(rawValue: row.string("kind") ?? "") ?? .issued,
                at: row.int("at") ?? 0,
                purpose: row.int("purpose").flatMap(TokenPurpose.init(rawValue:)),
                tokenID: row.string("token_id") ?? "",
                clientAddress: row.string("client_address") ?? "",
                adminID: row.string("admin_id") ?? "",
                detail: row.string("detail") ?? ""
            )
        }
    }

    /// Deletes tokens that expired, and history recorded, more than the retention ago.
    package func purge(in connection: SQLiteConnection) throws -> (tokens: Int, events: Int) {
        try connection.transaction { connection in
            let cutoff = self.clock.nowMilliseconds() - self.configuration.retention.milliseconds
            let tokens = try connection.run("DELETE FROM tokens WHERE expires_at < ?", .integer(cutoff))
            let events = try connection.run("DELETE FROM events WHERE at < ?", .integer(cutoff))
            return (tokens, events)
        }
    }

    // MARK: Helpers

    private func find(hash: [UInt8], in connection: SQLiteConnection) throws -> TokenRecord? {
        try connection.queryFirst("SELECT * FROM tokens WHERE hash = ?", .blob(hash)).map(Self.record(from:))
    }

    private static func record(from row: SQLiteRow) -> TokenRecord {
        TokenRecord(
            id: row.string("id") ?? "",
            purpose: row.int("purpose").flatMap(TokenPurpose.init(rawValue:)) ?? .passwordReset,
            userID: row.string("user_id") ?? "",
            emailIdentityID: row.string("email_identity_id") ?? "",
            requestedByAdminID: row.string("requested_by_admin_id") ?? "",
            clientAddress: row.string("client_address") ?? "",
            issuedAt: row.int("issued_at") ?? 0,
            expiresAt: row.int("expires_at") ?? 0,
            usedAt: row.int("used_at"),
            revokedAt: row.int("revoked_at"),
            revokeReason: row.string("revoke_reason")
        )
    }

    /// How many openings of one link go into the history: enough to show a scanner and then the
    /// user, while reloading a page again and again adds nothing.
    package static let openingsRecorded = 5

    private func openings(of record: TokenRecord, in connection: SQLiteConnection) throws -> Int64 {
        try connection.query(
            "SELECT COUNT(*) AS n FROM events WHERE user_id = ? AND token_id = ? AND kind = ?",
            .text(record.userID), .text(record.id), .text(TokenEventRecord.Kind.opened.rawValue)
        ).first?.int("n") ?? 0
    }

    private func record(
        _ kind: TokenEventRecord.Kind,
        now: Int64,
        purpose: TokenPurpose?,
        userID: String,
        tokenID: String,
        clientAddress: String,
        adminID: String,
        detail: String,
        in connection: SQLiteConnection
    ) throws {
        try connection.run(
            "INSERT INTO events (at, kind, purpose, user_id, token_id, client_address, admin_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            .integer(now), .text(kind.rawValue), purpose.map { .integer($0.rawValue) } ?? .null, .text(userID),
            .text(tokenID), .text(clientAddress), .text(adminID), .text(detail)
        )
    }
}

/// A position in a user's token list: issue time and id of the last token on the page.
struct PageCursor {
    var issuedAt: Int64
    var id: String

    init(issuedAt: Int64, id: String) {
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
