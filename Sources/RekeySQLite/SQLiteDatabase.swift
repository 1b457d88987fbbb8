import NIOPosix
import Synchronization

/// One step of a database's schema, applied once, in order, at start-up.
package struct SQLiteMigration: Sendable {
    package var version: Int
    package var name: String
    package var sql: String

    package init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }
}

/// A service's SQLite database: one connection in WAL mode with foreign keys on, its schema
/// migrated at open, and all work run on a thread pool, never on an event loop.
///
/// Work is serialised: one closure at a time has the connection. That is what SQLite allows for
/// writes anyway; it is enough for the load a password-reset system sees.
package final class SQLiteDatabase: Sendable {
    /// When a commit reaches the disk (SQLite's `synchronous` pragma, in WAL mode).
    package enum Durability: String, Sendable {
        /// Every commit is fsynced: nothing committed is lost, even on power loss.
        case full = "FULL"
        /// Commits survive a crash of the process; the last ones may be lost on power loss or an
        /// OS crash, never the database's consistency. Much faster.
        case normal = "NORMAL"
    }

    private let connection: Mutex<SQLiteConnection>
    private let threadPool: NIOThreadPool
    package let path: String

    /// Opens the database at `path` and applies the `migrations` it has not had yet.
    ///
    /// - Throws: ``SQLiteError`` when the file cannot be opened, a migration fails (nothing of it
    ///   stays), or the database was written by a newer version of the service.
    package init(
        path: String,
        migrations: [SQLiteMigration],
        durability: Durability = .full,
        threadPool: NIOThreadPool = .singleton
    ) throws {
        let connection = try SQLiteConnection(path: path)
        try connection.execute("PRAGMA busy_timeout = 5000")
        if path != ":memory:" {
            let mode = try connection.query("PRAGMA journal_mode = WAL").first?.string("journal_mode")
            guard mode == "wal" else {
                throw SQLiteError(code: 1, message: "cannot switch \(path) to WAL mode (got \(mode ?? "nothing"))")
            }
        }
        try connection.execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = \(durability.rawValue)")
        try Self.migrate(connection, migrations)
        self.connection = Mutex(connection)
        self.threadPool = threadPool
        self.path = path
    }

    /// The schema version the database is at.
    package func schemaVersion() async throws -> Int {
        try await self.withConnection { connection in
            Int(try connection.queryFirst("PRAGMA user_version")?.int("user_version") ?? 0)
        }
    }

    /// Runs `body` with the connection on the thread pool.
    package func withConnection<R: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> R) async throws -> R {
        try await self.threadPool.runIfActive {
            try self.connection.withLock { connection in
                try body(connection)
            }
        }
    }

    /// Runs `body` in an immediate transaction on the thread pool; a thrown error rolls it back.
    package func transaction<R: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> R) async throws -> R {
        try await self.withConnection { connection in
            try connection.transaction(body)
        }
    }

    private static func migrate(_ connection: SQLiteConnection, _ migrations: [SQLiteMigration]) throws {
        precondition(
            migrations.enumerated().allSatisfy { $0.offset + 1 == $0.element.version },
            "migrations must be numbered 1, 2, 3, … in order"
        )
        let current = Int(try connection.queryFirst("PRAGMA user_version")?.int("user_version") ?? 0)
        let known = migrations.last?.version ?? 0
        guard current <= known else {
            throw SQLiteError(
                code: 1,
                message: "\(connection.path) has schema version \(current), newer than this program knows (\(known)); run the newer version or restore a backup"
            )
        }
        for migration in migrations where migration.version > current {
            try connection.transaction { connection in
                do {
                    try connection.execute(migration.sql)
                } catch let error as SQLiteError {
                    throw SQLiteError(code: error.code, message: "migration \(migration.version) (\(migration.name)) failed: \(error.message)")
                }
                try connection.execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }
}
