/// Which SQL a connection speaks, for the few statements that differ.
package enum SQLDialect: Sendable {
    case sqlite
    case postgres
}

/// Statements on one connection, synchronous, for stores whose SQL runs on both SQLite and
/// PostgreSQL: values are bound as `?` placeholders (a PostgreSQL connection numbers them), and
/// rows come back as ``SQLiteRow``s of integers, text, blobs and nulls whatever the backend.
///
/// A conforming connection is used by one thread at a time: the SQLite database's own thread, or
/// the thread a PostgreSQL connection's body was given (see `PostgresSQLDatabase`).
package protocol SQLConnection: AnyObject {
    var dialect: SQLDialect { get }

    /// Runs a statement that returns no rows; returns how many rows it changed.
    @discardableResult
    func run(_ sql: String, _ bindings: [SQLiteValue]) throws -> Int

    /// Runs a query and returns every row.
    func query(_ sql: String, _ bindings: [SQLiteValue]) throws -> [SQLiteRow]

    /// Runs one of the hot queries, which a PostgreSQL connection prepares the first time and then
    /// only executes: planning a join costs PostgreSQL more than running it. (SQLite keeps every
    /// statement prepared anyway: the default runs `Statement.sql`.)
    func query<Statement: PreparedSQL>(_ statement: Statement.Type, _ bindings: [SQLiteValue]) throws -> [SQLiteRow]

    /// Runs `body` in a transaction; rolls back if it throws. Inside an open transaction this
    /// nests as a savepoint: a throw undoes only `body`'s changes.
    func transaction<R>(_ body: (any SQLConnection) throws -> R) throws -> R
}

/// A query run on most calls, named by its type, with one text for both dialects.
package protocol PreparedSQL: SendableMetatype {
    /// The statement, with `?` placeholders.
    static var sql: String { get }
}

extension SQLConnection {
    package func query<Statement: PreparedSQL>(_ statement: Statement.Type, _ bindings: [SQLiteValue]) throws -> [SQLiteRow] {
        try self.query(Statement.sql, bindings)
    }

    @discardableResult
    package func run(_ sql: String, _ bindings: SQLiteValue...) throws -> Int {
        try self.run(sql, bindings)
    }

    package func query(_ sql: String, _ bindings: SQLiteValue...) throws -> [SQLiteRow] {
        try self.query(sql, bindings)
    }

    /// The first row of a query, if any.
    package func queryFirst(_ sql: String, _ bindings: SQLiteValue...) throws -> SQLiteRow? {
        try self.query(sql, bindings).first
    }

    package func queryFirst(_ sql: String, _ bindings: [SQLiteValue]) throws -> SQLiteRow? {
        try self.query(sql, bindings).first
    }
}

extension SQLiteConnection: SQLConnection {
    package var dialect: SQLDialect { .sqlite }

    package func transaction<R>(_ body: (any SQLConnection) throws -> R) throws -> R {
        try self.transaction { (connection: SQLiteConnection) in try body(connection) }
    }
}
