import Logging
import Metrics
import PostgresNIO
import RekeyRPC
import ServiceLifecycle
import Synchronization

/// One step of a service's schema on PostgreSQL; versions count up from 1 and are never edited
/// once released, as with SQLite.
package struct PostgresMigration: Sendable {
    package var version: Int
    package var name: String
    /// Run in order, in one transaction with the version bump. Unqualified names land in the
    /// service's schema (the `search_path` is set to it).
    package var statements: [String]

    package init(version: Int, name: String, statements: [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }
}

/// A service's storage on PostgreSQL: postgres-nio's connection pool, every connection's
/// `search_path` set to the service's own schema, and the migrations applied at open.
///
/// Several replicas may open the same database at once: the migrations run under an advisory lock,
/// so exactly one applies them and the others find them done. A database whose schema is newer
/// than this program knows is refused, as with SQLite.
package final class PostgresServiceDatabase: Sendable {
    package let url: PostgresURL
    /// `rekey_tokens`, `rekey_directory`, `rekey_notifier`: each service keeps to its own.
    package let schema: String
    package let client: PostgresClient
    private let runner: Task<Void, Never>
    private let logger: Logger
    private let outageLog = RefusalLogLimiter()
    private let outage = Mutex<String?>(nil)

    /// Starts the pool (no connection is made yet); ``migrate(_:)`` makes the first.
    ///
    /// - Parameter maximumConnections: the pool's size for this replica.
    package init(url: PostgresURL, schema: String, maximumConnections: Int = 10, logger: Logger) throws {
        precondition(schema.utf8.allSatisfy { (0x61...0x7A).contains($0) || $0 == UInt8(ascii: "_") }, "schema names are lower-case letters and _")
        self.url = url
        self.schema = schema
        self.logger = logger
        var configuration = try url.clientConfiguration()
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        // Every connection reads and writes the service's schema and nothing else by default.
        configuration.options.additionalStartupParameters = [("search_path", schema), ("application_name", "rekey")]
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.runner = Task { await client.run() }
    }

    deinit {
        self.runner.cancel()
    }

    /// Stops the pool; calls after this fail.
    package func close() {
        self.runner.cancel()
    }

    /// Creates the schema if needed and applies the migrations not yet applied; returns the
    /// schema's version. Throws when the schema is newer than `migrations` know.
    @discardableResult
    package func migrate(_ migrations: [PostgresMigration]) async throws -> Int {
        let known = migrations.map(\.version).max() ?? 0
        do {
            return try await self.applyMigrations(migrations, known: known)
        } catch {
            throw Self.cause(error)
        }
    }

    private func applyMigrations(_ migrations: [PostgresMigration], known: Int) async throws -> Int {
        let schema = self.schema
        return try await self.client.withTransaction(logger: self.logger) { connection in
            // One replica at a time; the lock is released at commit.
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema)))", logger: self.logger)
            try await connection.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \(schema)"), logger: self.logger)
            try await connection.query(
                PostgresQuery(unsafeSQL: """
                    CREATE TABLE IF NOT EXISTS \(schema).schema_migrations (
                        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
                    """),
                logger: self.logger
            )
            var current = 0
            for try await version in try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT COALESCE(MAX(version), 0) FROM \(schema).schema_migrations"), logger: self.logger
            ).decode(Int.self) {
                current = version
            }
            guard current <= known else {
                throw PostgresSchemaError(
                    message: "the schema \(schema) at \(self.url) has version \(current), newer than this program knows (\(known)); run the newer version or restore a backup"
                )
            }
            for migration in migrations.sorted(by: { $0.version < $1.version }) where migration.version > current {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                var binds = PostgresBindings()
                binds.append(migration.version)
                binds.append(migration.name)
                try await connection.query(
                    PostgresQuery(unsafeSQL: "INSERT INTO \(schema).schema_migrations (version, name) VALUES ($1, $2)", binds: binds), logger: self.logger
                )
                current = migration.version
            }
            return current
        }
    }

    /// What ``ping(within:)`` found.
    package enum Ping: Sendable, Equatable {
        case answered
        /// Nothing came back in time: busy, or cut off.
        case unanswered(String)
        /// The server or the network said no (refused, reset, login refused).
        case failed(String)
    }

    /// Whether the database answers: `SELECT 1` on a pooled connection within `limit`; if that
    /// does not answer in time, a connection of its own (within twice the limit), which tells a
    /// database that is only busy (it connects) from one that is gone or refuses us (it does not,
    /// and says why). Not refused during a known outage: it is how the outage is found to be over.
    package func ping(within limit: Duration) async -> Ping {
        let pooled = await Self.within(limit) {
            _ = try await self.client.withConnection { connection in
                try await connection.query("SELECT 1", logger: self.logger)
            }
        }
        if pooled == true { return .answered }
        do {
            let answered = try await Self.throwingWithin(limit * 2) { try await self.connectOnce() }
            return answered == nil ? .unanswered("no answer within \(limit * 3)") : .answered
        } catch {
            return .failed(Self.describe(error))
        }
    }

    /// True when `body` finished within `limit`, false when it threw, nil when time ran out.
    private static func within(_ limit: Duration, _ body: @escaping @Sendable () async throws -> Void) async -> Bool? {
        do {
            return try await Self.throwingWithin(limit, body) == nil ? nil : true
        } catch {
            return false
        }
    }

    /// What `body` returned when it finished within `limit`, nil when time ran out; what it threw
    /// otherwise.
    private static func throwingWithin<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    /// What ``PostgresHealthWatch`` last found: while the database refuses us, calls fail at once
    /// with ``PostgresUnavailableError`` instead of waiting for a connection the pool cannot make.
    /// (A database that only does not answer in time is not refused: calls wait for it up to
    /// their deadline, as they would for a slow one.)
    package func noteOutage(_ reason: String?) {
        self.outage.withLock { $0 = reason }
    }

    private func refuseDuringOutage() throws {
        if let reason = self.outage.withLock({ $0 }) {
            throw PostgresUnavailableError(reason: reason)
        }
    }

    /// Runs `body` in a transaction on a pooled connection: committed when it returns, rolled back
    /// when it throws.
    ///
    /// Errors come unwrapped (the statement's own error, not postgres-nio's transaction wrapper);
    /// a lost or refused connection comes as ``PostgresUnavailableError`` (UNAVAILABLE to callers,
    /// who may try another replica).
    package func transaction<R: Sendable>(_ body: (PostgresConnection) async throws -> R) async throws -> R {
        try self.refuseDuringOutage()
        do {
            return try await self.client.withTransaction(logger: self.logger) { connection in
                try await body(connection)
            }
        } catch {
            throw self.classify(error)
        }
    }

    /// Runs `body` on a pooled connection, outside any transaction (each statement commits).
    package func withConnection<R: Sendable>(_ body: (PostgresConnection) async throws -> R) async throws -> R {
        try self.refuseDuringOutage()
        do {
            return try await self.client.withConnection { connection in
                try await body(connection)
            }
        } catch {
            throw self.classify(error)
        }
    }

    private func classify(_ error: any Error) -> any Error {
        let cause = Self.cause(error)
        guard let psql = cause as? PSQLError else { return cause }
        switch psql.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            let unavailable = PostgresUnavailableError(reason: Self.describe(psql))
            // An outage fails every call: one line per interval, with the count left out.
            let (log, suppressed) = self.outageLog.admit(peer: "database")
            if log {
                self.logger.warning("the database is unavailable", metadata: [
                    "db.url": "\(self.url)", "error": "\(unavailable.reason)", "db.failures_not_logged": "\(suppressed)",
                ])
            }
            return unavailable
        default:
            return cause
        }
    }

    /// ``migrate(_:)`` with a bound on how long the database may take to answer at all, and
    /// errors in words for the start-up log: "cannot open the database at URL: password
    /// authentication failed for user … (SQLSTATE 28P01)". The URL is shown without its password.
    @discardableResult
    package func open(_ migrations: [PostgresMigration], within limit: Duration = .seconds(30)) async throws -> Int {
        let version: Int?
        do {
            // One connection of its own first: a refused connection or a wrong password is an
            // error now, where the pool would keep trying in the background. A server too busy to
            // let us in within the connect timeout is tried again while `limit` lasts.
            try await self.connectOnce(retryingTimeoutsUntil: .now + limit)
            version = try await Self.throwingWithin(limit) { try await self.migrate(migrations) }
        } catch let error as PostgresSchemaError {
            throw error  // a schema newer than this program knows: its own message
        } catch {
            throw PostgresSchemaError(message: "cannot open the database at \(self.url): \(Self.describe(error))")
        }
        guard let version else {
            throw PostgresSchemaError(message: "cannot open the database at \(self.url): no answer within \(limit)")
        }
        return version
    }

    /// Listens on `channel` on a connection of its own (outside the pool, which it would hold
    /// forever): calls `started` once the server listens, then `notified` for each notification,
    /// until the task is cancelled (returns) or the connection fails (throws, described by
    /// ``describe(_:)``).
    package func listen(on channel: String, started: @Sendable () -> Void = {}, notified: @escaping @Sendable () -> Void) async throws {
        let connection = try await PostgresConnection.connect(configuration: try self.url.connectionConfiguration(), id: 1, logger: self.logger)
        do {
            try await connection.listen(on: channel) { notifications in
                started()
                for try await _ in notifications {
                    notified()
                }
            }
        } catch {
            try? await connection.close()
            if Task.isCancelled { return }
            throw error
        }
        try? await connection.close()
    }

    /// ``connectOnce()``, tried again while each try only runs out of time (connecting and
    /// logging in take longer than the connect timeout: a loaded server) and `deadline` has not
    /// passed. Anything else, a refusal or a wrong password, fails at once.
    private func connectOnce(retryingTimeoutsUntil deadline: ContinuousClock.Instant) async throws {
        while true {
            do {
                return try await self.connectOnce()
            } catch let error as PSQLError where Self.isConnectTimeout(error) && ContinuousClock.now < deadline {
                self.logger.warning("the database did not let us in within the connect timeout; trying again", metadata: [
                    "db.url": "\(self.url)", "db.schema": "\(self.schema)",
                ])
            }
        }
    }

    private static func isConnectTimeout(_ error: PSQLError) -> Bool {
        guard error.code == .connectionError, let underlying = error.underlying as? ChannelError else { return false }
        if case .connectTimeout = underlying { return true }
        return false
    }

    /// Opens and closes one connection outside the pool: fails with the server's reason when it
    /// refuses us.
    private func connectOnce() async throws {
        let connection = try await PostgresConnection.connect(configuration: try self.url.connectionConfiguration(), id: 0, logger: self.logger)
        try await connection.close()
    }

    /// What went wrong, in words: the server's own message and SQLSTATE when it sent one, the
    /// connection's failure otherwise. postgres-nio hides both from `description` on purpose.
    package static func describe(_ error: any Error) -> String {
        guard let error = Self.cause(error) as? PSQLError else { return "\(Self.cause(error))" }
        if let message = error.serverInfo?[.message] {
            return "\(message) (SQLSTATE \(error.serverInfo?[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying {
            return "\(error.code): \(underlying)"
        }
        return "\(error.code)"
    }

    /// The error inside postgres-nio's transaction wrapper: what the transaction's body, its
    /// BEGIN or its COMMIT threw.
    package static func cause(_ error: any Error) -> any Error {
        guard let wrapper = error as? PostgresTransactionError else { return error }
        return wrapper.closureError ?? wrapper.beginError ?? wrapper.commitError ?? wrapper.rollbackError ?? error
    }

    /// Whether `error` is PostgreSQL refusing a transaction it could not serialise (SQLSTATE
    /// 40001) or a deadlock (40P01): the caller should run the transaction again.
    package static func isRetryable(_ error: any Error) -> Bool {
        guard let error = Self.cause(error) as? PSQLError, let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }
}

/// The database cannot be reached now (refused, lost or closed connection): the call may succeed
/// later or on another replica.
package struct PostgresUnavailableError: Error, CustomStringConvertible, RPCErrorConvertible {
    package var reason: String
    package var description: String { "the database is unavailable: \(self.reason)" }
    /// What callers see: no detail of the database.
    package var rpcError: RPCError { RPCError(.unavailable, "the service's database is unavailable; try again") }
}

/// The database holds a schema this program cannot use.
package struct PostgresSchemaError: Error, CustomStringConvertible {
    package var message: String
    package var description: String { self.message }
}

/// Probes the database every `interval` (``PostgresServiceDatabase/ping(within:)``) for the health
/// service: after two failed probes in a row a replica answers NOT_SERVING, so that a load
/// balancer or the gateway's `/readyz` sees it, and when the database refuses us (rather than
/// only not answering in time) its calls fail at once with UNAVAILABLE; it serves again after the
/// first probe that passes. A database that is only slow still accepts a new connection, and is
/// no outage.
///
/// Metric: `rekey_database_unreachable` (1 while the probe fails, else 0).
package final class PostgresHealthWatch: Service, Sendable {
    private let database: PostgresServiceDatabase
    private let interval: Duration
    private let logger: Logger
    private let state = Mutex<String?>(nil)

    package init(database: PostgresServiceDatabase, interval: Duration = .seconds(2), logger: Logger) {
        self.database = database
        self.interval = interval
        self.logger = logger
    }

    /// What is wrong with the database, or nil while it answers.
    package var problem: String? { self.state.withLock { $0 } }

    package func run() async throws {
        let gauge = Gauge(label: "rekey_database_unreachable")
        gauge.record(0)
        try? await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                let ping = await self.database.ping(within: self.interval)
                failures = ping == .answered ? 0 : failures + 1
                // Two failed probes in a row before it counts: one can be a hiccup.
                var problem: String?
                var refused: String?
                switch ping {
                case .answered: break
                case .unanswered(let reason): problem = failures >= 2 ? reason : nil
                case .failed(let reason):
                    problem = failures >= 2 ? reason : nil
                    refused = problem
                }
                self.database.noteOutage(refused)
                gauge.record(problem == nil ? 0 : 1)
                let previous = self.state.withLock { state in
                    defer { state = problem }
                    return state
                }
                if let problem, previous == nil {
                    self.logger.error("the database does not answer; answering NOT_SERVING until it does", metadata: [
                        "db.url": "\(self.database.url)", "error": "\(problem)",
                    ])
                } else if problem == nil, previous != nil {
                    self.logger.notice("the database answers again; serving")
                }
                try await Task.sleep(for: self.interval)
            }
        }
    }
}
