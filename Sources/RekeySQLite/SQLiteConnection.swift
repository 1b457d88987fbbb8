import CSQLite

/// A value stored in or read from SQLite.
package enum SQLiteValue: Hashable, Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

/// An SQLite call that failed.
package struct SQLiteError: Error, Hashable, CustomStringConvertible {
    /// SQLite's extended result code.
    package var code: Int32
    package var message: String
    package var sql: String?

    package var description: String {
        if let sql { return "SQLite error \(self.code): \(self.message) (in: \(sql))" }
        return "SQLite error \(self.code): \(self.message)"
    }

    /// A UNIQUE, PRIMARY KEY, FOREIGN KEY, CHECK or NOT NULL constraint refused the change.
    package var isConstraintViolation: Bool { self.code & 0xFF == SQLITE_CONSTRAINT }
    /// A UNIQUE or PRIMARY KEY constraint refused the change.
    package var isUniqueViolation: Bool { self.code == 2067 || self.code == 1555 }
    /// The disk is full or cannot be written (SQLITE_FULL, SQLITE_IOERR): the server's storage,
    /// not the request, is at fault.
    package var isStorageProblem: Bool { self.code & 0xFF == SQLITE_FULL || self.code & 0xFF == SQLITE_IOERR }
}

/// One result row: values by column name.
package struct SQLiteRow: Sendable {
    package let columns: [String]
    package let values: [SQLiteValue]

    package init(columns: [String], values: [SQLiteValue]) {
        self.columns = columns
        self.values = values
    }

    package subscript(_ column: String) -> SQLiteValue {
        guard let index = self.columns.firstIndex(of: column) else {
            preconditionFailure("no column \(column) in the result (\(self.columns))")
        }
        return self.values[index]
    }

    package func int(_ column: String) -> Int64? {
        if case .integer(let value) = self[column] { return value }
        return nil
    }

    package func string(_ column: String) -> String? {
        if case .text(let value) = self[column] { return value }
        return nil
    }

    package func blob(_ column: String) -> [UInt8]? {
        switch self[column] {
        case .blob(let value): return value
        case .null: return nil
        default: return nil
        }
    }

    package func double(_ column: String) -> Double? {
        switch self[column] {
        case .real(let value): return value
        case .integer(let value): return Double(value)
        default: return nil
        }
    }
}

/// One SQLite connection. Every raw SQLite call in the project is in this type.
///
/// Not thread-safe: use it from one thread at a time (``SQLiteDatabase`` makes sure of that).
/// Prepared statements are cached by their SQL text and always reset after use.
package final class SQLiteConnection {
    private let handle: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]
    private var savepointDepth = 0
    package let path: String

    /// Opens (creating if needed) the database at `path`; `:memory:` for a private in-memory one.
    package init(path: String) throws(SQLiteError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw SQLiteError(code: status, message: "cannot open \(path): \(message)")
        }
        self.handle = handle
        self.path = path
    }

    deinit {
        for statement in self.statements.values {
            sqlite3_finalize(statement)
        }
        sqlite3_close_v2(self.handle)
    }

    /// Runs one or more statements without parameters (schema scripts, pragmas).
    package func execute(_ sql: String) throws(SQLiteError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(self.handle, sql, nil, nil, &errorMessage)
        if status != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(errorMessage)
            throw SQLiteError(code: sqlite3_extended_errcode(self.handle), message: message, sql: sql)
        }
    }

    /// Runs a statement that returns no rows; returns how many rows it changed.
    /// Rows changed by every statement since the connection opened.
    package var totalChanges: Int64 { Int64(sqlite3_total_changes64(self.handle)) }

    @discardableResult
    package func run(_ sql: String, _ bindings: SQLiteValue...) throws(SQLiteError) -> Int {
        try self.run(sql, bindings)
    }

    @discardableResult
    package func run(_ sql: String, _ bindings: [SQLiteValue]) throws(SQLiteError) -> Int {
        _ = try self.withStatement(sql, bindings) { statement throws(SQLiteError) in
            while try self.step(statement, sql) {}
        }
        return Int(sqlite3_changes(self.handle))
    }

    /// Runs a query and returns every row.
    package func query(_ sql: String, _ bindings: SQLiteValue...) throws(SQLiteError) -> [SQLiteRow] {
        try self.query(sql, bindings)
    }

    package func query(_ sql: String, _ bindings: [SQLiteValue]) throws(SQLiteError) -> [SQLiteRow] {
        try self.withStatement(sql, bindings) { statement throws(SQLiteError) in
            let count = sqlite3_column_count(statement)
            let columns = (0..<count).map { String(cString: sqlite3_column_name(statement, $0)) }
            var rows: [SQLiteRow] = []
            while try self.step(statement, sql) {
                rows.append(SQLiteRow(columns: columns, values: (0..<count).map { self.column(statement, $0) }))
            }
            return rows
        }
    }

    /// The first row of a query, if any.
    package func queryFirst(_ sql: String, _ bindings: SQLiteValue...) throws(SQLiteError) -> SQLiteRow? {
        try self.query(sql, bindings).first
    }

    /// The rowid of the last row inserted on this connection.
    package var lastInsertRowID: Int64 {
        sqlite3_last_insert_rowid(self.handle)
    }

    /// Whether a transaction is open on this connection.
    package var isInTransaction: Bool {
        sqlite3_get_autocommit(self.handle) == 0
    }

    /// Runs `body` in a transaction that takes the write lock at once; rolls back if it throws.
    ///
    /// Inside an open transaction this nests as a savepoint: a throw undoes only `body`'s changes.
    package func transaction<R>(_ body: (SQLiteConnection) throws -> R) throws -> R {
        if self.isInTransaction {
            self.savepointDepth += 1
            let name = "rekey_\(self.savepointDepth)"
            defer { self.savepointDepth -= 1 }
            try self.execute("SAVEPOINT \(name)")
            do {
                let result = try body(self)
                try self.execute("RELEASE \(name)")
                return result
            } catch {
                try? self.execute("ROLLBACK TO \(name)")
                try? self.execute("RELEASE \(name)")
                throw error
            }
        }
        try self.execute("BEGIN IMMEDIATE")
        do {
            let result = try body(self)
            try self.execute("COMMIT")
            return result
        } catch {
            try? self.execute("ROLLBACK")
            throw error
        }
    }

    // MARK: Statements

    private func withStatement<R>(
        _ sql: String,
        _ bindings: [SQLiteValue],
        _ body: (OpaquePointer) throws(SQLiteError) -> R
    ) throws(SQLiteError) -> R {
        let statement = try self.prepare(sql)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard expected == bindings.count else {
            throw SQLiteError(code: SQLITE_RANGE, message: "the statement takes \(expected) values, \(bindings.count) given", sql: sql)
        }
        for (offset, value) in bindings.enumerated() {
            try self.bind(value, at: Int32(offset + 1), in: statement, sql)
        }
        return try body(statement)
    }

    private func prepare(_ sql: String) throws(SQLiteError) -> OpaquePointer {
        if let cached = self.statements[sql] {
            return cached
        }
        var statement: OpaquePointer?
        let status = sqlite3_prepare_v3(self.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard status == SQLITE_OK, let statement else {
            throw self.error(sql)
        }
        self.statements[sql] = statement
        return statement
    }

    private func bind(_ value: SQLiteValue, at index: Int32, in statement: OpaquePointer, _ sql: String) throws(SQLiteError) {
        let status: Int32
        switch value {
        case .null:
            status = sqlite3_bind_null(statement, index)
        case .integer(let integer):
            status = sqlite3_bind_int64(statement, index, integer)
        case .real(let real):
            status = sqlite3_bind_double(statement, index, real)
        case .text(let text):
            var text = text
            status = text.withUTF8 { utf8 in
                sqlite3_bind_text64(
                    statement, index, UnsafeRawPointer(utf8.baseAddress ?? UnsafePointer(bitPattern: 1)!)
                        .assumingMemoryBound(to: CChar.self),
                    sqlite3_uint64(utf8.count), rekey_sqlite_transient(), UInt8(SQLITE_UTF8)
                )
            }
        case .blob(let bytes):
            status = bytes.withUnsafeBytes { buffer in
                sqlite3_bind_blob64(statement, index, buffer.baseAddress ?? UnsafeRawPointer(bitPattern: 1), sqlite3_uint64(buffer.count), rekey_sqlite_transient())
            }
        }
        guard status == SQLITE_OK else {
            throw self.error(sql)
        }
    }

    /// Steps once: true when a row is ready, false when done.
    private func step(_ statement: OpaquePointer, _ sql: String) throws(SQLiteError) -> Bool {
        switch sqlite3_step(statement) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw self.error(sql)
        }
    }

    private func column(_ statement: OpaquePointer, _ index: Int32) -> SQLiteValue {
        switch sqlite3_column_type(statement, index) {
        case SQLITE_INTEGER:
            return .integer(sqlite3_column_int64(statement, index))
        case SQLITE_FLOAT:
            return .real(sqlite3_column_double(statement, index))
        case SQLITE_TEXT:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard let text = sqlite3_column_text(statement, index) else { return .text("") }
            return .text(String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(statement, index))
            guard count > 0, let blob = sqlite3_column_blob(statement, index) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: blob, count: count)))
        default:
            return .null
        }
    }

    private func error(_ sql: String?) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(self.handle), message: String(cString: sqlite3_errmsg(self.handle)), sql: sql)
    }
}
