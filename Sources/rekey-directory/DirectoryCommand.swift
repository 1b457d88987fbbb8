import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import RekeyClock
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyDirectoryService
import RekeyPostgres
import RekeyRPCNIO
import RekeySQLite
import RekeyServiceKit

@main
struct DirectoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey-directory",
        abstract: "Rekey's directory: users, organizations, roles, passwords, API keys and sessions.",
        subcommands: [Serve.self, BootstrapAdmin.self, CreateRole.self, Import.self, Healthcheck.self, MigrateTo.self],
        defaultSubcommand: Serve.self
    )
}

/// The settings of this service beyond the common ones.
struct DirectoryOptions: ParsableArguments {
    @Option(help: "scrypt cost as log2(N) (r=8, p=1). Env: REKEY_DIRECTORY_SCRYPT_LOG_N. Default: 17 (about 0.5 s and 128 MiB per hash); lower only for tests.")
    var scryptLogN: String?

    @Option(help: "Threads for password hashing. Env: REKEY_DIRECTORY_HASHING_THREADS. Default: the number of CPUs.")
    var hashingThreads: String?

    @Option(help: "Password checks one client address may have waiting or running at once; more are refused at once (429). Env: REKEY_DIRECTORY_HASHING_SHARE. Default: the hashing threads.")
    var hashingShare: String?

    @Option(help: "Sign-on session lifetime. Env: REKEY_DIRECTORY_SESSION_LIFETIME. Default: 12h.")
    var sessionLifetime: String?

    @Option(help: "A sign-on session unused this long ends. Env: REKEY_DIRECTORY_SESSION_IDLE_TIMEOUT. Default: 30m.")
    var sessionIdleTimeout: String?

    @Option(help: "Default admin API key lifetime. Env: REKEY_DIRECTORY_API_KEY_LIFETIME. Default: 365d.")
    var apiKeyLifetime: String?

    @Option(help: "Failed sign-ins allowed per client address per window. Env: REKEY_DIRECTORY_SIGN_IN_LIMIT. Default: 20.")
    var signInLimit: String?

    @Option(help: "The window of the sign-in limits. Env: REKEY_DIRECTORY_SIGN_IN_WINDOW. Default: 15m.")
    var signInWindow: String?

    @Option(help: "Failed sign-ins per account before each further one waits. Env: REKEY_DIRECTORY_SIGN_IN_ACCOUNT_FREE. Default: 5.")
    var signInAccountFree: String?

    @Option(help: "The first wait past those; it doubles with each failure, up to the window. Env: REKEY_DIRECTORY_SIGN_IN_ACCOUNT_DELAY. Default: 1s.")
    var signInAccountDelay: String?

    @Option(help: "postgres://user:password@host:5432/database?sslmode=… to keep the directory in PostgreSQL (schema rekey_directory; any number of replicas) instead of SQLite in the data folder (one process). Env: REKEY_DIRECTORY_DATABASE. Default: SQLite.")
    var database: String?

    @Option(help: "PostgreSQL connections this replica may open (each running one piece of work at a time). Env: REKEY_DIRECTORY_DATABASE_POOL_SIZE. Default: 10.")
    var databasePoolSize: String?

    var flags: [String: String?] {
        [
            "scrypt_log_n": self.scryptLogN, "hashing_threads": self.hashingThreads, "hashing_share": self.hashingShare,
            "session_lifetime": self.sessionLifetime, "session_idle_timeout": self.sessionIdleTimeout, "api_key_lifetime": self.apiKeyLifetime,
            "sign_in_limit": self.signInLimit, "sign_in_window": self.signInWindow,
            "sign_in_account_free": self.signInAccountFree, "sign_in_account_delay": self.signInAccountDelay,
            "database": self.database, "database_pool_size": self.databasePoolSize,
        ]
    }
}

struct DirectorySettings {
    var common: CommonServiceSettings
    var scrypt: PasswordHasher.Parameters
    var hashingThreads: Int
    var hashingShare: Int
    var store: DirectoryStore.Configuration
    /// PostgreSQL and this replica's pool size; nil for SQLite in the data folder.
    var postgres: (url: PostgresURL, poolSize: Int)?

    init(common options: CommonServiceOptions, _ own: DirectoryOptions, requireCredentials: Bool = true) throws {
        let flags = options.flags.merging(own.flags) { $1 }
        let settings = try Settings(service: "DIRECTORY", flags: flags, knownKeys: Set(flags.keys), configFile: options.config)
        self.common = try CommonServiceSettings(settings, workload: "directory", defaultPort: 7101, serving: requireCredentials)
        self.scrypt = PasswordHasher.Parameters(logN: try settings.integer("scrypt_log_n", default: 17, range: 4...22), r: 8, p: 1)
        self.hashingThreads = try settings.integer(
            "hashing_threads", default: ProcessInfo.processInfo.activeProcessorCount, range: 1...256
        )
        self.hashingShare = try settings.integer("hashing_share", default: self.hashingThreads, range: 1...10_000)
        self.store = DirectoryStore.Configuration(
            sessionLifetime: try settings.duration("session_lifetime", default: .seconds(12 * 3600), range: .seconds(60) ... .seconds(90 * 86400)),
            sessionIdleTimeout: try settings.duration("session_idle_timeout", default: .seconds(30 * 60), range: .seconds(60) ... .seconds(90 * 86400)),
            apiKeyLifetime: try settings.duration("api_key_lifetime", default: .seconds(365 * 86400), range: .seconds(60) ... .seconds(3650 * 86400)),
            signInLimit: try settings.integer("sign_in_limit", default: 20, range: 1...100_000),
            signInWindow: try settings.duration("sign_in_window", default: .seconds(900), range: .seconds(1) ... .seconds(86400)),
            signInAccountFreeAttempts: try settings.integer("sign_in_account_free", default: 5, range: 1...1000),
            signInAccountDelay: try settings.duration("sign_in_account_delay", default: .seconds(1), range: .milliseconds(10) ... .seconds(86400))
        )
        // The value is never repeated in an error: it holds the database password.
        if let (text, origin) = settings.raw("database"), !text.isEmpty {
            do {
                let url = try PostgresURL(text)
                self.postgres = (url, try settings.integer("database_pool_size", default: 10, range: 1...500))
            } catch let error as PostgresURLError {
                throw SettingsError("invalid `database` (from \(origin)): \(error)")
            }
        }
    }

    /// The settings and database for a command that works on the database without serving it
    /// (no service credential needed); bad settings become a usage error.
    static func offline(common options: CommonServiceOptions, _ own: DirectoryOptions) async throws -> (DirectorySettings, DirectoryDatabase) {
        let settings: DirectorySettings
        do {
            settings = try DirectorySettings(common: options, own, requireCredentials: false)
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        var logger = Logger(label: "rekey.directory")
        logger.logLevel = .warning
        return (settings, try await settings.openDatabase(logger: logger).database)
    }

    /// The database, its schema brought up to date; with PostgreSQL, the watch that tells health
    /// when it stops answering.
    func openDatabase(logger: Logger) async throws -> (database: DirectoryDatabase, watch: PostgresHealthWatch?) {
        if let (url, poolSize) = self.postgres {
            let postgres = try PostgresServiceDatabase(url: url, schema: DirectoryStore.postgresSchema, maximumConnections: poolSize, logger: logger)
            let schemaVersion = try await postgres.open(DirectoryStore.postgresMigrations)
            logger.info("database ready", metadata: [
                "db.url": "\(url)", "db.schema": "\(DirectoryStore.postgresSchema)", "db.schema_version": "\(schemaVersion)", "db.pool_size": "\(poolSize)",
            ])
            let database = PostgresSQLDatabase(database: postgres, threads: poolSize, logger: logger)
            return (.postgres(database), PostgresHealthWatch(database: postgres, logger: logger))
        }
        let path: String
        do {
            path = try self.common.databasePath("directory.sqlite")
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        let sqlite = try SQLiteDatabase(path: path, migrations: DirectoryStore.migrations, cacheKibibytes: 64 * 1024)
        let schemaVersion = try await sqlite.schemaVersion()
        logger.info("database ready", metadata: ["db.path": "\(path)", "db.schema_version": "\(schemaVersion)"])
        return (.sqlite(sqlite), nil)
    }

    /// The store, after bringing the database's search index up to date.
    func openStore(_ database: DirectoryDatabase) async throws -> DirectoryStore {
        let store = DirectoryStore(configuration: self.store, clock: SystemWallClock())
        let rebuilt = try await database.withConnection { try store.rebuildSearchPrefixesIfNeeded(in: $0) }
        let skeletons = try await database.withConnection { try store.fillLookAlikeSkeletons(in: $0) }
        if skeletons > 0 {
            Logger(label: "rekey.directory").notice("look-alike skeletons computed", metadata: ["emails": "\(skeletons)"])
        }
        if rebuilt > 0 {
            Logger(label: "rekey.directory").notice("search index rebuilt", metadata: ["users": "\(rebuilt)"])
        }
        return store
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the service (the default).")

    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: DirectoryOptions

    func run() async throws {
        let settings: DirectorySettings
        do {
            settings = try DirectorySettings(common: self.options, self.own)
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        settings.common.logFormat.bootstrap(level: settings.common.logLevel)
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = Logger(label: "rekey.directory")
        let metrics = settings.common.bootstrapObservability(logger: logger)
        if settings.scrypt != .production {
            logger.warning("scrypt cost is not the production default", metadata: ["scrypt.log_n": "\(settings.scrypt.logN)"])
        }
        let (database, watch) = try await settings.openDatabase(logger: logger)
        let store = try await settings.openStore(database)
        let hashing = HashingPool(hasher: PasswordHasher(parameters: settings.scrypt), threads: settings.hashingThreads, sharePerClient: settings.hashingShare)
        let runner = RPCServiceRunner(
            name: "rekey-directory",
            server: settings.common.serverConfiguration,
            credentials: settings.common.credentials,
            callers: DirectoryService.callers,
            services: [DirectoryService(database: database, store: store, hashing: hashing)],
            healthServiceNames: [Rekey_Directory_V1_Directory.name],
            backgroundServices: watch.map { [$0] } ?? [],
            metrics: metrics,
            database: database.sqlite,
            healthProblem: { [watch] in watch?.problem },
            logger: logger
        )
        try await runner.run()
    }
}

struct BootstrapAdmin: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bootstrap-admin",
        abstract: "Create the first owner and print an API key for them, once. Works offline, on the database."
    )

    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: DirectoryOptions

    @Option(help: "The owner's email address.")
    var email: String

    @Option(help: "The owner's full name.")
    var name: String

    func run() async throws {
        let (settings, database) = try await DirectorySettings.offline(common: self.options, self.own)
        let store = try await settings.openStore(database)
        let (email, name) = (self.email, self.name)
        do {
            let (user, key) = try await database.withConnection { connection in
                try connection.transaction { connection in
                    guard try !store.hasOwner(in: connection) else {
                        throw DirectoryError.failedPrecondition("an owner exists already; add admins through the admin API")
                    }
                    var new = DirectoryStore.NewUser(name: name, role: "owner", email: email)
                    new.emailVerified = true
                    let user = try store.createUser(new, actor: .system, in: connection)
                    let (key, _) = try store.createAPIKey(user.id, name: "bootstrap", lifetime: nil, actor: .system, in: connection)
                    return (user, key)
                }
            }
            print("Created owner \(user.name) <\(email)> (\(user.id)).")
            print("API key (shown once, keep it safe): \(key)")
        } catch let error as DirectoryError {
            throw ValidationError(error.rpcError.message)
        }
    }
}

struct CreateRole: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create-role",
        abstract: "Create a custom role with the given permissions (such as a helpdesk agent role with users.manage). Works offline, on the database."
    )

    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: DirectoryOptions

    @Option(help: "The role's name: lower-case letters, digits, '-' and '_', 2-40 characters.")
    var name: String

    @Option(name: .customLong("permission"), help: "A permission the role carries (users.manage); repeat for several.")
    var permissions: [String] = []

    @Flag(help: "A staff role (ranks as an agent and may use the admin console); without it, a customer role.")
    var staff = false

    func run() async throws {
        let (settings, database) = try await DirectorySettings.offline(common: self.options, self.own)
        let store = try await settings.openStore(database)
        let (name, permissions, staff) = (self.name, self.permissions, self.staff)
        do {
            let role = try await database.withConnection { connection in
                try store.createRole(name: name, permissions: permissions, staff: staff, actor: .system, in: connection)
            }
            print("Created the role \(role.name)\(role.staff ? " (staff)" : ""): \(role.permissions.isEmpty ? "no permissions" : role.permissions.joined(separator: ", ")).")
        } catch let error as DirectoryError {
            throw ValidationError(error.rpcError.message)
        }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create users from a CSV file (name,email,role,organization). Works offline, on the database.",
        discussion: """
            The first line must be the header name,email,role,organization (organization may be left out; \
            it takes an organization's name or id). All-or-nothing unless --partial: when any row is refused, \
            nothing is written. Prints one line per refused row; exits 1 when nothing was written.
            """
    )

    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: DirectoryOptions

    @Argument(help: "The CSV file (UTF-8).")
    var file: String

    @Flag(help: "Create the good rows even when others are refused.")
    var partial = false

    @Option(help: "Refuse files with more data rows than this.")
    var maxRows = 1_000_000

    func run() async throws {
        let (settings, database) = try await DirectorySettings.offline(common: self.options, self.own)
        guard let data = FileManager.default.contents(atPath: self.file) else {
            throw ValidationError("cannot read \(self.file)")
        }
        let store = try await settings.openStore(database)
        let (partial, maxRows) = (self.partial, self.maxRows)
        let started = ContinuousClock.now
        let report: DirectoryStore.ImportReport
        do {
            report = try await database.withConnection { connection in
                try store.importUsers(csv: Array(data), partial: partial, maxRows: maxRows, actor: .system, in: connection)
            }
        } catch let error as DirectoryError {
            throw ValidationError(error.rpcError.message)
        }
        for row in report.rows {
            if let error = row.error {
                print("line \(row.line): \(error)")
            }
        }
        let elapsed = ContinuousClock.now - started
        if report.committed {
            print("Created \(report.created) users; \(report.refused) rows refused (\(elapsed.formatted(.units(allowed: [.seconds], fractionalPart: .show(length: 1))))).")
        } else {
            print("Nothing was written: \(report.refused) of \(report.rows.count) rows refused\(partial ? "" : " (all-or-nothing; --partial creates the good rows)").")
            throw ExitCode(1)
        }
    }
}

struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 if the service at ADDRESS answers SERVING, 1 otherwise.")

    @Option(help: "host:port of the service.")
    var address: String = "127.0.0.1:7101"

    /// The service's own settings: with mutual TLS, its certificate is presented.
    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: DirectoryOptions

    func run() async throws {
        try await HealthCheckCommand.run(
            addressText: self.address, service: "DIRECTORY", workload: "directory", flags: self.options.flags.merging(self.own.flags) { $1 }, config: self.options.config
        )
    }
}

struct MigrateTo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-to",
        abstract: "Copy the SQLite directory of the data folder into PostgreSQL (offline: stop the service first).",
        discussion: """
            Copies every user, address, role, organization, API key, session, audit line and staged \
            import into the schema rekey_directory of an empty database, in one transaction, builds \
            the search index there, and compares each table's count before committing. Then point \
            the service at the database with `database = postgres://…` and start it.
            """
    )

    @Argument(help: "postgres://user:password@host:5432/database?sslmode=…")
    var url: String

    @Option(help: "The data folder holding directory.sqlite. Env: REKEY_DIRECTORY_DATA_DIR. Default: ./data.")
    var dataDir: String?

    func run() async throws {
        do {
            let migration = try StoreMigration(url: self.url, dataDir: self.dataDir, environmentKey: "REKEY_DIRECTORY_DATA_DIR", file: "directory.sqlite")
            let copied = try await migration.run(
                schema: DirectoryStore.postgresSchema, migrations: DirectoryStore.postgresMigrations, label: "rekey.directory.migrate-to"
            ) { database, logger in
                try await DirectoryStoreCopy.copy(from: migration.source, to: database, logger: logger)
            }
            let counts = copied.filter { $0.rows > 0 }.map { "\($0.rows) \(DirectoryStoreCopy.words[$0.table] ?? $0.table)" }.joined(separator: ", ")
            print("copied \(counts) from \(migration.source) to \(migration.target) (schema \(DirectoryStore.postgresSchema)); the counts match")
        } catch let refusal as StoreCopyRefusal {
            throw ValidationError(refusal.description)
        }
    }
}
