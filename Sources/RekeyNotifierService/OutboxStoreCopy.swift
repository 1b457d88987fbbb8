import Logging
import PostgresNIO
import RekeyPostgres
import RekeySQLite

/// Copies a SQLite outbox into PostgreSQL (`rekey-notifier migrate-to`): every message with its
/// attempts and reports, the suppression list and its removals, ids and times kept, in one
/// PostgreSQL transaction, with the counts compared before it commits. The target must be empty.
/// Offline: stop the service first. An attempt the stopped service left open is copied as
/// interrupted (as the service itself would record it at its next start), and no message is
/// held: waiting messages go out from PostgreSQL.
package enum OutboxStoreCopy {
    package struct Outcome: Sendable, Equatable {
        package var messages: Int
        package var attempts: Int
        package var suppressions: Int
    }

    private static let tables = ["messages", "attempts", "reports", "suppressions", "suppression_removals"]

    package static func copy(from sqlitePath: String, to target: PostgresServiceDatabase, now: Int64, logger: Logger) async throws -> Outcome {
        let source = try SQLiteDatabase(path: sqlitePath, migrations: SQLiteOutboxRepository.migrations)
        // Read everything under the write lock: one consistent moment of the outbox.
        let rows: [String: [SQLiteRow]]
        do {
            rows = try await source.withConnection { connection in
                try connection.transaction { connection in
                    var rows: [String: [SQLiteRow]] = [:]
                    for table in Self.tables {
                        rows[table] = try connection.query(table == "suppressions" ? "SELECT rowid AS r, * FROM suppressions ORDER BY rowid" : "SELECT * FROM \(table)")
                    }
                    return rows
                }
            }
        } catch let error as SQLiteError where error.code & 0xFF == 5 {  // SQLITE_BUSY
            throw StoreCopyRefusal("\(sqlitePath) is in use: stop rekey-notifier before copying its outbox")
        }
        try await target.migrate(PostgresOutboxRepository.migrations)
        return try await target.transaction { connection in
            var existing: Int64 = 0
            for try await count in try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT " + Self.tables.map { "(SELECT count(*) FROM \($0))" }.joined(separator: " + ")), logger: logger
            ).decode(Int64.self) {
                existing = count
            }
            guard existing == 0 else {
                throw StoreCopyRefusal("the target already holds \(existing) rows; copy only into an empty schema \(PostgresOutboxRepository.schema)")
            }
            try await PostgresBatchInsert.insert(
                rows["messages"] ?? [],
                """
                INSERT INTO messages (seq, id, idempotency_key, template, locale, to_address, to_normalized, to_domain, to_name, user_id, token_id,
                    actor_id, actor_address, state, message_id_header, subject, content, created_at, updated_at, next_attempt_at, reason)
                OVERRIDING SYSTEM VALUE VALUES
                """,
                columns: 21, connection: connection, logger: logger
            ) { row, binds in
                binds.append(row.int("seq") ?? 0)
                for column in ["id", "idempotency_key", "template", "locale", "to_address", "to_normalized", "to_domain", "to_name", "user_id", "token_id", "actor_id", "actor_address"] {
                    binds.append(row.string(column) ?? "")
                }
                binds.append(row.int("state") ?? 0)
                binds.append(row.string("message_id_header") ?? "")
                binds.append(row.string("subject") ?? "")
                binds.append(row.blob("content").map { ByteBuffer(bytes: $0) })
                binds.append(row.int("created_at") ?? 0)
                binds.append(row.int("updated_at") ?? 0)
                binds.append(row.int("next_attempt_at"))
                binds.append(row.string("reason") ?? "")
            }
            try await PostgresBatchInsert.insert(
                rows["attempts"] ?? [],
                """
                INSERT INTO attempts (id, message_seq, to_domain, started_at, finished_at, transport, server, outcome, stage, reply_code,
                    enhanced_status, reply_text, remote_queue_id, error)
                OVERRIDING SYSTEM VALUE VALUES
                """,
                columns: 14, connection: connection, logger: logger
            ) { row, binds in
                let open = row.int("outcome") == nil
                binds.append(row.int("id") ?? 0)
                binds.append(row.int("message_seq") ?? 0)
                binds.append(row.string("to_domain") ?? "")
                binds.append(row.int("started_at") ?? 0)
                binds.append(open ? now : row.int("finished_at"))
                binds.append(row.string("transport") ?? "")
                binds.append(row.string("server") ?? "")
                binds.append(open ? AttemptOutcomeValue.interrupted.rawValue : row.int("outcome"))
                binds.append(row.string("stage") ?? "")
                binds.append(row.int("reply_code") ?? 0)
                binds.append(row.string("enhanced_status") ?? "")
                binds.append(row.string("reply_text") ?? "")
                binds.append(row.string("remote_queue_id") ?? "")
                binds.append(open ? "the service stopped during this attempt" : row.string("error") ?? "")
            }
            try await PostgresBatchInsert.insert(
                rows["reports"] ?? [],
                """
                INSERT INTO reports (id, message_seq, received_at, kind, action, status, diagnostic, remote_mta, recipient, feedback_type, reporter)
                OVERRIDING SYSTEM VALUE VALUES
                """,
                columns: 11, connection: connection, logger: logger
            ) { row, binds in
                binds.append(row.int("id") ?? 0)
                binds.append(row.int("message_seq") ?? 0)
                binds.append(row.int("received_at") ?? 0)
                for column in ["kind", "action", "status", "diagnostic", "remote_mta", "recipient", "feedback_type", "reporter"] {
                    binds.append(row.string(column) ?? "")
                }
            }
            try await PostgresBatchInsert.insert(
                rows["suppressions"] ?? [],
                "INSERT INTO suppressions (position, normalized, address, reason, created_at, message_id) OVERRIDING SYSTEM VALUE VALUES",
                columns: 6, connection: connection, logger: logger
            ) { row, binds in
                binds.append(row.int("r") ?? 0)
                for column in ["normalized", "address", "reason"] {
                    binds.append(row.string(column) ?? "")
                }
                binds.append(row.int("created_at") ?? 0)
                binds.append(row.string("message_id") ?? "")
            }
            try await PostgresBatchInsert.insert(
                rows["suppression_removals"] ?? [],
                """
                INSERT INTO suppression_removals (id, normalized, address, reason, removed_at, actor_id, actor_address, removal_reason)
                OVERRIDING SYSTEM VALUE VALUES
                """,
                columns: 8, connection: connection, logger: logger
            ) { row, binds in
                binds.append(row.int("id") ?? 0)
                for column in ["normalized", "address", "reason"] {
                    binds.append(row.string(column) ?? "")
                }
                binds.append(row.int("removed_at") ?? 0)
                for column in ["actor_id", "actor_address", "removal_reason"] {
                    binds.append(row.string(column) ?? "")
                }
            }
            // New rows continue after the copied ones.
            for (table, column) in [("messages", "seq"), ("attempts", "id"), ("reports", "id"), ("suppressions", "position"), ("suppression_removals", "id")] {
                try await connection.query(
                    PostgresQuery(unsafeSQL: "SELECT setval(pg_get_serial_sequence('\(PostgresOutboxRepository.schema).\(table)', '\(column)'), GREATEST((SELECT max(\(column)) FROM \(table)), 1))"),
                    logger: logger
                )
            }
            var counts: [Int] = []
            for try await row in try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT " + Self.tables.map { "(SELECT count(*) FROM \($0))" }.joined(separator: ", ")), logger: logger
            ).decode((Int64, Int64, Int64, Int64, Int64).self) {
                counts = [Int(row.0), Int(row.1), Int(row.2), Int(row.3), Int(row.4)]
            }
            let expected = Self.tables.map { rows[$0]?.count ?? 0 }
            guard counts == expected else {
                throw StoreCopyRefusal("the counts differ after the copy (\(counts) rows of \(Self.tables), expected \(expected)); nothing was kept")
            }
            return Outcome(messages: expected[0], attempts: expected[1], suppressions: expected[3])
        }
    }
}
