import Logging
import PostgresNIO

/// Inserts many rows in few statements, for the offline copies (`migrate-to`).
package enum PostgresBatchInsert {
    /// Parameters per INSERT: below PostgreSQL's limit of 65,535.
    package static let maximumParameters = 60_000

    /// `rows` in INSERTs of at most 500 rows (fewer when their parameters would pass the limit): `prefix` is the statement up to VALUES, and
    /// `bind` appends one row's `columns` values.
    package static func insert<Row>(
        _ rows: [Row],
        _ prefix: String,
        columns: Int,
        connection: PostgresConnection,
        logger: Logger,
        bind: (Row, inout PostgresBindings) -> Void
    ) async throws {
        let batch = max(1, min(500, Self.maximumParameters / columns))
        for start in stride(from: 0, to: rows.count, by: batch) {
            var binds = PostgresBindings()
            var values: [String] = []
            for row in rows[start..<min(start + batch, rows.count)] {
                let base = binds.count
                values.append("(" + (1...columns).map { "$\(base + $0)" }.joined(separator: ", ") + ")")
                bind(row, &binds)
            }
            try await connection.query(PostgresQuery(unsafeSQL: prefix + " " + values.joined(separator: ", "), binds: binds), logger: logger)
        }
    }
}
