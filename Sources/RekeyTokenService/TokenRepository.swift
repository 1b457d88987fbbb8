import RekeySQLite

/// Where the token service keeps tokens and their history: SQLite (the default, one process) or
/// PostgreSQL (any number of replicas).
///
/// Operations are at the level of the domain; the rules (limits, lifetimes, what counts as a failed
/// redeem, the wording of the history) stay in ``TokenStore`` and reach the repository as plain
/// values and small closures that run inside the repository's transaction. Each backend makes its
/// transactions safe across everyone who can write: SQLite's single writer, PostgreSQL's row and
/// advisory locks.
package protocol TokenRepository: Sendable {
    /// Atomically with every other issue for the same subjects: reads the newest issue times for
    /// each of `limits`, then stores what `decide` says (the token and its event, or only the
    /// refusal's event).
    func issue(_ token: NewToken, limits: [LimitQuery], decide: @escaping @Sendable ([[Int64]]) -> IssueDecision) async throws -> IssueDecision

    /// The newest issue times (milliseconds) of one limit, newest first, at most `query.limit`.
    func recentIssues(_ query: LimitQuery) async throws -> [Int64]

    func find(digest: [UInt8]) async throws -> TokenRecord?

    /// How many `opened` events the history has for the token.
    func openings(userID: String, tokenID: String) async throws -> Int

    func record(_ event: NewTokenEvent) async throws

    /// Atomically with every other redeem of the user's tokens: finds the token, asks `decide`
    /// (which sees nil for an unknown token), and stores the outcome. Returns the spent record.
    func redeem(digest: [UInt8], usedFrom clientAddress: String, now: Int64, decide: @escaping @Sendable (TokenRecord?) -> RedeemDecision) async throws -> TokenRecord?

    /// Revokes the user's live tokens (of `purpose`, or all); records `event(count)` when any were.
    func revoke(userID: String, purpose: TokenPurpose?, reason: String, now: Int64, event: @escaping @Sendable (Int) -> NewTokenEvent) async throws -> Int

    /// The user's tokens, newest first, after `cursor` (exclusive), at most `limit`.
    func tokens(userID: String, after cursor: PageCursor?, limit: Int) async throws -> [TokenRecord]

    func events(userID: String, since: Int64, limit: Int) async throws -> [TokenEventRecord]

    /// Deletes tokens that expired before `cutoff` and events recorded before it.
    func purge(before cutoff: Int64) async throws -> (tokens: Int, events: Int)
}

/// A token to store: its record and the hash of its secret.
package struct NewToken: Sendable {
    package var record: TokenRecord
    package var digest: [UInt8]
}

/// One line of a user's history to store.
package struct NewTokenEvent: Sendable {
    package var kind: TokenEventRecord.Kind
    package var at: Int64
    package var purpose: TokenPurpose?
    package var userID: String
    package var tokenID: String = ""
    package var clientAddress: String = ""
    package var adminID: String = ""
    package var detail: String = ""
}

/// One rate limit to read: the newest tokens issued to `subject` since `since`.
package struct LimitQuery: Sendable {
    package var scope: RateLimitState.Scope
    package var subject: String
    /// For `.user`: the purpose counted.
    package var purpose: TokenPurpose?
    package var since: Int64
    package var limit: Int
}

package enum IssueDecision: Sendable {
    case issue(event: NewTokenEvent)
    /// Refused by the limit at `index` of the queries; only `event` is stored.
    case refuse(index: Int, state: RateLimitState, event: NewTokenEvent)
}

package enum RedeemDecision: Sendable {
    /// Store only `event` (a failed attempt).
    case refuse(event: NewTokenEvent)
    /// Spend the token and store `event`; with `supersede`, the user's other live tokens of the
    /// same purpose are revoked with `reason`, and `supersededEvent(count)` stored when any were.
    case spend(event: NewTokenEvent, supersede: Supersede?)

    package struct Supersede: Sendable {
        package var reason: String
        package var event: @Sendable (Int) -> NewTokenEvent
    }
}

// MARK: - SQLite

/// The embedded backend: one SQLite file, written by one process. Every transaction takes the
/// write lock at its start (`BEGIN IMMEDIATE`), which serialises issues and redeems.
package struct SQLiteTokenRepository: TokenRepository {
    package let database: SQLiteDatabase

    package init(database: SQLiteDatabase) {
        self.database = database
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

    package func issue(_ token: NewToken, limits: [LimitQuery], decide: @escaping @Sendable ([[Int64]]) -> IssueDecision) async throws -> IssueDecision {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                let decision = decide(try limits.map { try Self.recentIssues($0, in: connection) })
                switch decision {
                case .issue(let event):
                    let record = token.record
                    try connection.run(
                        """
                        INSERT INTO tokens (id, hash, purpose, user_id, email_identity_id, requested_by_admin_id, client_address, issued_at, expires_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        .text(record.id), .blob(token.digest), .integer(record.purpose.rawValue), .text(record.userID),
                        .text(record.emailIdentityID), .text(record.requestedByAdminID), .text(record.clientAddress),
                        .integer(record.issuedAt), .integer(record.expiresAt)
                    )
                    try Self.record(event, in: connection)
                case .refuse(_, _, let event):
                    try Self.record(event, in: connection)
                }
                return decision
            }
        }
    }

    package func recentIssues(_ query: LimitQuery) async throws -> [Int64] {
        try await self.database.withConnection { try Self.recentIssues(query, in: $0) }
    }

    private static func recentIssues(_ query: LimitQuery, in connection: SQLiteConnection) throws -> [Int64] {
        var bindings: [SQLiteValue] = [.text(query.subject)]
        if query.scope == .user {
            bindings.append(.integer((query.purpose ?? .passwordReset).rawValue))
        }
        return try connection.query(Self.limitQuery(query.scope), bindings + [.integer(query.since), .integer(Int64(query.limit))])
            .compactMap { $0.int("issued_at") }
    }

    package func find(digest: [UInt8]) async throws -> TokenRecord? {
        try await self.database.withConnection { try Self.find(digest: digest, in: $0) }
    }

    private static func find(digest: [UInt8], in connection: SQLiteConnection) throws -> TokenRecord? {
        try connection.queryFirst("SELECT * FROM tokens WHERE hash = ?", .blob(digest)).map(Self.record(from:))
    }

    package func openings(userID: String, tokenID: String) async throws -> Int {
        try await self.database.withConnection { connection in
            Int(
                try connection.query(
                    "SELECT COUNT(*) AS n FROM events WHERE user_id = ? AND token_id = ? AND kind = ?",
                    .text(userID), .text(tokenID), .text(TokenEventRecord.Kind.opened.rawValue)
                ).first?.int("n") ?? 0
            )
        }
    }

    package func record(_ event: NewTokenEvent) async throws {
        try await self.database.withConnection { try Self.record(event, in: $0) }
    }

    package func redeem(digest: [UInt8], usedFrom clientAddress: String, now: Int64, decide: @escaping @Sendable (TokenRecord?) -> RedeemDecision) async throws -> TokenRecord? {
        try await self.database.withConnection { connection in
            try connection.transaction { connection -> TokenRecord? in
                let found = try Self.find(digest: digest, in: connection)
                switch decide(found) {
                case .refuse(let event):
                    try Self.record(event, in: connection)
                    return nil
                case .spend(let event, let supersede):
                    guard var record = found else { preconditionFailure("a redeem decided to spend a token that does not exist") }
                    let spent = try connection.run(
                        "UPDATE tokens SET used_at = ?, used_from = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
                        .integer(now), .text(clientAddress), .text(record.id)
                    )
                    guard spent == 1 else { return nil }
                    record.usedAt = now
                    try Self.record(event, in: connection)
                    if let supersede {
                        let others = try connection.run(
                            """
                            UPDATE tokens SET revoked_at = ?, revoke_reason = ?
                            WHERE user_id = ? AND purpose = ? AND id != ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?
                            """,
                            .integer(now), .text(supersede.reason), .text(record.userID), .integer(record.purpose.rawValue), .text(record.id), .integer(now)
                        )
                        if others > 0 {
                            try Self.record(supersede.event(others), in: connection)
                        }
                    }
                    return record
                }
            }
        }
    }

    package func revoke(userID: String, purpose: TokenPurpose?, reason: String, now: Int64, event: @escaping @Sendable (Int) -> NewTokenEvent) async throws -> Int {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                var sql = "UPDATE tokens SET revoked_at = ?, revoke_reason = ? WHERE user_id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?"
                var bindings: [SQLiteValue] = [.integer(now), .text(reason), .text(userID), .integer(now)]
                if let purpose {
                    sql += " AND purpose = ?"
                    bindings.append(.integer(purpose.rawValue))
                }
                let count = try connection.run(sql, bindings)
                if count > 0 {
                    try Self.record(event(count), in: connection)
                }
                return count
            }
        }
    }

    package func tokens(userID: String, after cursor: PageCursor?, limit: Int) async throws -> [TokenRecord] {
        try await self.database.withConnection { connection in
            var sql = "SELECT * FROM tokens WHERE user_id = ?"
            var bindings: [SQLiteValue] = [.text(userID)]
            if let cursor {
                sql += " AND (issued_at < ? OR (issued_at = ? AND id < ?))"
                bindings += [.integer(cursor.issuedAt), .integer(cursor.issuedAt), .text(cursor.id)]
            }
            sql += " ORDER BY issued_at DESC, id DESC LIMIT ?"
            bindings.append(.integer(Int64(limit)))
            return try connection.query(sql, bindings).map(Self.record(from:))
        }
    }

    package func events(userID: String, since: Int64, limit: Int) async throws -> [TokenEventRecord] {
        try await self.database.withConnection { connection in
            try connection.query(
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
    }

    package func purge(before cutoff: Int64) async throws -> (tokens: Int, events: Int) {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                let tokens = try connection.run("DELETE FROM tokens WHERE expires_at < ?", .integer(cutoff))
                let events = try connection.run("DELETE FROM events WHERE at < ?", .integer(cutoff))
                return (tokens, events)
            }
        }
    }

    private static func record(_ event: NewTokenEvent, in connection: SQLiteConnection) throws {
        try connection.run(
            "INSERT INTO events (at, kind, purpose, user_id, token_id, client_address, admin_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            .integer(event.at), .text(event.kind.rawValue), event.purpose.map { .integer($0.rawValue) } ?? .null, .text(event.userID),
            .text(event.tokenID), .text(event.clientAddress), .text(event.adminID), .text(event.detail)
        )
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
}
