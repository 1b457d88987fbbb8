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
/// - a redeem locks the user (advisory) and then the token's row (`FOR UPDATE`), and spends it
///   with an `UPDATE … WHERE used_at IS NULL AND revoked_at IS NULL`: of any number of concurrent
///   redeems of the user's links exactly one spends, and superseding the others cannot deadlock.
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
        try await self.database.transaction { connection in
            // Lock every limited subject, in one order for everyone, before counting.
            for key in Set(limits.map(Self.lockKey)).sorted() {
                try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(key), 0))", logger: self.logger)
            }
            var recent: [[Int64]] = []
            for limit in limits {
                recent.append(try await Self.recentIssues(limit, connection: connection, logger: self.logger))
            }
            let decision = decide(recent)
            switch decision {
            case .issue(let event):
                let record = token.record
                try await connection.query(
                    """
                    INSERT INTO tokens (id, hash, purpose, user_id, email_identity_id, requested_by_admin_id, client_address, issued_at, expires_at)
                    VALUES (\(record.id), \(ByteBuffer(bytes: token.digest)), \(record.purpose.rawValue), \(record.userID), \(record.emailIdentityID),
                            \(record.requestedByAdminID), \(record.clientAddress), \(record.issuedAt), \(record.expiresAt))
                    """,
                    logger: self.logger
                )
                try await Self.record(event, connection: connection, logger: self.logger)
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
            try await Self.recentIssues(query, connection: connection, logger: self.logger)
        }
    }

    private static func recentIssues(_ query: LimitQuery, connection: PostgresConnection, logger: Logger) async throws -> [Int64] {
        let rows: PostgresRowSequence
        switch query.scope {
        case .user:
            rows = try await connection.query(
                """
                SELECT issued_at FROM tokens WHERE user_id = \(query.subject) AND purpose = \((query.purpose ?? .passwordReset).rawValue)
                AND issued_at > \(query.since) ORDER BY issued_at DESC LIMIT \(query.limit)
                """,
                logger: logger
            )
        case .clientAddress:
            rows = try await connection.query(
                """
                SELECT issued_at FROM tokens WHERE client_address = \(query.subject) AND client_address <> '' AND requested_by_admin_id = ''
                AND issued_at > \(query.since) ORDER BY issued_at DESC LIMIT \(query.limit)
                """,
                logger: logger
            )
        case .admin:
            rows = try await connection.query(
                """
                SELECT issued_at FROM tokens WHERE requested_by_admin_id = \(query.subject) AND requested_by_admin_id <> ''
                AND issued_at > \(query.since) ORDER BY issued_at DESC LIMIT \(query.limit)
                """,
                logger: logger
            )
        }
        var times: [Int64] = []
        for try await time in rows.decode(Int64.self) {
            times.append(time)
        }
        return times
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
        return try await self.database.transaction { connection -> TokenRecord? in
            // The user first (every redeem of the user's links queues here), then the row.
            var userID: String?
            for try await user in try await connection.query("SELECT user_id FROM tokens WHERE hash = \(hash)", logger: self.logger).decode(String.self) {
                userID = user
            }
            if let userID {
                try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\("rekey_tokens:redeem:" + userID), 0))", logger: self.logger)
            }
            let found = userID == nil ? nil : try await Self.records(
                connection.query(PostgresQuery(unsafeSQL: "SELECT \(Self.columns) FROM tokens WHERE hash = $1 FOR UPDATE", binds: try Self.binds(hash)), logger: self.logger)
            ).first
            switch decide(found) {
            case .refuse(let event):
                try await Self.record(event, connection: connection, logger: self.logger)
                return nil
            case .spend(let event, let supersede):
                guard var record = found else { preconditionFailure("a redeem decided to spend a token that does not exist") }
                var spent = 0
                for try await _ in try await connection.query(
                    """
                    UPDATE tokens SET used_at = \(now), used_from = \(clientAddress)
                    WHERE id = \(record.id) AND used_at IS NULL AND revoked_at IS NULL RETURNING id
                    """,
                    logger: self.logger
                ) {
                    spent += 1
                }
                guard spent == 1 else { return nil }
                record.usedAt = now
                try await Self.record(event, connection: connection, logger: self.logger)
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

    private static func record(_ event: NewTokenEvent, connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            """
            INSERT INTO events (at, kind, purpose, user_id, token_id, client_address, admin_id, detail)
            VALUES (\(event.at), \(event.kind.rawValue), \(event.purpose?.rawValue), \(event.userID), \(event.tokenID),
                    \(event.clientAddress), \(event.adminID), \(event.detail))
            """,
            logger: logger
        )
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
