import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import RekeyRPC
import RekeySQLite
import Synchronization

/// Runs a store's synchronous SQL (``SQLConnection``, written once for SQLite and PostgreSQL) on
/// PostgreSQL.
///
/// Each body gets a pooled connection and a thread of its own, and runs as one `SERIALIZABLE`
/// transaction: what SQLite gives by running one body at a time, PostgreSQL gives to many bodies
/// at once on any number of replicas, refusing a transaction that could not be serialised with the
/// others (SQLSTATE 40001, or a deadlock, 40P01). Such a body is run again from the start, after
/// the bodies of this process that collided before it, one at a time, each after a short random
/// pause, up to ``maximumAttempts`` runs in all; so a body must do nothing but database work (it
/// does: hashing, mail and calls happen outside).
package final class PostgresSQLDatabase: Sendable {
    package let database: PostgresServiceDatabase
    private let threads: NIOThreadPool
    private let logger: Logger
    private let retries = FIFOLock()

    /// How many times a body is run before a serialisation failure is returned.
    package static let maximumAttempts = 20

    /// - Parameter threads: at most this many bodies run at once; the database's pool size is the
    ///   natural value (a body holds one connection all along).
    package init(database: PostgresServiceDatabase, threads: Int, logger: Logger) {
        self.database = database
        self.logger = logger
        self.threads = NIOThreadPool(numberOfThreads: max(1, threads))
        self.threads.start()
    }

    deinit {
        self.threads.shutdownGracefully { _ in }
    }

    /// Runs `body` in one serialisable transaction: committed when it returns, rolled back when it
    /// throws, run again when PostgreSQL could not serialise it.
    package func withConnection<R: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> R) async throws -> R {
        do {
            return try await self.attempt(body)
        } catch where PostgresServiceDatabase.isRetryable(error) {
            // It collided. Bodies run again one at a time (in the order they collided), so that
            // when many touch the same rows each gets through rather than colliding forever.
            return try await self.retries.withLock {
                var attempt = 2
                while true {
                    do {
                        return try await self.attempt(body)
                    } catch where PostgresServiceDatabase.isRetryable(error) {
                        guard attempt < Self.maximumAttempts else {
                            self.logger.warning("a transaction collided with others too often; the call fails", metadata: [
                                "db.attempts": "\(attempt)", "error": "\(PostgresServiceDatabase.describe(error))",
                            ])
                            throw PostgresContentionError()
                        }
                        attempt += 1
                        try await Task.sleep(for: .microseconds(Int.random(in: 50...(200 * attempt))))
                    }
                }
            }
        }
    }

    /// Runs `body`, which only reads, outside any transaction: each `SELECT` sees what was committed
    /// when it started (two statements may see different moments), and no `BEGIN` and `COMMIT`
    /// are paid. A statement that is not a `SELECT` is refused as a bug.
    package func read<R: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> R) async throws -> R {
        try await self.database.withConnection { connection in
            try await self.threads.runIfActive { [logger] in
                try body(PostgresSQLConnection(connection: connection, logger: logger, readOnly: true))
            }
        }
    }

    /// Runs one hot query, outside any transaction, straight from the calling task: no thread is
    /// woken for it (see ``read(_:)`` for work of several statements).
    package func query<Statement: PreparedSQL>(_ statement: Statement.Type, _ bindings: [SQLiteValue]) async throws -> [SQLiteRow] {
        let prepared = try PostgresSQLConnection.prepared(statement, bindings, readOnly: true)
        return try await self.database.withConnection { [logger] connection in
            try await PostgresSQLConnection.rows(of: prepared, on: connection, logger: logger)
        }
    }

    private func attempt<R: Sendable>(_ body: @escaping @Sendable (any SQLConnection) throws -> R) async throws -> R {
        try await self.database.withConnection { connection in
            try await self.threads.runIfActive { [logger] in
                let sql = PostgresSQLConnection(connection: connection, logger: logger)
                return try sql.serializableTransaction(body)
            }
        }
    }
}

/// A lock for async code that hands itself over in the order it was asked for.
final class FIFOLock: Sendable {
    private struct State {
        var held = false
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func withLock<R>(_ body: () async throws -> R) async throws -> R {
        await withCheckedContinuation { continuation in
            let granted = self.state.withLock { state -> Bool in
                if state.held {
                    state.waiting.append(continuation)
                    return false
                }
                state.held = true
                return true
            }
            if granted { continuation.resume() }
        }
        defer {
            let next = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                if state.waiting.isEmpty {
                    state.held = false
                    return nil
                }
                return state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}

/// One pooled PostgreSQL connection seen as an ``SQLConnection``: each statement waits for its
/// answer on the calling thread, which must not be one of NIO's event loops.
package final class PostgresSQLConnection: SQLConnection {
    private let connection: PostgresConnection
    private let logger: Logger
    private var savepointDepth = 0
    /// Outside any transaction: only `SELECT`s are allowed.
    private let readOnly: Bool

    package init(connection: PostgresConnection, logger: Logger, readOnly: Bool = false) {
        self.connection = connection
        self.logger = logger
        self.readOnly = readOnly
    }

    package var dialect: SQLDialect { .postgres }

    @discardableResult
    package func run(_ sql: String, _ bindings: [SQLiteValue]) throws -> Int {
        try self.execute(sql, bindings).metadata.rows ?? 0
    }

    package func query(_ sql: String, _ bindings: [SQLiteValue]) throws -> [SQLiteRow] {
        try self.execute(sql, bindings).rows.map(Self.row)
    }

    package func query<Statement: PreparedSQL>(_ statement: Statement.Type, _ bindings: [SQLiteValue]) throws -> [SQLiteRow] {
        let prepared = try Self.prepared(statement, bindings, readOnly: self.readOnly)
        let connection = self.connection
        let logger = self.logger
        // postgres-nio has prepared statements in its async API only.
        return try connection.eventLoop.makeFutureWithTask {
            try await Self.rows(of: prepared, on: connection, logger: logger)
        }.wait()
    }

    /// A ``PreparedSQL`` call, checked.
    fileprivate static func prepared<Statement: PreparedSQL>(
        _ statement: Statement.Type, _ bindings: [SQLiteValue], readOnly: Bool
    ) throws -> PostgresPrepared<Statement> {
        let placeholders = Self.numbered(Statement.sql).placeholders
        guard placeholders == bindings.count else {
            throw PostgresStatementError(message: "the statement takes \(placeholders) values, \(bindings.count) given", sql: Statement.sql)
        }
        return PostgresPrepared<Statement>(bindings: try Self.bindings(Statement.sql, bindings, readOnly: readOnly))
    }

    /// Runs a prepared call: postgres-nio prepares the statement on this connection the first time
    /// (named after its type), then sends only Bind and Execute.
    fileprivate static func rows<Statement: PreparedSQL>(
        of prepared: PostgresPrepared<Statement>, on connection: PostgresConnection, logger: Logger
    ) async throws -> [SQLiteRow] {
        var rows: [SQLiteRow] = []
        for try await row in try await connection.execute(prepared, logger: logger) {
            rows.append(Self.row(row))
        }
        return rows
    }

    package func transaction<R>(_ body: (any SQLConnection) throws -> R) throws -> R {
        guard !self.readOnly else {
            throw PostgresStatementError(message: "a transaction in work declared read-only", sql: "SAVEPOINT")
        }
        self.savepointDepth += 1
        let name = "rekey_\(self.savepointDepth)"
        defer { self.savepointDepth -= 1 }
        try self.statement("SAVEPOINT \(name)")
        do {
            let result = try body(self)
            try self.statement("RELEASE SAVEPOINT \(name)")
            return result
        } catch {
            try? self.statement("ROLLBACK TO SAVEPOINT \(name)")
            try? self.statement("RELEASE SAVEPOINT \(name)")
            throw error
        }
    }

    /// The outermost transaction, which ``PostgresSQLDatabase`` opens around every body.
    func serializableTransaction<R>(_ body: (any SQLConnection) throws -> R) throws -> R {
        try self.statement("BEGIN ISOLATION LEVEL SERIALIZABLE")
        do {
            let result = try body(self)
            try self.statement("COMMIT")
            return result
        } catch {
            try? self.statement("ROLLBACK")
            throw error
        }
    }

    private func statement(_ sql: String) throws {
        _ = try self.connection.query(PostgresQuery(unsafeSQL: sql), logger: self.logger).wait()
    }

    private func execute(_ sql: String, _ bindings: [SQLiteValue]) throws -> PostgresQueryResult {
        let binds = try Self.bindings(sql, bindings, readOnly: self.readOnly)
        let numbered = try Self.numberPlaceholders(sql, expecting: bindings.count)
        return try self.connection.query(PostgresQuery(unsafeSQL: numbered, binds: binds), logger: self.logger).wait()
    }

    /// The values to bind, once the statement is known to be allowed here.
    private static func bindings(_ sql: String, _ bindings: [SQLiteValue], readOnly: Bool) throws -> PostgresBindings {
        if readOnly, !sql.drop(while: \.isWhitespace).hasPrefix("SELECT") {
            throw PostgresStatementError(message: "a statement that may write, in work declared read-only", sql: sql)
        }
        var binds = PostgresBindings(capacity: bindings.count)
        for value in bindings {
            switch value {
            case .null: binds.appendNull()
            case .integer(let integer): binds.append(integer)
            case .real(let double): binds.append(double)
            case .text(let text): binds.append(text)
            case .blob(let bytes): binds.append(ByteBuffer(bytes: bytes))
            }
        }
        return binds
    }

    /// `?` placeholders as PostgreSQL's `$1`, `$2`, …; a `?` inside a quoted literal or name stays.
    package static func numberPlaceholders(_ sql: String, expecting count: Int) throws -> String {
        let (numbered, placeholders) = Self.numbered(sql)
        guard placeholders == count else {
            throw PostgresStatementError(message: "the statement takes \(placeholders) values, \(count) given", sql: sql)
        }
        return numbered
    }

    /// `sql` with its placeholders numbered, and how many there are.
    static func numbered(_ sql: String) -> (sql: String, placeholders: Int) {
        // Over UTF-8 bytes: the quotes and `?` are ASCII, and never part of a longer character.
        let question = UInt8(ascii: "?"), apostrophe = UInt8(ascii: "'"), doubleQuote = UInt8(ascii: "\"")
        var output: [UInt8] = []
        output.reserveCapacity(sql.utf8.count + 16)
        var number = 0
        var quote: UInt8?
        for byte in sql.utf8 {
            if let open = quote {
                if byte == open { quote = nil }
                output.append(byte)
            } else if byte == apostrophe || byte == doubleQuote {
                quote = byte
                output.append(byte)
            } else if byte == question {
                number += 1
                output.append(UInt8(ascii: "$"))
                output.append(contentsOf: String(number).utf8)
            } else {
                output.append(byte)
            }
        }
        return (String(decoding: output, as: UTF8.self), number)
    }

    /// The name a prepared statement goes by on the server: `rekey.` and its type's full name, cut
    /// to PostgreSQL's 63 bytes with a hash of the whole kept (the server would cut it without one,
    /// and two long names could then meet).
    package static func statementName(_ typeName: String) -> String {
        let name = "rekey." + typeName
        guard name.utf8.count > 63 else { return name }
        var hash: UInt32 = 2_166_136_261  // FNV-1a
        for byte in name.utf8 {
            hash = (hash ^ UInt32(byte)) &* 16_777_619
        }
        let suffix = "." + String(hash, radix: 16)
        return String(decoding: name.utf8.prefix(63 - suffix.utf8.count), as: UTF8.self) + suffix
    }

    /// A row as integers, text, blobs and nulls, as SQLite gives them: booleans become 0 and 1.
    static func row(_ row: PostgresRow) -> SQLiteRow {
        var columns: [String] = []
        var values: [SQLiteValue] = []
        for cell in row {
            columns.append(cell.columnName)
            values.append(Self.value(cell))
        }
        return SQLiteRow(columns: columns, values: values)
    }

    private static func value(_ cell: PostgresCell) -> SQLiteValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8, .oid:
            return (try? cell.decode(Int64.self)).map(SQLiteValue.integer) ?? .null
        case .bool:
            return (try? cell.decode(Bool.self)).map { .integer($0 ? 1 : 0) } ?? .null
        case .float4, .float8:
            return (try? cell.decode(Double.self)).map(SQLiteValue.real) ?? .null
        case .bytea:
            return (try? cell.decode(ByteBuffer.self)).map { .blob(Array($0.readableBytesView)) } ?? .null
        default:
            return (try? cell.decode(String.self)).map(SQLiteValue.text) ?? .null
        }
    }
}

/// A ``PreparedSQL`` as postgres-nio prepares it: named after the statement's type, its
/// placeholders numbered, the parameter types those of the first call's values.
fileprivate struct PostgresPrepared<Statement: PreparedSQL>: PostgresPreparedStatement {
    typealias Row = PostgresRow

    static var name: String { PostgresSQLConnection.statementName(String(reflecting: Statement.self)) }
    static var sql: String { PostgresSQLConnection.numbered(Statement.sql).sql }

    var bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { self.bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}

/// Transactions on the same rows collided too often for this one to finish: the call may be
/// tried again (on any replica).
package struct PostgresContentionError: Error, CustomStringConvertible, RPCErrorConvertible {
    package var description: String { "the transaction could not be serialised with concurrent ones after \(PostgresSQLDatabase.maximumAttempts) attempts" }
    package var rpcError: RPCError { RPCError(.unavailable, "the service is too busy with the same records; try again") }
}

/// A statement the program got wrong (not the database's refusal): a bug, reported as such.
package struct PostgresStatementError: Error, CustomStringConvertible {
    package var message: String
    package var sql: String
    package var description: String { "\(self.message): \(self.sql)" }
}
