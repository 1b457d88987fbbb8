import Logging
import RekeyClock
import RekeyPostgres
import RekeySQLite

/// Copies a SQLite directory into PostgreSQL (`rekey-directory migrate-to`): every user, address,
/// role, organization, key, session, audit line, sign-in attempt and staged import, ids and times
/// kept, in one PostgreSQL transaction, with each table's count compared before it commits. The
/// search index is built anew from the users as they are copied. The target must be empty.
/// Offline: stop the service first. The source is read in one SQLite transaction, so the copy is
/// of one consistent moment, a page at a time, so that memory stays small however many users.
package enum DirectoryStoreCopy {
    /// Rows copied per table, in the order they were copied.
    package typealias Outcome = [(table: String, rows: Int)]

    /// Tables copied as they are, parents first; `key` orders and pages each.
    static let tables: [(name: String, key: String)] = [
        ("roles", "rowid"), ("role_permissions", "rowid"), ("organizations", "rowid"), ("users", "seq"), ("emails", "rowid"),
        ("api_keys", "rowid"), ("sessions", "rowid"), ("audit", "id"), ("sign_in_failures", "id"), ("sign_in_account_failures", "id"),
        ("imports", "rowid"), ("import_chunks", "rowid"),
    ]

    /// What each table holds, in words, for the copy's report.
    package static let words = [
        "roles": "roles", "role_permissions": "role permissions", "organizations": "organizations", "users": "users", "emails": "email addresses",
        "api_keys": "API keys", "sessions": "sessions", "audit": "audit lines", "sign_in_failures": "sign-in attempts by address",
        "sign_in_account_failures": "sign-in attempts by account", "imports": "staged imports", "import_chunks": "staged import chunks",
    ]

    /// Tables whose ids PostgreSQL generates: new rows continue after the copied ones.
    static let identities = [("users", "seq"), ("audit", "id"), ("sign_in_failures", "id"), ("sign_in_account_failures", "id")]

    static let pageSize = 1000

    package static func copy(from sqlitePath: String, to target: PostgresServiceDatabase, logger: Logger) async throws -> Outcome {
        // Bring the file's schema and its derived columns up to date, as the service does at start.
        let source = try SQLiteDatabase(path: sqlitePath, migrations: DirectoryStore.migrations)
        let store = DirectoryStore(clock: SystemWallClock())
        do {
            _ = try await source.withConnection { try store.fillLookAlikeSkeletons(in: $0) }
        } catch let error as SQLiteError where error.code & 0xFF == 5 {  // SQLITE_BUSY
            throw StoreCopyRefusal("\(sqlitePath) is in use: stop rekey-directory before copying its store")
        }
        let database = PostgresSQLDatabase(database: target, threads: 1, logger: logger)
        return try await database.withConnection { postgres in
            let sqlite = try SQLiteConnection(path: sqlitePath)
            return try sqlite.transaction { (sqlite: SQLiteConnection) in
                try Self.copy(from: sqlite, to: postgres)
            }
        }
    }

    private static func copy(from sqlite: SQLiteConnection, to postgres: any SQLConnection) throws -> Outcome {
        let present = try postgres.queryFirst(
            """
            SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM organizations) + (SELECT count(*) FROM audit)
                 + (SELECT count(*) FROM roles WHERE builtin = 0) AS n
            """
        )?.int("n") ?? 0
        guard present == 0 else {
            throw StoreCopyRefusal("the target already holds a directory (\(present) users, organizations, custom roles and audit lines); copy only into an empty schema \(DirectoryStore.postgresSchema)")
        }
        // The built-in roles come with the schema; the source's are copied instead.
        try postgres.run("DELETE FROM role_permissions", [])
        try postgres.run("DELETE FROM roles", [])
        var staffRoles = Set<String>()
        for row in try sqlite.query("SELECT name FROM roles WHERE staff = 1", []) {
            staffRoles.insert(row.string("name") ?? "")
        }
        var outcome: Outcome = []
        for (table, key) in Self.tables {
            var copied = 0
            var after = Int64.min
            while true {
                let rows = try sqlite.query("SELECT \(key) AS rekey_key, * FROM \(table) WHERE \(key) > ? ORDER BY \(key) LIMIT \(Self.pageSize)", .integer(after))
                guard let last = rows.last?.int("rekey_key") else { break }
                try Self.insert(rows, into: table, postgres)
                if table == "users" {
                    try Self.index(rows, staffRoles: staffRoles, from: sqlite, into: postgres)
                }
                copied += rows.count
                after = last
            }
            let expected = try sqlite.queryFirst("SELECT count(*) AS n FROM \(table)")?.int("n") ?? -1
            let counted = try postgres.queryFirst("SELECT count(*) AS n FROM \(table)")?.int("n") ?? -1
            guard counted == expected, copied == expected else {
                throw StoreCopyRefusal("the counts of \(table) differ after the copy (\(counted) rows, expected \(expected)); nothing was kept")
            }
            outcome.append((table, copied))
        }
        for (table, column) in Self.identities {
            try postgres.run(
                "SELECT setval(pg_get_serial_sequence('\(DirectoryStore.postgresSchema).\(table)', '\(column)'), GREATEST((SELECT max(\(column)) FROM \(table)), 1))", []
            )
        }
        return outcome
    }

    /// Inserts rows read from SQLite (less the paging key) in statements of up to 500 rows.
    private static func insert(_ rows: [SQLiteRow], into table: String, _ postgres: any SQLConnection) throws {
        guard let first = rows.first else { return }
        let columns = first.columns.filter { $0 != "rekey_key" }
        let perStatement = max(1, min(500, PostgresBatchInsert.maximumParameters / columns.count))
        let tuple = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
        for start in stride(from: 0, to: rows.count, by: perStatement) {
            let batch = rows[start..<min(start + perStatement, rows.count)]
            let values = batch.flatMap { row in columns.map { row[$0] } }
            try postgres.run(
                "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES " + Array(repeating: tuple, count: batch.count).joined(separator: ", "),
                values
            )
        }
    }

    /// Builds the search entries (`search_prefixes`, `user_search`) of a page of copied users.
    private static func index(_ users: [SQLiteRow], staffRoles: Set<String>, from sqlite: SQLiteConnection, into postgres: any SQLConnection) throws {
        let ids = users.compactMap { $0.string("id") }
        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        var addresses: [String: [String]] = [:]
        for row in try sqlite.query("SELECT user_id, address FROM emails WHERE user_id IN (\(marks)) ORDER BY rowid", ids.map(SQLiteValue.text)) {
            addresses[row.string("user_id") ?? "", default: []].append(row.string("address") ?? "")
        }
        var prefixes: [SQLiteValue] = []
        var texts: [SQLiteValue] = []
        for user in users {
            guard let seq = user.int("seq"), let id = user.string("id") else { continue }
            let name = user.string("name") ?? ""
            let emails = addresses[id] ?? []
            for row in DirectoryStore.prefixRows(seq: seq, name: name, emails: emails, staff: staffRoles.contains(user.string("role") ?? "")) {
                prefixes += [.text(row.prefix), .integer(Int64(row.tier)), .text(row.nameKey), .integer(row.seq), .integer(row.staff ? 1 : 0)]
            }
            let words = DirectoryStore.searchWords(([name] + emails).joined(separator: " ")).joined(separator: " ")
            texts += [.integer(seq), .text(name), .text(emails.joined(separator: " ")), .text(words)]
        }
        try Self.insertValues(prefixes, columns: 5, "INSERT INTO search_prefixes (prefix, tier, name_key, seq, staff) VALUES", tuple: "(?, ?, ?, ?, ?)", postgres)
        try Self.insertValues(texts, columns: 4, "INSERT INTO user_search (seq, name, emails, words) VALUES", tuple: "(?, ?, ?, to_tsvector('simple', ?))", postgres)
    }

    private static func insertValues(_ values: [SQLiteValue], columns: Int, _ prefix: String, tuple: String, _ postgres: any SQLConnection) throws {
        let perStatement = min(500, PostgresBatchInsert.maximumParameters / columns) * columns
        for start in stride(from: 0, to: values.count, by: perStatement) {
            let slice = Array(values[start..<min(start + perStatement, values.count)])
            try postgres.run(prefix + " " + Array(repeating: tuple, count: slice.count / columns).joined(separator: ", "), slice)
        }
    }
}
