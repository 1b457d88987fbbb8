import Foundation
import RekeySQLite
import RekeyTesting
import Testing

@Suite("SQLite")
struct SQLiteTests {
    static let migrations = [
        SQLiteMigration(version: 1, name: "people", sql: """
            CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE COLLATE NOCASE, photo BLOB, score REAL);
            """),
        SQLiteMigration(version: 2, name: "pets", sql: """
            CREATE TABLE pets (id INTEGER PRIMARY KEY, owner INTEGER NOT NULL REFERENCES people(id), name TEXT NOT NULL);
            """),
    ]

    /// A fresh database file with the migrations applied, removed afterwards.
    func withDatabase(_ body: (SQLiteDatabase, String) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rekey-sqlite-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("test.sqlite").path
        try await body(try SQLiteDatabase(path: path, migrations: Self.migrations), path)
    }

    @Test("migrations run once, in order, and the schema version is recorded")
    func migrations() async throws {
        try await self.withDatabase { database, path in
            #expect(try await database.schemaVersion() == 2)
            // Opening again applies nothing twice.
            let again = try SQLiteDatabase(path: path, migrations: Self.migrations)
            #expect(try await again.schemaVersion() == 2)
        }
    }

    @Test("a database from a newer version is refused with a clear message")
    func newerSchema() async throws {
        try await self.withDatabase { _, path in
            #expect {
                _ = try SQLiteDatabase(path: path, migrations: Array(Self.migrations.prefix(1)))
            } throws: { error in
                "\(error)".contains("schema version 2, newer than this program knows (1)")
            }
        }
    }

    @Test("a failing migration leaves nothing behind")
    func failingMigration() async throws {
        try await self.withDatabase { database, path in
            let broken = Self.migrations + [SQLiteMigration(version: 3, name: "broken", sql: "CREATE TABLE half (x); THIS IS NOT SQL;")]
            #expect(throws: SQLiteError.self) { _ = try SQLiteDatabase(path: path, migrations: broken) }
            let tables = try await database.withConnection { try $0.query("SELECT name FROM sqlite_master WHERE name = 'half'").count }
            #expect(tables == 0)
            #expect(try await database.schemaVersion() == 2)
        }
    }

    @Test("every value kind round-trips, text with NULs and non-ASCII included")
    func values() async throws {
        try await self.withDatabase { database, _ in
            let rows = try await database.transaction { connection in
                try connection.run("INSERT INTO people (email, photo, score) VALUES (?, ?, ?)", .text("a\u{0}b ✓"), .blob([0, 1, 255]), .real(2.5))
                try connection.run("INSERT INTO people (email, photo, score) VALUES (?, ?, ?)", .text(""), .blob([]), .null)
                return try connection.query("SELECT id, email, photo, score FROM people ORDER BY id")
            }
            #expect(rows.count == 2)
            #expect(rows[0].string("email") == "a\u{0}b ✓")
            #expect(rows[0]["photo"] == .blob([0, 1, 255]))
            #expect(rows[0].double("score") == 2.5)
            #expect(rows[1].string("email") == "")
            #expect(rows[1]["score"] == .null)
        }
    }

    @Test("constraint violations are reported as such and roll the transaction back")
    func constraints() async throws {
        try await self.withDatabase { database, _ in
            await #expect {
                try await database.transaction { connection in
                    try connection.run("INSERT INTO people (email) VALUES (?)", .text("Ann@example.com"))
                    try connection.run("INSERT INTO people (email) VALUES (?)", .text("ann@EXAMPLE.com"))
                }
            } throws: { error in
                (error as? SQLiteError)?.isUniqueViolation == true
            }
            await #expect {
                try await database.withConnection { connection in
                    try connection.run("INSERT INTO pets (owner, name) VALUES (?, ?)", .integer(999), .text("Rex"))
                }
            } throws: { error in
                (error as? SQLiteError)?.isConstraintViolation == true
            }
            let count = try await database.withConnection { try $0.queryFirst("SELECT count(*) AS n FROM people")?.int("n") }
            #expect(count == 0)
        }
    }

    @Test("a wrong number of values is an error, not a silent NULL")
    func bindingCount() async throws {
        try await self.withDatabase { database, _ in
            await #expect(throws: SQLiteError.self) {
                try await database.withConnection { try $0.run("INSERT INTO people (email, score) VALUES (?, ?)", .text("x")) }
            }
        }
    }

    @Test("the database runs in WAL mode with foreign keys on")
    func pragmas() async throws {
        try await self.withDatabase { database, _ in
            let (mode, keys) = try await database.withConnection { connection in
                (try connection.queryFirst("PRAGMA journal_mode")?.string("journal_mode"),
                 try connection.queryFirst("PRAGMA foreign_keys")?.int("foreign_keys"))
            }
            #expect(mode == "wal")
            #expect(keys == 1)
        }
    }

    @Test("a file that cannot be opened gives a clear error")
    func unopenable() {
        #expect {
            _ = try SQLiteDatabase(path: "/nonexistent-folder/x.sqlite", migrations: Self.migrations)
        } throws: { error in
            "\(error)".contains("cannot open /nonexistent-folder/x.sqlite")
        }
    }

    @Test("concurrent transactions share commits, yet one that fails undoes only its own changes")
    func groupCommit() async throws {
        try await self.withDatabase { database, path in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        do {
                            try await database.transaction { connection in
                                try connection.run("INSERT INTO people (email) VALUES (?)", .text("p\(index)@example.com"))
                                if index % 10 == 0 {
                                    // Fails after writing: this insert must not stay.
                                    try connection.run("INSERT INTO pets (owner, name) VALUES (?, ?)", .integer(-1), .text("ghost"))
                                }
                            }
                            return true
                        } catch {
                            return false
                        }
                    }
                }
                var succeeded = 0
                for try await ok in group where ok {
                    succeeded += 1
                }
                #expect(succeeded == 180)
            }
            // What was answered as committed is on disk: read it through a second connection.
            let reader = try SQLiteConnection(path: path)
            let count = try reader.queryFirst("SELECT count(*) AS n FROM people")?.int("n")
            #expect(count == 180)
            let failed = try reader.queryFirst("SELECT count(*) AS n FROM people WHERE email = 'p10@example.com'")?.int("n")
            #expect(failed == 0)
        }
    }

    @Test("reads run beside a long write: they see the last commit, not the open transaction, and a read that writes fails")
    func readsBesideTheWriter() async throws {
        try await self.withDatabase { database, _ in
            try await database.withConnection { _ = try $0.run("INSERT INTO people (email) VALUES ('before@example.com')") }
            let writing = Latch()
            let readDone = Latch()
            // The write holds the writer until the read has finished (or a minute has passed, so
            // that a read queued behind it fails the test instead of hanging it).
            let writer = Task {
                try await database.withConnection { connection -> Bool in
                    _ = try connection.run("INSERT INTO people (email) VALUES ('during@example.com')")
                    writing.open()
                    return readDone.waitBlocking()
                }
            }
            try await writing.wait()
            let seen = try await database.read { connection in
                try connection.query("SELECT email FROM people ORDER BY id").compactMap { $0.string("email") }
            }
            readDone.open()
            #expect(seen == ["before@example.com"], "the write's transaction is still open")
            #expect(try await writer.value, "the read finished while the write held the writer")
            let after = try await database.read { try $0.query("SELECT email FROM people ORDER BY id").compactMap { $0.string("email") } }
            #expect(after == ["before@example.com", "during@example.com"], "a read after the write's answer sees it")
            await #expect(throws: SQLiteError.self) {
                try await database.read { _ = try $0.run("INSERT INTO people (email) VALUES ('sneaky@example.com')") }
            }
        }
    }

    @Test("a read that fails ends its snapshot all the same: the next read sees later commits")
    func failedRead() async throws {
        struct Stop: Error {}
        try await self.withDatabase { database, _ in
            await #expect(throws: Stop.self) {
                try await database.read { connection in
                    _ = try connection.query("SELECT * FROM people")
                    throw Stop()
                }
            }
            try await database.withConnection { _ = try $0.run("INSERT INTO people (email) VALUES ('later@example.com')") }
            #expect(try await database.read { try $0.queryFirst("SELECT count(*) AS n FROM people")?.int("n") } == 1)
        }
    }

    @Test("an in-memory database reads on its one connection")
    func inMemoryReads() async throws {
        let database = try SQLiteDatabase(path: ":memory:", migrations: Self.migrations)
        try await database.withConnection { _ = try $0.run("INSERT INTO people (email) VALUES ('a@example.com')") }
        #expect(try await database.read { try $0.queryFirst("SELECT count(*) AS n FROM people")?.int("n") } == 1)
    }
}
