import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import RekeyClock
import RekeyPostgres
import RekeyRPCNIO
import RekeySQLite
import RekeyServiceKit
import RekeyTokenService
import RekeyTokensAPI

@main
struct ResetTokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey-reset-token",
        abstract: "Rekey's reset-token service: single-use reset and verification tokens, rate limits and their history.",
        subcommands: [Serve.self, Healthcheck.self, MigrateTo.self],
        defaultSubcommand: Serve.self
    )
}

/// The settings of this service beyond the common ones, with flag, environment variable and default.
struct ResetTokenOptions: ParsableArguments {
    @Option(help: "Password reset token lifetime. Env: REKEY_RESET_TOKEN_RESET_LIFETIME. Default: 30m.")
    var resetLifetime: String?

    @Option(help: "Email verification token lifetime. Env: REKEY_RESET_TOKEN_VERIFICATION_LIFETIME. Default: 24h.")
    var verificationLifetime: String?

    @Option(help: "The longest lifetime a caller may ask for. Env: REKEY_RESET_TOKEN_MAX_LIFETIME. Default: 72h.")
    var maxLifetime: String?

    @Option(help: "Tokens per user and purpose per window. Env: REKEY_RESET_TOKEN_LIMIT_PER_USER. Default: 5.")
    var limitPerUser: String?

    @Option(help: "Tokens per client address per window (users' own requests). Env: REKEY_RESET_TOKEN_LIMIT_PER_ADDRESS. Default: 20.")
    var limitPerAddress: String?

    @Option(help: "Tokens per admin per window (admin sends). Env: REKEY_RESET_TOKEN_LIMIT_PER_ADMIN. Default: 30.")
    var limitPerAdmin: String?

    @Option(help: "The rate-limit window. Env: REKEY_RESET_TOKEN_LIMIT_WINDOW. Default: 1h.")
    var limitWindow: String?

    @Option(help: "How long used and expired tokens and the history are kept. Env: REKEY_RESET_TOKEN_RETENTION. Default: 30d.")
    var retention: String?

    @Option(help: "How often old history is purged. Env: REKEY_RESET_TOKEN_PURGE_INTERVAL. Default: 1h.")
    var purgeInterval: String?

    @Option(help: "postgres://user:password@host:5432/database?sslmode=… to keep tokens in PostgreSQL (schema rekey_tokens; any number of replicas) instead of SQLite in the data folder (one process). Env: REKEY_RESET_TOKEN_DATABASE. Default: SQLite.")
    var database: String?

    @Option(help: "PostgreSQL connections this replica may open. Env: REKEY_RESET_TOKEN_DATABASE_POOL_SIZE. Default: 10.")
    var databasePoolSize: String?

    var flags: [String: String?] {
        [
            "reset_lifetime": self.resetLifetime, "verification_lifetime": self.verificationLifetime,
            "max_lifetime": self.maxLifetime, "limit_per_user": self.limitPerUser,
            "limit_per_address": self.limitPerAddress, "limit_per_admin": self.limitPerAdmin,
            "limit_window": self.limitWindow, "retention": self.retention, "purge_interval": self.purgeInterval,
            "database": self.database, "database_pool_size": self.databasePoolSize,
        ]
    }
}

/// The validated settings of `serve`.
struct ResolvedSettings {
    var common: CommonServiceSettings
    var service: TokenServiceConfiguration
    /// PostgreSQL and this replica's pool size; nil for SQLite in the data folder.
    var postgres: (url: PostgresURL, poolSize: Int)?

    init(common options: CommonServiceOptions, _ own: ResetTokenOptions) throws {
        let flags = options.flags.merging(own.flags) { $1 }
        let settings = try Settings(service: "RESET_TOKEN", flags: flags, knownKeys: Set(flags.keys), configFile: options.config)
        self.common = try CommonServiceSettings(settings, workload: "reset-token", defaultPort: 7102)
        let window = try settings.duration("limit_window", default: .seconds(3600), range: .seconds(1) ... .seconds(86400 * 7))
        let lifetimes = Duration.seconds(1) ... Duration.seconds(86400 * 30)
        self.service = TokenServiceConfiguration(
            resetLifetime: try settings.duration("reset_lifetime", default: .seconds(1800), range: lifetimes),
            verificationLifetime: try settings.duration("verification_lifetime", default: .seconds(86400), range: lifetimes),
            maxLifetime: try settings.duration("max_lifetime", default: .seconds(72 * 3600), range: lifetimes),
            perUser: .init(limit: try settings.integer("limit_per_user", default: 5, range: 1...100_000), window: window),
            perClientAddress: .init(limit: try settings.integer("limit_per_address", default: 20, range: 1...1_000_000), window: window),
            perAdmin: .init(limit: try settings.integer("limit_per_admin", default: 30, range: 1...1_000_000), window: window),
            retention: try settings.duration("retention", default: .seconds(30 * 86400), range: .seconds(60) ... .seconds(3650 * 86400)),
            purgeInterval: try settings.duration("purge_interval", default: .seconds(3600), range: .seconds(1) ... .seconds(86400 * 7))
        )
        if let problem = self.service.problem() {
            throw SettingsError("the settings do not work together: \(problem)")
        }
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
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the service (the default).")

    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: ResetTokenOptions

    func run() async throws {
        let settings: ResolvedSettings
        var path = ""
        do {
            settings = try ResolvedSettings(common: self.options, self.own)
            if settings.postgres == nil {
                path = try settings.common.databasePath("tokens.sqlite")
            }
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        settings.common.logFormat.bootstrap(level: settings.common.logLevel)
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = Logger(label: "rekey.reset-token")
        let metrics = settings.common.bootstrapObservability(logger: logger)

        let repository: any TokenRepository
        var database: SQLiteDatabase?
        var watch: PostgresHealthWatch?
        if let (url, poolSize) = settings.postgres {
            let postgres = try PostgresServiceDatabase(url: url, schema: PostgresTokenRepository.schema, maximumConnections: poolSize, logger: logger)
            let schemaVersion = try await postgres.open(PostgresTokenRepository.migrations)
            logger.info("database ready", metadata: [
                "db.url": "\(url)", "db.schema": "\(PostgresTokenRepository.schema)", "db.schema_version": "\(schemaVersion)", "db.pool_size": "\(poolSize)",
            ])
            repository = PostgresTokenRepository(database: postgres)
            watch = PostgresHealthWatch(database: postgres, logger: logger)
        } else {
            // NORMAL durability: in WAL mode a commit survives a crash of the process; on power loss
            // the last tokens may be lost, which costs a user one more request, never a wrong answer.
            let sqlite = try SQLiteDatabase(path: path, migrations: SQLiteTokenRepository.migrations, durability: .normal)
            let schemaVersion = try await sqlite.schemaVersion()
            logger.info("database ready", metadata: ["db.path": "\(path)", "db.schema_version": "\(schemaVersion)"])
            repository = SQLiteTokenRepository(database: sqlite)
            database = sqlite
        }
        let store = TokenStore(configuration: settings.service, clock: SystemWallClock(), repository: repository)

        let runner = RPCServiceRunner(
            name: "rekey-reset-token",
            server: settings.common.serverConfiguration,
            credentials: settings.common.credentials,
            callers: TokenService.callers,
            services: [TokenService(store: store)],
            healthServiceNames: [Rekey_Tokens_V1_Tokens.name],
            backgroundServices: [RetentionPurger(store: store, logger: logger)] + (watch.map { [$0] } ?? []),
            metrics: metrics,
            database: database,
            healthProblem: { [watch] in watch?.problem },
            logger: logger
        )
        try await runner.run()
    }
}

struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 if the service at ADDRESS answers SERVING, 1 otherwise.")

    @Option(help: "host:port of the service.")
    var address: String = "127.0.0.1:7102"

    /// The service's own settings: with mutual TLS, its certificate is presented.
    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: ResetTokenOptions

    func run() async throws {
        try await HealthCheckCommand.run(
            addressText: self.address, service: "RESET_TOKEN", workload: "reset-token", flags: self.options.flags.merging(self.own.flags) { $1 }, config: self.options.config
        )
    }
}

struct MigrateTo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-to",
        abstract: "Copy the SQLite store of the data folder into PostgreSQL (offline: stop the service first).",
        discussion: """
            Copies every token and every history line into the schema rekey_tokens of an empty \
            database, in one transaction, and compares the counts before committing. Then point \
            the service at the database with `database = postgres://…` and start it.
            """
    )

    @Argument(help: "postgres://user:password@host:5432/database?sslmode=…")
    var url: String

    @Option(help: "The data folder holding tokens.sqlite. Env: REKEY_RESET_TOKEN_DATA_DIR. Default: ./data.")
    var dataDir: String?

    func run() async throws {
        do {
            let migration = try StoreMigration(url: self.url, dataDir: self.dataDir, environmentKey: "REKEY_RESET_TOKEN_DATA_DIR", file: "tokens.sqlite")
            let copied = try await migration.run(
                schema: PostgresTokenRepository.schema, migrations: PostgresTokenRepository.migrations, label: "rekey.reset-token.migrate-to"
            ) { database, logger in
                try await TokenStoreCopy.copy(from: migration.source, to: database, logger: logger)
            }
            print("copied \(copied.tokens) tokens and \(copied.events) history lines from \(migration.source) to \(migration.target) (schema \(PostgresTokenRepository.schema)); the counts match")
        } catch let refusal as StoreCopyRefusal {
            throw ValidationError(refusal.description)
        }
    }
}