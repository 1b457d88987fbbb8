import Logging
import PostgresNIO
import RekeyPostgres
import RekeySQLite

/// Copies a SQLite token store into PostgreSQL (`rekey-reset-token migrate-to`): every token and
/// every history line, ids and times kept, in one PostgreSQL transaction, with the counts compared
/// before it commits. The target must be empty. Offline: stop the service first. The source is
/// read under SQLite's write lock, so the copy is of one consistent moment, but what a running
/// service writes after it is not copied.
package enum TokenStoreCopy {
    package struct Outcome: Sendable, Equatable {
        package var tokens: Int
        package var events: Int
    }

    package static func copy(from sqlitePath: String, to target: PostgresServiceDatabase, logger: Logger) async throws -> Outcome {
        let source = try SQLiteDatabase(path: sqlitePath, migrations: SQLiteTokenRepository.migrations)
        // Read everything under the write lock: one consistent moment of the store.
        let (tokens, events): ([SQLiteRow], [SQLiteRow])
        do {
            (tokens, events) = try await source.withConnection { connection in
                try connection.transaction { connection in
                    (try connection.query("SELECT * FROM tokens ORDER BY rowid"), try connection.query("SELECT * FROM events ORDER BY id"))
                }
            }
        } catch let error as SQLiteError where error.code & 0xFF == 5 {  // SQLITE_BUSY
            throw StoreCopyRefusal("\(sqlitePath) is in use: stop rekey-reset-token before copying its store")
        }
        try await target.migrate(PostgresTokenRepository.migrations)
        return try await target.transaction { connection in
            var existing = 0
            for try await count in try await connection.query("SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM events)", logger: logger).decode(Int64.self) {
                existing = Int(count)
            }
            guard existing == 0 else {
                throw StoreCopyRefusal("the target already holds \(existing) tokens and events; copy only into an empty schema \(PostgresTokenRepository.schema)")
            }
            try await PostgresBatchInsert.insert(
                tokens,
                "INSERT INTO tokens (id, hash, purpose, user_id, email_identity_id, requested_by_admin_id, client_address, issued_at, expires_at, used_at, used_from, revoked_at, revoke_reason) VALUES",
                columns: 13, connection: connection, logger: logger
            ) { row, binds in
                binds.append(row.string("id") ?? "")
                binds.append(ByteBuffer(bytes: row.blob("hash") ?? []))
                binds.append(row.int("purpose") ?? 0)
                binds.append(row.string("user_id") ?? "")
                binds.append(row.string("email_identity_id") ?? "")
                binds.append(row.string("requested_by_admin_id") ?? "")
                binds.append(row.string("client_address") ?? "")
                binds.append(row.int("issued_at") ?? 0)
                binds.append(row.int("expires_at") ?? 0)
                binds.append(row.int("used_at"))
                binds.append(row.string("used_from"))
                binds.append(row.int("revoked_at"))
                binds.append(row.string("revoke_reason"))
            }
            try await PostgresBatchInsert.insert(
                events,
                "INSERT INTO events (id, at, kind, purpose, user_id, token_id, client_address, admin_id, detail) OVERRIDING SYSTEM VALUE VALUES",
                columns: 9, connection: connection, logger: logger
            ) { row, binds in
                binds.append(row.int("id") ?? 0)
                binds.append(row.int("at") ?? 0)
                binds.append(row.string("kind") ?? "")
                binds.append(row.int("purpose"))
                binds.append(row.string("user_id") ?? "")
                binds.append(row.string("token_id") ?? "")
                binds.append(row.string("client_address") ?? "")
                binds.append(row.string("admin_id") ?? "")
                binds.append(row.string("detail") ?? "")
            }
            // New history lines continue after the copied ones.
            try await connection.query(
                "SELECT setval(pg_get_serial_sequence('rekey_tokens.events', 'id'), GREATEST((SELECT max(id) FROM events), 1))", logger: logger
            )
            var copied = Outcome(tokens: 0, events: 0)
            for try await (tokenCount, eventCount) in try await connection.query(
                "SELECT (SELECT count(*) FROM tokens), (SELECT count(*) FROM events)", logger: logger
            ).decode((Int64, Int64).self) {
                copied = Outcome(tokens: Int(tokenCount), events: Int(eventCount))
            }
            guard copied == Outcome(tokens: tokens.count, events: events.count) else {
                throw StoreCopyRefusal("the counts differ after the copy (\(copied.tokens) tokens and \(copied.events) events, expected \(tokens.count) and \(events.count)); nothing was kept")
            }
            return copied
        }
    }
}
