import Logging
import PostgresNIO
import RekeyPostgres
import RekeyTesting
import Testing

/// The migrations of a service's schema on a real PostgreSQL (the tests' throw-away cluster).
@Suite("PostgreSQL schemas and migrations")
struct MigrationTests {
    static let logger = Logger(label: "rekey.test.postgres")
    /// What these tests check is what the migrations do, not how fast: in the first minute of the
    /// full suite, with every PostgreSQL test opening its database at once, the 30 s a service
    /// allows at start-up was seen to pass.
    static let patience = Duration.seconds(180)

    static let migrations = [
        PostgresMigration(version: 1, name: "things", statements: ["CREATE TABLE things (id BIGINT PRIMARY KEY, name TEXT NOT NULL)"]),
        PostgresMigration(version: 2, name: "things' colour", statements: ["ALTER TABLE things ADD COLUMN colour TEXT NOT NULL DEFAULT ''"]),
    ]

    static func open(_ url: String, schema: String = "rekey_things") throws -> PostgresServiceDatabase {
        try PostgresServiceDatabase(url: try PostgresURL(url), schema: schema, maximumConnections: 4, logger: Self.logger)
    }

    @Test("eight replicas starting at once apply each migration exactly once, in the service's own schema")
    func concurrentStarts() async throws {
        let url = try await PostgresCluster.shared().makeDatabase()
        let versions = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let database = try Self.open(url)
                    defer { database.close() }
                    // What is tested is that each migration runs once, not how fast: at the start
                    // of the full suite, with every PostgreSQL test migrating at once, the eight
                    // one after the other were seen to take more than the 30 s a service allows.
                    return try await database.open(Self.migrations, within: Self.patience)
                }
            }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(versions == Array(repeating: 2, count: 8))
        let database = try Self.open(url)
        defer { database.close() }
        let applied = try await database.withConnection { connection in
            var rows: [String] = []
            for try await (version, name) in try await connection.query("SELECT version, name FROM schema_migrations ORDER BY version", logger: Self.logger).decode((Int, String).self) {
                rows.append("\(version) \(name)")
            }
            return rows
        }
        #expect(applied == ["1 things", "2 things' colour"])
        // The tables are in the schema, not in public: another service's schema never sees them.
        let schemas = try await database.withConnection { connection in
            var rows: [String] = []
            for try await schema in try await connection.query("SELECT table_schema FROM information_schema.tables WHERE table_name = 'things'", logger: Self.logger).decode(String.self) {
                rows.append(schema)
            }
            return rows
        }
        #expect(schemas == ["rekey_things"])
    }

    @Test("opening tries again while connecting only runs out of time (a busy server), until the start's limit; a refused connection fails at once")
    func connectTimeoutsTriedAgain() async throws {
        // A port that completes connections and never answers: each try runs into the 5 s
        // connect timeout.
        let hanging = try PortReservation(listening: true)
        let capture = LogCapture()
        let database = try PostgresServiceDatabase(
            url: try PostgresURL("postgres://rekey:pw@127.0.0.1:\(hanging.port)/rekey?sslmode=disable"), schema: "rekey_things",
            logger: capture.logger(level: .warning)
        )
        defer { database.close() }
        // Long enough for the first try to time out even on a loaded machine, where CI once saw
        // it take 20 s instead of 5: the tries only wait, and use no CPU.
        await #expect {
            try await database.open(Self.migrations, within: .seconds(60))
        } throws: { error in
            "\(error)".contains("Connect timeout")
        }
        let retries = capture.lines.filter { $0.contains("did not let us in within the connect timeout; trying again") }
        #expect(!retries.isEmpty, "\(capture.lines)")
        #expect(!capture.lines.joined().contains("pw@"), "the password stays out of the log")

        let refused = try PortReservation()
        let refusing = try PostgresServiceDatabase(
            url: try PostgresURL("postgres://rekey:pw@127.0.0.1:\(refused.port)/rekey?sslmode=disable"), schema: "rekey_things",
            logger: capture.logger(level: .warning)
        )
        defer { refusing.close() }
        let before = capture.lines.count
        await #expect(throws: PostgresSchemaError.self) { try await refusing.open(Self.migrations, within: Self.patience) }
        #expect(!capture.lines.dropFirst(before).contains { $0.contains("trying again") }, "a refusal is not tried again")
    }

    @Test("a schema newer than the program knows is refused, naming both versions")
    func newerSchemaRefused() async throws {
        let url = try await PostgresCluster.shared().makeDatabase()
        let newer = try Self.open(url)
        try await newer.open(Self.migrations, within: Self.patience)
        newer.close()
        let older = try Self.open(url)
        defer { older.close() }
        await #expect {
            try await older.open(Array(Self.migrations.prefix(1)), within: Self.patience)
        } throws: { error in
            "\(error)".contains("has version 2, newer than this program knows (1)")
        }
    }

    @Test("a failing migration leaves the schema as it was")
    func failedMigrationRollsBack() async throws {
        let url = try await PostgresCluster.shared().makeDatabase()
        let database = try Self.open(url)
        defer { database.close() }
        try await database.open(Array(Self.migrations.prefix(1)), within: Self.patience)
        let broken = Self.migrations.prefix(1) + [
            PostgresMigration(version: 2, name: "broken", statements: ["ALTER TABLE things ADD COLUMN size BIGINT", "ALTER TABLE no_such_table ADD COLUMN x TEXT"]),
        ]
        await #expect {
            try await database.open(Array(broken), within: Self.patience)
        } throws: { error in
            "\(error)".contains("relation \"no_such_table\" does not exist (SQLSTATE 42P01)")
        }
        #expect(try await database.open(Array(Self.migrations.prefix(1)), within: Self.patience) == 1)
        let columns = try await database.withConnection { connection in
            var names: [String] = []
            for try await name in try await connection.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'things' ORDER BY column_name", logger: Self.logger).decode(String.self) {
                names.append(name)
            }
            return names
        }
        #expect(columns == ["id", "name"], "the first statement of the failed step was undone too")
    }
}
