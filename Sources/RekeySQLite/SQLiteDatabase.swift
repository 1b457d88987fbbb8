import Foundation
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
/// migrated at open, and all work run off the event loops, on a thread of its own.
///
/// **Group commit.** Work is serialised (SQLite allows one writer anyway), and the work that
/// queues up while a transaction commits runs together in the next one, each closure's
/// transactions nested as savepoints, so one that fails undoes only its own changes; every
/// closure's result is handed back only after the shared COMMIT. Under load this turns many small commits
/// into a few larger ones; alone, a call costs what it would without it.
///
/// **Reads beside the writer.** Work that only reads may go to ``read(_:)``: a second connection
/// (`PRAGMA query_only`), on a thread of its own, that sees the last commit while the writer's
/// transaction is open. A long write, such as a 100,000-row import, then holds up other writes
/// only, not look-ups.
package final class SQLiteDatabase: Sendable {
    /// When a commit reaches the disk (SQLite's `synchronous` pragma, in WAL mode).
    package enum Durability: String, Sendable {
        /// Every commit is fsynced: nothing committed is lost, even on power loss.
        case full = "FULL"
        /// Commits survive a crash of the process; the last ones may be lost on power loss or an
        /// OS crash, never the database's consistency. Much faster.
        case normal = "NORMAL"
    }

    /// The most closures run in one shared transaction.
    private static let maxBatch = 64

    private let connection: Mutex<SQLiteConnection>
    /// The read-only connection and its thread, opened by the first ``read(_:)`` (a database
    /// that is only written never has one). An in-memory database has none: one connection is
    /// the whole database, and its reads queue with the writes.
    private let reader = Mutex<Reader?>(nil)
    private let cacheKibibytes: Int
    private let queue = Mutex(Queue())
    private let threadPool: NIOThreadPool
    private let ownsThreadPool: Bool
    package let path: String
    /// Set when a write failed because the disk is full or unwritable; cleared by the next commit
    /// that succeeds.
    private let storageFailure = Mutex<String?>(nil)

    private struct Queue {
        var jobs: [any DatabaseJob] = []
        var draining = false
    }

    /// Opens the database at `path` and applies the `migrations` it has not had yet.
    ///
    /// Without a `threadPool`, the database runs its work on a thread of its own. `cacheKibibytes`
    /// is SQLite's page cache for the connection.
    ///
    /// - Throws: ``SQLiteError`` when the file cannot be opened, a migration fails (nothing of it
    ///   stays), or the database was written by a newer version of the service.
    package init(
        path: String,
        migrations: [SQLiteMigration],
        durability: Durability = .full,
        cacheKibibytes: Int = 8192,
        threadPool: NIOThreadPool? = nil
    ) throws {
        let connection = try SQLiteConnection(path: path)
        try connection.execute("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -\(max(cacheKibibytes, 64))")
        if path != ":memory:" {
            let mode = try connection.query("PRAGMA journal_mode = WAL").first?.string("journal_mode")
            guard mode == "wal" else {
                throw SQLiteError(code: 1, message: "cannot switch \(path) to WAL mode (got \(mode ?? "nothing"))")
            }
        }
        try connection.execute("PRAGMA foreign_keys = ON; PRAGMA synchronous = \(durability.rawValue)")
        try Self.migrate(connection, migrations)
        // One row that ``probeStorage()`` rewrites to learn whether the disk takes writes again.
        try connection.execute("CREATE TABLE IF NOT EXISTS rekey_storage_probe (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)")
        self.connection = Mutex(connection)
        self.cacheKibibytes = cacheKibibytes
        if let threadPool {
            self.threadPool = threadPool
            self.ownsThreadPool = false
        } else {
            self.threadPool = NIOThreadPool(numberOfThreads: 1)
            self.threadPool.start()
            self.ownsThreadPool = true
        }
        self.path = path
    }

    deinit {
        self.reader.withLock { $0?.thread.shutdownGracefully { _ in } }
        if self.ownsThreadPool {
            // The pool's one thread finishes the work queued before this point, then exits.
            self.threadPool.shutdownGracefully { _ in }
        }
    }

    /// The schema version the database is at.
    package func schemaVersion() async throws -> Int {
        try await self.withConnection { connection in
            Int(try connection.queryFirst("PRAGMA user_version")?.int("user_version") ?? 0)
        }
    }

    /// Runs `body` with the connection; what it changed is committed before this returns.
    ///
    /// `body` runs inside a shared transaction. Changes it must make all or nothing go in
    /// ``SQLiteConnection/transaction(_:)`` (a savepoint there), or use ``transaction(_:)``.
    package func withConnection<R: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            let job = TypedJob(body: body, continuation: continuation)
            let startDrain = self.queue.withLock { queue -> Bool in
                queue.jobs.append(job)
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            if startDrain {
                self.threadPool.submit { state in
                    guard case .active = state else {
                        self.failQueued(SQLiteError(code: 1, message: "the database's thread has stopped"))
                        return
                    }
                    self.drain()
                }
            }
        }
    }

    /// Runs `body`, which only reads, on the read-only connection: beside the writer, not behind
    /// it. Its statements read one snapshot: the database as of the last commit before the first
    /// of them. A statement that would write fails (SQLite's `query_only`).
    package func read<R: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> R) async throws -> R {
        guard self.path != ":memory:" else { return try await self.withConnection(body) }
        let reader = try self.reader.withLock { reader in
            if let reader { return reader }
            let opened = try Reader(path: self.path, cacheKibibytes: self.cacheKibibytes)
            reader = opened
            return opened
        }
        return try await withCheckedThrowingContinuation { continuation in
            reader.thread.submit { state in
                guard case .active = state else {
                    continuation.resume(throwing: SQLiteError(code: 1, message: "the database's reading thread has stopped"))
                    return
                }
                continuation.resume(with: Result {
                    try reader.connection.withLock { connection in
                        try connection.execute("BEGIN")
                        // A read transaction has nothing to keep: ROLLBACK ends it whatever the
                        // body did, so the connection never stays on an old snapshot.
                        defer { try? connection.execute("ROLLBACK") }
                        return try body(connection)
                    }
                })
            }
        }
    }

    /// Why writes fail now (the disk is full or unwritable), or nil when the last commit succeeded.
    package var storageProblem: String? { self.storageFailure.withLock { $0 } }

    /// When writes have been failing, tries one small write; the problem, or nil if it is gone.
    package func probeStorage() async -> String? {
        guard self.storageProblem != nil else { return nil }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try? await self.withConnection { try $0.run("INSERT OR REPLACE INTO rekey_storage_probe (id, at) VALUES (1, ?)", .integer(now)) }
        return self.storageProblem
    }

    private func noteStorage(_ error: (any Error)?) {
        if let error = error as? SQLiteError, error.isStorageProblem {
            let problem = "\(self.path): \(error.message)"
            self.storageFailure.withLock { $0 = problem }
        }
    }

    /// Runs `body` all or nothing: if it throws, none of its changes stay.
    package func transaction<R: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws -> R) async throws -> R {
        try await self.withConnection { try $0.transaction(body) }
    }

    /// Runs queued jobs in shared transactions until the queue is empty. Runs on the pool's thread.
    private func drain() {
        while true {
            let batch: [any DatabaseJob] = self.queue.withLock { queue in
                let batch = Array(queue.jobs.prefix(Self.maxBatch))
                queue.jobs.removeFirst(batch.count)
                if batch.isEmpty {
                    queue.draining = false
                }
                return batch
            }
            guard !batch.isEmpty else { return }
            self.connection.withLock { connection in
                do {
                    try connection.execute("BEGIN IMMEDIATE")
                } catch {
                    self.noteStorage(error)
                    batch.forEach { $0.finish(overriding: error) }
                    return
                }
                let changesBefore = connection.totalChanges
                for job in batch {
                    job.run(connection)
                    self.noteStorage(job.failure)
                }
                do {
                    try connection.execute("COMMIT")
                    // Only a commit that wrote something proves the disk takes writes again.
                    if connection.totalChanges > changesBefore {
                        self.storageFailure.withLock { $0 = nil }
                    }
                    batch.forEach { $0.finish(overriding: nil) }
                } catch {
                    try? connection.execute("ROLLBACK")
                    self.noteStorage(error)
                    batch.forEach { $0.finish(overriding: error) }
                }
            }
        }
    }

    private func failQueued(_ error: any Error) {
        let jobs = self.queue.withLock { queue in
            defer {
                queue.jobs.removeAll()
                queue.draining = false
            }
            return queue.jobs
        }
        jobs.forEach { $0.finish(overriding: error) }
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

/// One closure waiting for the database.
private protocol DatabaseJob: Sendable {
    /// Runs the closure in a savepoint of the open transaction, keeping its result.
    func run(_ connection: SQLiteConnection)
    /// Hands the result to the caller, or `error` if the shared transaction failed.
    func finish(overriding error: (any Error)?)
    /// What the closure threw, once it ran.
    var failure: (any Error)? { get }
}

/// `@unchecked Sendable`: a job is created by the caller, then only touched by the database's
/// thread (run, then finish), handed over under the queue's lock.
private final class TypedJob<R: Sendable>: DatabaseJob, @unchecked Sendable {
    private let body: @Sendable (SQLiteConnection) throws -> R
    private let continuation: CheckedContinuation<R, any Error>
    private var result: Result<R, any Error>?

    init(body: @escaping @Sendable (SQLiteConnection) throws -> R, continuation: CheckedContinuation<R, any Error>) {
        self.body = body
        self.continuation = continuation
    }

    func run(_ connection: SQLiteConnection) {
        self.result = Result { try self.body(connection) }
    }

    var failure: (any Error)? {
        if case .failure(let error) = self.result { return error }
        return nil
    }

    func finish(overriding error: (any Error)?) {
        if let error {
            self.continuation.resume(throwing: error)
        } else {
            self.continuation.resume(with: self.result ?? .failure(SQLiteError(code: 1, message: "the job did not run")))
        }
    }
}

/// The read-only connection and the thread it is used on.
private final class Reader: Sendable {
    let connection: Mutex<SQLiteConnection>
    let thread: NIOThreadPool

    init(path: String, cacheKibibytes: Int) throws {
        let connection = try SQLiteConnection(path: path)
        try connection.execute("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -\(max(cacheKibibytes, 64)); PRAGMA query_only = ON")
        self.connection = Mutex(connection)
        self.thread = NIOThreadPool(numberOfThreads: 1)
        self.thread.start()
    }
}
