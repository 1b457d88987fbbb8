import RekeyPostgres
import RekeySQLite

/// Where the directory keeps its data: a SQLite file (the default; one process), or PostgreSQL
/// (schema `rekey_directory`; any number of replicas). The store's rules and SQL are the same on
/// both; ``DirectoryStore`` asks the connection's dialect for the few statements that differ.
package enum DirectoryDatabase: Sendable {
    case sqlite(SQLiteDatabase)
    case postgres(PostgresSQLDatabase)

    /// Runs `body` with a connection: on SQLite's thread, one body at a time; on PostgreSQL in a
    /// serialisable transaction of its own, run again if PostgreSQL could not serialise it.
    package func withConnection<R: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> R) async throws -> R {
        switch self {
        case .sqlite(let database):
            return try await database.withConnection { try body($0) }
        case .postgres(let database):
            return try await database.withConnection(body)
        }
    }

    /// Runs `body`, which only reads: on SQLite on the read-only connection, beside the writer
    /// (a long import does not hold it up); on PostgreSQL outside a transaction (no
    /// `BEGIN`/`COMMIT` round trips; each statement sees what was committed when it started).
    /// For answers that a moment's change between two statements cannot make wrong.
    package func read<R: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> R) async throws -> R {
        switch self {
        case .sqlite(let database):
            return try await database.read { try body($0) }
        case .postgres(let database):
            return try await database.read(body)
        }
    }

    /// Runs one hot query that only reads: on PostgreSQL prepared, outside a transaction, straight
    /// from the calling task.
    package func query<Statement: PreparedSQL>(_ statement: Statement.Type, _ bindings: [SQLiteValue]) async throws -> [SQLiteRow] {
        switch self {
        case .sqlite(let database):
            return try await database.read { try $0.query(statement, bindings) }
        case .postgres(let database):
            return try await database.query(statement, bindings)
        }
    }

    /// The SQLite database, whose disk the service watches; nil on PostgreSQL.
    package var sqlite: SQLiteDatabase? {
        if case .sqlite(let database) = self { return database }
        return nil
    }
}
