import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import RekeyClock
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
        subcommands: [Serve.self, Healthcheck.self],
        defaultSubcommand: Serve.self
    )
}

/// Every setting, with its flag, environment variable and default, in one place.
struct ServeOptions: ParsableArguments {
    @Option(help: "A config file of `key = value` lines (keys as below, with underscores).")
    var config: String?

    @Option(help: "host:port to listen on. Env: REKEY_RESET_TOKEN_LISTEN. Default: 127.0.0.1:7102.")
    var listen: String?

    @Option(help: "Folder for tokens.sqlite. Env: REKEY_RESET_TOKEN_DATA_DIR. Default: ./data.")
    var dataDir: String?

    @Option(help: "Accepted service credentials, comma-separated (more than one while rotating). Env: REKEY_RESET_TOKEN_CREDENTIALS. Required; prefer the environment or the config file to a flag, which other users can see.")
    var credentials: String?

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

    @Option(help: "The largest RPC frame accepted. Env: REKEY_RESET_TOKEN_MAX_FRAME_BYTES. Default: 1048576.")
    var maxFrameBytes: String?

    @Option(help: "How long running calls may take to finish on shutdown. Env: REKEY_RESET_TOKEN_DRAIN_TIMEOUT. Default: 10s.")
    var drainTimeout: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical. Env: REKEY_RESET_TOKEN_LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(help: "text or json. Env: REKEY_RESET_TOKEN_LOG_FORMAT. Default: text.")
    var logFormat: String?

    var flags: [String: String?] {
        [
            "listen": self.listen, "data_dir": self.dataDir, "credentials": self.credentials,
            "reset_lifetime": self.resetLifetime, "verification_lifetime": self.verificationLifetime,
            "max_lifetime": self.maxLifetime, "limit_per_user": self.limitPerUser,
            "limit_per_address": self.limitPerAddress, "limit_per_admin": self.limitPerAdmin,
            "limit_window": self.limitWindow, "retention": self.retention, "purge_interval": self.purgeInterval,
            "max_frame_bytes": self.maxFrameBytes, "drain_timeout": self.drainTimeout,
            "log_level": self.logLevel, "log_format": self.logFormat,
        ]
    }
}

/// The validated settings of `serve`.
struct ResolvedSettings {
    var listen: HostAndPort
    var dataDirectory: String
    var credentials: [String]
    var service: TokenServiceConfiguration
    var maxFrameBytes: Int
    var drainTimeout: Duration
    var logLevel: Logger.Level
    var logFormat: LogFormat

    init(_ options: ServeOptions) throws {
        let flags = options.flags
        let settings = try Settings(service: "RESET_TOKEN", flags: flags, knownKeys: Set(flags.keys), configFile: options.config)
        self.listen = try settings.address("listen", default: HostAndPort(host: "127.0.0.1", port: 7102))
        self.dataDirectory = try settings.string("data_dir", default: "./data")
        self.credentials = try settings.list("credentials", default: nil)
        if let short = self.credentials.first(where: { $0.utf8.count < 16 }) {
            throw SettingsError("a service credential must have at least 16 characters (one has \(short.utf8.count))")
        }
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
        self.maxFrameBytes = try settings.integer("max_frame_bytes", default: 1 << 20, range: 1024...(64 << 20))
        self.drainTimeout = try settings.duration("drain_timeout", default: .seconds(10), range: .zero ... .seconds(3600))
        self.logLevel = try settings.value("log_level", default: .info, expected: "trace, debug, info, notice, warning, error or critical") {
            Logger.Level(rawValue: $0)
        }
        self.logFormat = try settings.value("log_format", default: .text, expected: "text or json") { LogFormat(rawValue: $0) }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the service (the default).")

    @OptionGroup var options: ServeOptions

    func run() async throws {
        let settings: ResolvedSettings
        do {
            settings = try ResolvedSettings(self.options)
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        settings.logFormat.bootstrap(level: settings.logLevel)
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = Logger(label: "rekey.reset-token")

        var isDirectory: ObjCBool = false
        do {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw ValidationError("cannot create the data folder \(settings.dataDirectory) (data_dir): \(error.localizedDescription)")
        }
        guard FileManager.default.fileExists(atPath: settings.dataDirectory, isDirectory: &isDirectory), isDirectory.boolValue,
              FileManager.default.isWritableFile(atPath: settings.dataDirectory)
        else {
            throw ValidationError("the data folder \(settings.dataDirectory) (data_dir) is not a writable folder")
        }
        let path = (settings.dataDirectory as NSString).appendingPathComponent("tokens.sqlite")
        // NORMAL durability: in WAL mode a commit survives a crash of the process; on power loss the
        // last tokens may be lost, which costs a user one more request, never a wrong answer.
        let database = try SQLiteDatabase(path: path, migrations: TokenStore.migrations, durability: .normal)
        let store = TokenStore(configuration: settings.service, clock: SystemWallClock())
        let schemaVersion = try await database.schemaVersion()
        logger.info("database ready", metadata: ["db.path": "\(path)", "db.schema_version": "\(schemaVersion)"])

        let runner = RPCServiceRunner(
            name: "rekey-reset-token",
            server: RPCServer.Configuration(
                host: settings.listen.host,
                port: settings.listen.port,
                maxFrameSize: settings.maxFrameBytes,
                drainTimeout: settings.drainTimeout
            ),
            credentials: settings.credentials,
            services: [TokenService(database: database, store: store)],
            healthServiceNames: [Rekey_Tokens_V1_Tokens.name],
            backgroundServices: [RetentionPurger(database: database, store: store, logger: logger)],
            logger: logger
        )
        try await runner.run()
    }
}

struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 if the service at ADDRESS answers SERVING, 1 otherwise.")

    @Option(help: "host:port of the service.")
    var address: String = "127.0.0.1:7102"

    func run() async throws {
        guard let address = HostAndPort(parsing: self.address) else {
            throw ValidationError("--address must be host:port, got \(self.address)")
        }
        let status = await HealthCheckCommand.run(address: address, service: "")
        throw ExitCode(status)
    }
}
