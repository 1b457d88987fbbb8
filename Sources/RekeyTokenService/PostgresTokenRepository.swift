import Logging
import NIOCore
import PostgresNIO
import RekeyPostgres

/// The token service on PostgreSQL, in the schema `rekey_tokens`: any number of replicas share it.
///
/// What keeps replicas honest:
/// - an issue takes a transaction-scoped advisory lock per limited subject (user and purpose,
///   admin or client address), in a fixed order, before it counts: two replicas issuing for one
///   user at once count one after the other, so the limit holds across replicas;
/// - a redeem locks the user (advisory) before it reads the token, and spends it with an
///   `UPDATE … WHERE used_at IS NULL AND revoked_at IS NULL`: of any number of concurrent redeems
///   of the user's links exactly one spends, and superseding the others cannot deadlock.
package struct PostgresTokenRepository: TokenRepository {
    package static let schema = "rekey_tokens"

    package static let migrations = [
        PostgresMigration(version: 1, name: "tokens and events", statements: [
            """
            CREATE TABLE tokens (
                id TEXT PRIMARY KEY,
                hash BYTEA NOT NULL UNIQUE,
                purpose BIGINT NOT NULL,
                user_id TEXT NOT NULL,
                email_identity_id TEXT NOT NULL DEFAULT '',
                requested_by_admin_id TEXT NOT NULL DEFAULT '',
                client_address TEXT NOT NULL DEFAULT '',
                issued_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                used_at BIGINT,
                used_from TEXT,
                revoked_at BIGINT,
                revoke_reason TEXT
            )
            """,
            "CREATE INDEX tokens_by_user ON tokens (user_id, purpose, issued_at)",
            "CREATE INDEX tokens_by_address ON tokens (client_address, issued_at) WHERE client_address <> '' AND requested_by_admin_id = ''",
            "CREATE INDEX tokens_by_admin ON tokens (requested_by_admin_id, issued_at) WHERE requested_by_admin_id <> ''",
            "CREATE INDEX tokens_by_expiry ON tokens (expires_at)",
            """
            CREATE TABLE events (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                at BIGINT NOT NULL,
                kind TEXT NOT NULL,
                purpose BIGINT,
                user_id TEXT NOT NULL DEFAULT '',
                token_id TEXT NOT NULL DEFAULT '',
                client_address TEXT NOT NULL DEFAULT '',
                admin_id TEXT NOT NULL DEFAULT '',
                detail TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX events_by_user ON events (user_id, at)",
            "CREATE INDEX events_by_time ON events (at)",
        ]),
    ]

    package let database: PostgresServiceDatabase
    private let logger: Logger

    package init(database: PostgresServiceDatabase, logger: Logger = Logger(label: "rekey.reset-token.postgres")) {
        self.database = database
        self.logger = logger
    }

    private static let columns = "id, purpose, user_id, email_identity_id, requested_by_admin_id, client_address, issued_at, expires_at, used_at, revoked_at, revoke_reason"

    // MARK: Issue

    package func issue(_ token: NewToken, limits: [LimitQuery], decide: @escaping @Sendable ([[Int64]]) -> IssueDecision) async throws -> IssueDecision {
        // Five round trips: BEGIN, the locks, the counts, the insert, COMMIT.
        try await self.database.transaction { connection in
            // Every limited subject locked, in one order for everyone (the function scan keeps
            // the array's order), before counting.
            let keys = Set(limits.map(Self.lockKey)).sorted()
            try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(k, 0))::text FROM unnest(\(keys)::text[]) AS k", logger: self.logger)
            let recent = try await Self.recentIssues(limits, connection: connection, logger: self.logger)
            let decision = decide(recent)
            switch decision {
            case .issue(let event):
                let record = token.record
                var binds = PostgresBindings()
                try Self.appendEvent(event, to: &binds)
                binds.append(record.id)
                binds.append(ByteBuffer(bytes: token.digest))
                binds.append(record.purpose.rawValue)
                binds.append(record.userID)
                binds.append(record.emailIdentityID)
                binds.append(record.requestedByAdminID)
                binds.append(record.clientAddress)
                binds.append(record.issuedAt)
                binds.append(record.expiresAt)
                try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            WITH token AS (
                                INSERT INTO tokens (id, hash, purpose, user_id, email_identity_id, requested_by_admin_id, client_address, issued_at, expires_at)
                                VALUES ($9, $10, $11, $12, $13, $14, $15, $16, $17)
                            )
                            \(Self.insertEvent)
                            """,
                        binds: binds
                    ),
                    logger: self.logger
                )
            case .refuse(_, _, let event):
                try await Self.record(event, connection: connection, logger: self.logger)
            }
            return decision
        }
    }

    private static func lockKey(_ limit: LimitQuery) -> String {
        "rekey_tokens:\(limit.scope.rawValue):\(limit.purpose?.rawValue ?? 0):\(limit.subject)"
    }

    package func recentIssues(_ query: LimitQuery) async throws -> [Int64] {
        try await self.database.withConnection { connection in
            try await Self.recentIssues([query], connection: connection, logger: self.logger)[0]
        }
    }

    /// The newest issue times of each limit, in one statement (one index range each).
    private static func recentIssues(_ queries: [LimitQuery], connection: PostgresConnection, logger: Logger) async throws -> [[Int64]] {
        var binds = PostgresBindings()
        var parts: [String] = []
        for (index, query) in queries.enumerated() {
            let base = binds.count
            binds.append(query.subject)
            binds.append(query.since)
            binds.append(Int64(query.limit))
            let condition: String
            switch query.scope {
            case .user:
                binds.append((query.purpose ?? .passwordReset).rawValue)
                condition = "user_id = $\(base + 1) AND purpose = $\(base + 4)"
            case .clientAddress:
                condition = "client_address = $\(base + 1) AND client_address <> '' AND requested_by_admin_id = ''"
            case .admin:
                condition = "requested_by_admin_id = $\(base + 1) AND requested_by_admin_id <> ''"
            }
            parts.append("(SELECT \(index)::bigint AS i, issued_at FROM tokens WHERE \(condition) AND issued_at > $\(base + 2) ORDER BY issued_at DESC LIMIT $\(base + 3))")
        }
        var times = Array(repeating: [Int64](), count: queries.count)
        let rows = try await connection.query(PostgresQuery(unsafeSQL: parts.joined(separator: " UNION ALL "), binds: binds), logger: logger)
        for try await (index, time) in rows.decode((Int64, Int64).self) {
            times[Int(index)].append(time)
        }
        // UNION ALL keeps no order across its parts; within a part, newest first.
        return times.map { $0.sorted(by: >) }
    }

    // MARK: Read

    package func find(digest: [UInt8]) async throws -> TokenRecord? {
        try await self.database.withConnection { connection in
            try await Self.records(
                connection.query(PostgresQuery(unsafeSQL: "SELECT \(Self.columns) FROM tokens WHERE hash = $1", binds: try Self.binds(ByteBuffer(bytes: digest))), logger: self.logger)
            ).first
        }
    }

    package func openings(userID: String, tokenID: String) async throws -> Int {
        try await self.database.withConnection { connection in
            var count = 0
            for try await n in try await connection.query(
                "SELECT COUNT(*) FROM events WHERE user_id = \(userID) AND token_id = \(tokenID) AND kind = \(TokenEventRecord.Kind.opened.rawValue)",
                logger: self.logger
            ).decode(Int64.self) {
                count = Int(n)
            }
            return count
        }
    }

    package func record(_ event: NewTokenEvent) async throws {
        try await self.database.withConnection { connection in
            try await Self.record(event, connection: connection, logger: self.logger)
        }
    }

    // MARK: Redeem, revoke

    package func redeem(digest: [UInt8], usedFrom clientAddress: String, now: Int64, decide: @escaping @Sendable (TokenRecord?) -> RedeemDecision) async throws -> TokenRecord? {
        let hash = ByteBuffer(bytes: digest)
        // Six round trips in the usual case: BEGIN, the lock, the read, the spend with its event,
        // the superseding, COMMIT.
        return try await self.database.transaction { connection -> TokenRecord? in
            // The user first: every redeem of the user's links queues here.
            var locked = false
            for try await _ in try await connection.query(
                "SELECT pg_advisory_xact_lock(hashtextextended('rekey_tokens:redeem:' || user_id, 0))::text FROM tokens WHERE hash = \(hash)",
                logger: self.logger
            ) {
                locked = true
            }
            // Then the row, read after the lock (a statement of its own sees what committed before).
            let found = !locked ? nil : try await Self.records(
                connection.query(PostgresQuery(unsafeSQL: "SELECT \(Self.columns) FROM tokens WHERE hash = $1", binds: try Self.binds(hash)), logger: self.logger)
            ).first
            switch decide(found) {
            case .refuse(let event):
                try await Self.record(event, connection: connection, logger: self.logger)
                return nil
            case .spend(let event, let supersede):
                guard var record = found else { preconditionFailure("a redeem decided to spend a token that does not exist") }
                var binds = PostgresBindings()
                try Self.appendEvent(event, to: &binds)
                binds.append(now)
                binds.append(clientAddress)
                binds.append(record.id)
                var spent = 0
                for try await _ in try await connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            WITH spent AS (
                                UPDATE tokens SET used_at = $9, used_from = $10
                                WHERE id = $11 AND used_at IS NULL AND revoked_at IS NULL RETURNING id
                            )
                            INSERT INTO events (at, kind, purpose, user_id, token_id, client_address, admin_id, detail)
                            SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM spent RETURNING 1
                            """,
                        binds: binds
                    ),
                    logger: self.logger
                ) {
                    spent += 1
                }
                guard spent == 1 else { return nil }
                record.usedAt = now
                if let supersede {
                    var others = 0
                    for try await _ in try await connection.query(
                        """
                        UPDATE tokens SET revoked_at = \(now), revoke_reason = \(supersede.reason)
                        WHERE user_id = \(record.userID) AND purpose = \(record.purpose.rawValue) AND id <> \(record.id)
                        AND used_at IS NULL AND revoked_at IS NULL AND expires_at > \(now) RETURNING id
                        """,
                        logger: self.logger
                    ) {
                        others += 1
                    }
                    if others > 0 {
                        try await Self.record(supersede.event(others), connection: connection, logger: self.logger)
                    }
                }
                return record
            }
        }
    }

    package func revoke(userID: String, purpose: TokenPurpose?, reason: String, now: Int64, event: @escaping @Sendable (Int) -> NewTokenEvent) async throws -> Int {
        try await self.database.transaction { connection in
            let rows: PostgresRowSequence
            if let purpose {
                rows = try await connection.query(
                    """
                    UPDATE tokens SET revoked_at = \(now), revoke_reason = \(reason)
                    WHERE user_id = \(userID) AND used_at IS NULL AND revoked_at IS NULL AND expires_at > \(now) AND purpose = \(purpose.rawValue) RETURNING id
                    """,
                    logger: self.logger
                )
            } else {
                rows = try await connection.query(
                    """
                    UPDATE tokens SET revoked_at = \(now), revoke_reason = \(reason)
                    WHERE user_id = \(userID) AND used_at IS NULL AND revoked_at IS NULL AND expires_at > \(now) RETURNING id
                    """,
                    logger: self.logger
                )
            }
            var count = 0
            for try await _ in rows {
                count += 1
            }
            if count > 0 {
                try await Self.record(event(count), connection: connection, logger: self.logger)
            }
            return count
        }
    }

    // MARK: History

    package func tokens(userID: String, after cursor: PageCursor?, limit: Int) async throws -> [TokenRecord] {
        try await self.database.withConnection { connection in
            if let cursor {
                return try await Self.records(connection.query(
                    PostgresQuery(
                        unsafeSQL: """
                            SELECT \(Self.columns) FROM tokens WHERE user_id = $1 AND (issued_at < $2 OR (issued_at = $2 AND id < $3))
                            ORDER BY issued_at DESC, id DESC LIMIT $4
                            """,
                        binds: try Self.binds(userID, cursor.issuedAt, cursor.id, Int64(limit))
                    ),
                    logger: self.logger
                ))
            }
            return try await Self.records(connection.query(
                PostgresQuery(
                    unsafeSQL: "SELECT \(Self.columns) FROM tokens WHERE user_id = $1 ORDER BY issued_at DESC, id DESC LIMIT $2",
                    binds: try Self.binds(userID, Int64(limit))
                ),
                logger: self.logger
            ))
        }
    }

    package func events(userID: String, since: Int64, limit: Int) async throws -> [TokenEventRecord] {
        try await self.database.withConnection { connection in
            var events: [TokenEventRecord] = []
            for try await (at, kind, purpose, tokenID, clientAddress, adminID, detail) in try await connection.query(
                """
                SELECT at, kind, purpose, token_id, client_address, admin_id, detail FROM events
                WHERE user_id = \(userID) AND at >= \(since) ORDER BY at DESC, id DESC LIMIT \(Int64(limit))
                """,
                logger: self.logger
            ).decode((Int64, String, Int64?, String, String, String, String).self) {
                events.append(TokenEventRecord(
                    kind: TokenEventRecord.Kind(rawValue: kind) ?? .issued, at: at, purpose: purpose.flatMap(TokenPurpose.init(rawValue:)),
                    tokenID: tokenID, clientAddress: clientAddress, adminID: adminID, detail: detail
                ))
            }
            return events
        }
    }

    package func purge(before cutoff: Int64) async throws -> (tokens: Int, events: Int) {
        try await self.database.transaction { connection in
            var tokens = 0
            for try await _ in try await connection.query("DELETE FROM tokens WHERE expires_at < \(cutoff) RETURNING 1", logger: self.logger) {
                tokens += 1
            }
            var events = 0
            for try await _ in try await connection.query("DELETE FROM events WHERE at < \(cutoff) RETURNING 1", logger: self.logger) {
                events += 1
            }
            return (tokens, events)
        }
    }

    // MARK: Helpers

    /// Inserts one event; `$1`…`$8` are the event's, in ``appendEvent(_:to:)``'s order.
    private static let insertEvent = """
        INSERT INTO events (at, kind, purpose, user_id, token_id, client_address, admin_id, detail)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        """

    private static func appendEvent(_ event: NewTokenEvent, to binds: inout PostgresBindings) throws {
        binds.append(event.at)
        binds.append(event.kind.rawValue)
        binds.append(event.purpose?.rawValue)
        binds.append(event.userID)
        binds.append(event.tokenID)
        binds.append(event.clientAddress)
        binds.append(event.adminID)
        binds.append(event.detail)
    }

    private static func record(_ event: NewTokenEvent, connection: PostgresConnection, logger: Logger) async throws {
        var binds = PostgresBindings()
        try Self.appendEvent(event, to: &binds)
        try await connection.query(PostgresQuery(unsafeSQL: Self.insertEvent, binds: binds), logger: logger)
    }

    private static func records(_ rows: PostgresRowSequence) async throws -> [TokenRecord] {
        var records: [TokenRecord] = []
        for try await (id, purpose, userID, identity, admin, address, issuedAt, expiresAt, usedAt, revokedAt, reason) in rows.decode(
            (String, Int64, String, String, String, String, Int64, Int64, Int64?, Int64?, String?).self
        ) {
            records.append(TokenRecord(
                id: id, purpose: TokenPurpose(rawValue: purpose) ?? .passwordReset, userID: userID, emailIdentityID: identity,
                requestedByAdminID: admin, clientAddress: address, issuedAt: issuedAt, expiresAt: expiresAt,
                usedAt: usedAt, revokedAt: revokedAt, revokeReason: reason
            ))
        }
        return records
    }

    private static func binds(_ values: any PostgresEncodable & Sendable...) throws -> PostgresBindings {
        var bindings = PostgresBindings()
        for value in values {
            try bindings.append(value)
        }
        return bindings
    }
}
