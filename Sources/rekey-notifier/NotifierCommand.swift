import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import RekeyClock
import RekeyCrypto
import RekeyInput
import RekeyNotifierAPI
import RekeyNotifierService
import RekeyPostgres
import RekeyRPCNIO
import RekeySQLite
import RekeyServiceKit
import ServiceLifecycle

@main
struct NotifierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey-notifier",
        abstract: "Rekey's notifier: a durable outbox of email, SMTP or maildir delivery with retries, bounces, suppressions and history.",
        subcommands: [Serve.self, Healthcheck.self, DKIMCommand.self, MigrateTo.self],
        defaultSubcommand: Serve.self
    )
}

/// The settings of this service beyond the common ones.
struct NotifierOptions: ParsableArguments {
    @Option(help: "smtp or maildir. Env: REKEY_NOTIFIER_TRANSPORT. Default: maildir (files in mail_dir; nothing leaves the machine).")
    var transport: String?

    @Option(help: "The maildir folder for the maildir transport. Env: REKEY_NOTIFIER_MAIL_DIR. Default: DATA_DIR/mail.")
    var mailDir: String?

    @Option(help: "host:port of the SMTP server (a relay). Env: REKEY_NOTIFIER_SMTP_SERVER. Default: 127.0.0.1:25.")
    var smtpServer: String?

    @Option(help: "User name for SMTP AUTH (PLAIN or LOGIN); none when not set. Env: REKEY_NOTIFIER_SMTP_USERNAME.")
    var smtpUsername: String?

    @Option(help: "Password for SMTP AUTH. Env: REKEY_NOTIFIER_SMTP_PASSWORD (prefer the environment or the config file to a flag).")
    var smtpPassword: String?

    @Option(help: "The name given in EHLO. Env: REKEY_NOTIFIER_SMTP_HELO. Default: this machine's host name.")
    var smtpHelo: String?

    @Option(help: "STARTTLS: opportunistic (when offered), required, or off. Env: REKEY_NOTIFIER_SMTP_TLS. Default: opportunistic.")
    var smtpTls: String?

    @Option(help: "PEM file of CA certificates to trust for the relay instead of the system's. Env: REKEY_NOTIFIER_SMTP_CA_FILE.")
    var smtpCaFile: String?

    @Option(help: "The name the relay's certificate must carry. Env: REKEY_NOTIFIER_SMTP_TLS_SERVER_NAME. Default: the host of smtp_server.")
    var smtpTlsServerName: String?

    @Option(help: "Timeout for the connection and each SMTP reply. Env: REKEY_NOTIFIER_SMTP_TIMEOUT. Default: 60s.")
    var smtpTimeout: String?

    @Option(help: "Connections (and delivery workers) at once. Env: REKEY_NOTIFIER_CONCURRENCY. Default: 4.")
    var concurrency: String?

    @Option(help: "The sender address (From:). Env: REKEY_NOTIFIER_FROM_ADDRESS. Default: rekey@localhost.")
    var fromAddress: String?

    @Option(help: "The sender name. Env: REKEY_NOTIFIER_FROM_NAME. Default: Rekey.")
    var fromName: String?

    @Option(help: "The product name at the top of every email, as on the pages. Env: REKEY_NOTIFIER_BRAND_NAME. Default: the sender name.")
    var brandName: String?

    @Option(help: "The accent colour of the email (its button), as #rrggbb. Env: REKEY_NOTIFIER_BRAND_COLOR. Default: #2f5fd0.")
    var brandColor: String?

    @Option(help: "The domain of Message-ID headers. Env: REKEY_NOTIFIER_MESSAGE_ID_DOMAIN. Default: the sender address's domain.")
    var messageIdDomain: String?

    @Option(help: "Delays after the 1st, 2nd, ... temporary failure; the last repeats. Env: REKEY_NOTIFIER_RETRY_SCHEDULE. Default: 1m,5m,15m,1h.")
    var retrySchedule: String?

    @Option(help: "A message still failing this long after it was queued fails. Env: REKEY_NOTIFIER_MAX_AGE. Default: 24h.")
    var maxAge: String?

    @Option(help: "How often idle workers look for due messages. Env: REKEY_NOTIFIER_POLL_INTERVAL. Default: 1s.")
    var pollInterval: String?

    @Option(help: "A folder of templates that replace the built-in ones (TEMPLATE.LOCALE.PART.mustache). Env: REKEY_NOTIFIER_TEMPLATES_DIR.")
    var templatesDir: String?

    @Option(help: "postgres://user:password@host:5432/database?sslmode=… to keep the outbox in PostgreSQL (schema rekey_notifier; any number of replicas) instead of SQLite in the data folder (one process). Env: REKEY_NOTIFIER_DATABASE. Default: SQLite.")
    var database: String?

    @Option(help: "PostgreSQL connections this replica may open (at least concurrency + 2). Env: REKEY_NOTIFIER_DATABASE_POOL_SIZE. Default: 10.")
    var databasePoolSize: String?

    @Option(help: "How long a worker holds a message it sends without renewing its claim (renewed every third of it); a replica that dies hands its messages on after this. Env: REKEY_NOTIFIER_CLAIM_LEASE. Default: 60s.")
    var claimLease: String?

    @Option(help: "PEM private key(s) to DKIM-sign every message with (RSA 2048+ or Ed25519), comma-separated to sign with several. Env: REKEY_NOTIFIER_DKIM_KEY. Default: none (unsigned).")
    var dkimKey: String?

    @Option(help: "The DKIM selector of each key in dkim_key, in the same order. Env: REKEY_NOTIFIER_DKIM_SELECTOR.")
    var dkimSelector: String?

    @Option(help: "The DKIM signing domain (d=). Env: REKEY_NOTIFIER_DKIM_DOMAIN. Default: the sender address's domain.")
    var dkimDomain: String?

    @Option(help: "The DNS server the sending-domain check asks, host or host:port. Env: REKEY_NOTIFIER_DNS_SERVER. Default: the first nameserver in /etc/resolv.conf.")
    var dnsServer: String?

    @Option(help: "Give each message its own envelope sender, bounces+<message id>@DOMAIN (VERP), so a bounce names its message. Env: REKEY_NOTIFIER_BOUNCE_DOMAIN. Default: none (MAIL FROM is from_address).")
    var bounceDomain: String?

    @Option(help: "host:port for an SMTP listener that takes bounce reports for bounce_domain. Env: REKEY_NOTIFIER_BOUNCE_LISTEN. Default: off.")
    var bounceListen: String?

    @Option(help: "A maildir the site's MTA delivers bounce reports into; read every 5 poll intervals (5 s). Env: REKEY_NOTIFIER_BOUNCE_MAILDIR. Default: off.")
    var bounceMaildir: String?

    var flags: [String: String?] {
        [
            "transport": self.transport, "mail_dir": self.mailDir, "smtp_server": self.smtpServer, "smtp_username": self.smtpUsername,
            "smtp_password": self.smtpPassword, "smtp_helo": self.smtpHelo, "smtp_timeout": self.smtpTimeout,
            "smtp_tls": self.smtpTls, "smtp_ca_file": self.smtpCaFile, "smtp_tls_server_name": self.smtpTlsServerName,
            "concurrency": self.concurrency, "from_address": self.fromAddress, "from_name": self.fromName, "brand_name": self.brandName, "brand_color": self.brandColor,
            "message_id_domain": self.messageIdDomain, "retry_schedule": self.retrySchedule, "max_age": self.maxAge,
            "poll_interval": self.pollInterval, "templates_dir": self.templatesDir,
            "dkim_key": self.dkimKey, "dkim_selector": self.dkimSelector, "dkim_domain": self.dkimDomain,
            "dns_server": self.dnsServer, "bounce_domain": self.bounceDomain, "bounce_listen": self.bounceListen, "bounce_maildir": self.bounceMaildir,
            "database": self.database, "database_pool_size": self.databasePoolSize, "claim_lease": self.claimLease,
        ]
    }
}

/// The validated settings of `serve`.
struct NotifierSettings {
    enum Transport {
        case maildir(String)
        case smtp(SMTPConfiguration)

        var heloName: String? {
            if case .smtp(let smtp) = self { return smtp.heloName }
            return nil
        }
    }

    var common: CommonServiceSettings
    var transport: Transport
    var outbox: OutboxStore.Configuration
    var concurrency: Int
    var pollInterval: Duration
    var claimLease: Duration
    /// PostgreSQL and this replica's pool size; nil for SQLite in the data folder.
    var postgres: (url: PostgresURL, poolSize: Int)?
    var templatesFolder: String?
    var dkim: DKIMSigner?
    var dnsServer: HostAndPort
    var bounceListen: HostAndPort?
    var bounceMaildir: String?
    /// Settings that work but are likely mistakes, logged at start.
    var warnings: [String] = []

    init(common options: CommonServiceOptions, _ own: NotifierOptions) throws {
        let flags = options.flags.merging(own.flags) { $1 }
        let settings = try Settings(service: "NOTIFIER", flags: flags, knownKeys: Set(flags.keys), configFile: options.config)
        self.common = try CommonServiceSettings(settings, workload: "notifier", defaultPort: 7103)
        let kind = try settings.value("transport", default: "maildir", expected: "smtp or maildir") { ["smtp", "maildir"].contains($0) ? $0 : nil }
        if kind == "maildir" {
            self.transport = .maildir(try settings.string("mail_dir", default: (self.common.dataDirectory as NSString).appendingPathComponent("mail")))
        } else {
            let server = try settings.address("smtp_server", default: HostAndPort(host: "127.0.0.1", port: 25))
            // The EHLO name is settled below, once the sender address is known.
            var smtp = SMTPConfiguration(host: server.host, port: server.port, heloName: "")
            if settings.raw("smtp_username") != nil {
                smtp.username = try settings.string("smtp_username", default: nil)
                smtp.password = try settings.string("smtp_password", default: nil)
            }
            let timeout = try settings.duration("smtp_timeout", default: .seconds(60), range: .seconds(1) ... .seconds(600))
            smtp.connectTimeout = timeout
            smtp.commandTimeout = timeout
            smtp.dataTimeout = timeout * 3
            smtp.tls = try settings.value("smtp_tls", default: .opportunistic, expected: "opportunistic, verify (or required) or off") { SMTPConfiguration.TLSMode(rawValue: $0) }
            if settings.raw("smtp_ca_file") != nil {
                let file = try settings.string("smtp_ca_file", default: nil)
                guard FileManager.default.isReadableFile(atPath: file) else {
                    throw SettingsError("cannot read the CA file `\(file)` (smtp_ca_file)")
                }
                smtp.caFile = file
            }
            if settings.raw("smtp_tls_server_name") != nil {
                smtp.tlsServerName = try settings.string("smtp_tls_server_name", default: nil)
            }
            self.transport = .smtp(smtp)
        }
        let from = try settings.value("from_address", default: "rekey@localhost", expected: "an email address such as no-reply@example.com") { text in
            let parts = text.split(separator: "@", omittingEmptySubsequences: false)
            return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && !text.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0.isNewline }) ? text : nil
        }
        if case .smtp(var smtp) = self.transport {
            if settings.raw("smtp_helo") != nil {
                smtp.heloName = try settings.value("smtp_helo", default: "", expected: "a host name such as mail.example.com, or an address literal such as [192.0.2.1]") {
                    SMTPConfiguration.isValidHeloName($0) ? $0 : nil
                }
            } else {
                let host = ProcessInfo.processInfo.hostName
                smtp.heloName = SMTPConfiguration.defaultHeloName(hostName: host, canonicalName: SMTPConfiguration.canonicalHostName(host), fromAddress: from)
            }
            self.transport = .smtp(smtp)
        }
        let fromName = try settings.value("from_name", default: "Rekey", expected: "a name on one line") { $0.contains(where: \.isNewline) ? nil : $0 }
        let brandName = try settings.value("brand_name", default: fromName, expected: "a name of 1 to 60 characters on one line") { text in
            (1...60).contains(text.count) && !text.contains(where: \.isNewline) ? text : nil
        }
        let brandColor = try settings.value("brand_color", default: "#2f5fd0", expected: "a colour as #rrggbb") { text in
            text.count == 7 && text.hasPrefix("#") && text.dropFirst().allSatisfy(\.isHexDigit) ? text.lowercased() : nil
        }
        let domain = try settings.value("message_id_domain", default: String(from.split(separator: "@").last ?? "localhost"), expected: "a domain name") { text in
            text.isEmpty || text.contains(where: { !($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) ? nil : text
        }
        let schedule = try settings.value("retry_schedule", default: [Duration.seconds(60), .seconds(300), .seconds(900), .seconds(3600)],
                                          expected: "a comma-separated list of durations such as 1m,5m,15m,1h") { text in
            let items = text.split(separator: ",").map { Settings.parseDuration($0.trimmingCharacters(in: .whitespaces)) }
            return items.isEmpty || items.contains(where: { $0 == nil || $0! <= .zero }) ? nil : items.compactMap { $0 }
        }
        self.outbox = OutboxStore.Configuration(
            fromAddress: from, fromName: fromName, brandName: brandName, brandColor: brandColor, messageIDDomain: domain, retrySchedule: schedule,
            maxAge: try settings.duration("max_age", default: .seconds(86400), range: .seconds(1) ... .seconds(30 * 86400))
        )
        if settings.raw("bounce_domain") != nil {
            self.outbox.bounceDomain = try settings.value("bounce_domain", default: nil, expected: "a domain name such as bounces.example.com") { text in
                IDNA.asciiDomain(text.lowercased()).flatMap { Self.isDNSName($0) && $0.contains(".") ? $0 : nil }
            }
        }
        if settings.raw("bounce_listen") != nil {
            guard self.outbox.bounceDomain != nil else {
                throw SettingsError("bounce_listen needs bounce_domain: the listener takes mail for bounces+<message id>@<bounce_domain>")
            }
            self.bounceListen = try settings.address("bounce_listen", default: HostAndPort(host: "127.0.0.1", port: 2525))
        }
        if settings.raw("bounce_maildir") != nil {
            self.bounceMaildir = try settings.string("bounce_maildir", default: nil)
        }
        self.concurrency = try settings.integer("concurrency", default: 4, range: 1...64)
        self.pollInterval = try settings.duration("poll_interval", default: .seconds(1), range: .milliseconds(10) ... .seconds(60))
        self.claimLease = try settings.duration("claim_lease", default: .seconds(60), range: .seconds(3) ... .seconds(3600))
        // The value is never repeated in an error: it holds the database password.
        if let (text, origin) = settings.raw("database"), !text.isEmpty {
            do {
                let url = try PostgresURL(text)
                let poolSize = try settings.integer("database_pool_size", default: 10, range: 1...500)
                guard poolSize >= self.concurrency + 2 else {
                    throw SettingsError("database_pool_size (\(poolSize)) must be at least concurrency + 2 (\(self.concurrency + 2)): each worker holds a connection while it records an attempt, and calls need some too")
                }
                self.postgres = (url, poolSize)
            } catch let error as PostgresURLError {
                throw SettingsError("invalid `database` (from \(origin)): \(error)")
            }
        }
        self.templatesFolder = settings.raw("templates_dir") == nil ? nil : try settings.string("templates_dir", default: nil)
        self.dnsServer = try settings.value("dns_server", default: HostAndPort(host: DNSResolver.systemServer(), port: 53), expected: "a host or host:port such as 127.0.0.53 or [::1]:53") { text in
            if let address = HostAndPort(parsing: text), address.port > 0 { return address }
            return text.contains(":") && !text.contains("::") || text.isEmpty ? nil : HostAndPort(host: text, port: 53)
        }
        try self.readDKIM(settings, from: from)
    }

    /// `dkim_key`, `dkim_selector`, `dkim_domain`: every key loaded now, so that a bad file stops
    /// the start instead of the first delivery.
    private mutating func readDKIM(_ settings: Settings, from: String) throws {
        let fromDomain = String(from.split(separator: "@").last ?? "").lowercased()
        guard settings.raw("dkim_key") != nil else {
            if settings.raw("dkim_selector") != nil || settings.raw("dkim_domain") != nil {
                throw SettingsError("dkim_selector and dkim_domain need dkim_key, the private key to sign with")
            }
            return
        }
        let files = try settings.list("dkim_key", default: nil)
        let selectors = try settings.value("dkim_selector", default: nil, expected: "one selector per key, such as rekey2026 (letters, digits, hyphens and dots)") { text in
            let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            return items.allSatisfy(Self.isDNSName) ? items : nil
        }
        guard !files.isEmpty, files.count == selectors.count else {
            throw SettingsError("dkim_key names \(files.count) key(s) but dkim_selector \(selectors.count) selector(s): give one selector per key, in the same order")
        }
        let domain = try settings.value("dkim_domain", default: fromDomain, expected: "a domain name such as example.com") { text in
            let ascii = IDNA.asciiDomain(text.lowercased())
            return ascii.flatMap { Self.isDNSName($0) && $0.contains(".") ? $0 : nil }
        }
        var keys: [DKIMSigner.Key] = []
        for (file, selector) in zip(files, selectors) {
            guard let pem = FileManager.default.contents(atPath: file) else {
                throw SettingsError("cannot read the DKIM key `\(file)` (dkim_key)")
            }
            let key: SigningKey
            do {
                key = try SigningKey(pem: Array(pem))
            } catch {
                throw SettingsError("the DKIM key `\(file)` is not an unencrypted PEM private key (RSA or Ed25519): \(error.detail)")
            }
            if case .rsa(let bits) = key.algorithm {
                // RFC 8301: verifiers ignore signatures from keys under 1024 bits.
                guard bits >= 1024 else {
                    throw SettingsError("the DKIM key `\(file)` has \(bits) bits: receivers ignore RSA keys under 1024 bits; make a 2048-bit one (rekey-notifier dkim keygen)")
                }
                if bits < 2048 {
                    self.warnings.append("the DKIM key `\(file)` has \(bits) bits; 2048 is the recommended size")
                }
            }
            if let attributes = try? FileManager.default.attributesOfItem(atPath: file),
               let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
                self.warnings.append("the DKIM key `\(file)` can be read by other users (mode \(String(mode & 0o777, radix: 8))): chmod 600 it")
            }
            keys.append(DKIMSigner.Key(selector: selector, key: key))
        }
        if domain != fromDomain && !fromDomain.hasSuffix("." + domain) && !domain.hasSuffix("." + fromDomain) {
            self.warnings.append("dkim_domain `\(domain)` is not aligned with the From domain `\(fromDomain)`: DMARC passes only when they share their registered domain")
        }
        self.dkim = DKIMSigner(domain: domain, keys: keys)
    }

    /// Letters, digits and hyphens in dot-separated labels of 1 to 63 characters.
    static func isDNSName(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return !text.isEmpty && text.utf8.count <= 253 && labels.allSatisfy { label in
            (1...63).contains(label.count) && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
                && label.first != "-" && label.last != "-"
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the service (the default).")

    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: NotifierOptions

    func run() async throws {
        let settings: NotifierSettings
        var path = ""
        let templates: MailTemplates
        do {
            settings = try NotifierSettings(common: self.options, self.own)
            if settings.postgres == nil {
                path = try settings.common.databasePath("notifier.sqlite")
            }
            templates = try MailTemplates(overrideFolder: settings.templatesFolder)
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        } catch let error as NotifierError {
            throw ValidationError(error.rpcError.message)
        }
        settings.common.logFormat.bootstrap(level: settings.common.logLevel)
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = Logger(label: "rekey.notifier")
        let doorbell = Doorbell()

        let repository: any OutboxRepository
        var database: SQLiteDatabase?
        var databaseServices: [any Service] = []
        var watch: PostgresHealthWatch?
        if let (url, poolSize) = settings.postgres {
            let postgres = try PostgresServiceDatabase(url: url, schema: PostgresOutboxRepository.schema, maximumConnections: poolSize, logger: logger)
            let schemaVersion = try await postgres.open(PostgresOutboxRepository.migrations)
            logger.info("database ready", metadata: [
                "db.url": "\(url)", "db.schema": "\(PostgresOutboxRepository.schema)", "db.schema_version": "\(schemaVersion)", "db.pool_size": "\(poolSize)",
            ])
            repository = PostgresOutboxRepository(database: postgres)
            let healthWatch = PostgresHealthWatch(database: postgres, logger: logger)
            watch = healthWatch
            databaseServices = [healthWatch, PostgresOutboxListener(database: postgres, doorbell: doorbell, logger: logger)]
        } else {
            // FULL durability: an accepted message must survive a power loss, not only a crash.
            let sqlite = try SQLiteDatabase(path: path, migrations: SQLiteOutboxRepository.migrations, durability: .full)
            let schemaVersion = try await sqlite.schemaVersion()
            logger.info("database ready", metadata: ["db.path": "\(path)", "db.schema_version": "\(schemaVersion)"])
            repository = SQLiteOutboxRepository(database: sqlite)
            database = sqlite
        }
        let store = OutboxStore(configuration: settings.outbox, templates: templates, clock: SystemWallClock(), repository: repository)
        // Read at each scrape, so the figures are never staler than the scrape.
        let metrics = settings.common.bootstrapObservability(logger: logger) {
            guard let queue = try? await store.queue() else { return }
            Gauge(label: "rekey_notifier_queue_depth").record(queue.depth)
            Gauge(label: "rekey_notifier_oldest_queued_age_seconds").record(Double(queue.oldestAge) / 1000)
        }
        let makeTransport: @Sendable () throws -> any MailTransport
        let description: (name: String, destination: String)
        switch settings.transport {
        case .maildir(let folder):
            let transport = try MaildirTransport(folder: folder)
            makeTransport = { transport }
            description = (transport.name, transport.destination)
        case .smtp(let smtp):
            do {
                _ = try SMTPTransport(configuration: smtp)
            } catch {
                throw ValidationError("the TLS settings cannot be used: \(error)")
            }
            makeTransport = { try SMTPTransport(configuration: smtp) }
            description = ("smtp", "\(smtp.host):\(smtp.port)")
            if !SMTPConfiguration.isFullyQualified(smtp.heloName) {
                logger.warning(
                    "the EHLO name is not fully qualified: relays that require one (Postfix's reject_non_fqdn_helo_hostname) refuse every message; set smtp_helo to this host's DNS name",
                    metadata: ["smtp.helo": "\(smtp.heloName)"]
                )
            }
        }
        for warning in settings.warnings {
            logger.warning("\(warning)")
        }
        if let dkim = settings.dkim {
            logger.info("DKIM-signing every message", metadata: [
                "dkim.domain": "\(dkim.domain)",
                "dkim.keys": "\(dkim.keys.map { "\($0.selector) (\($0.key.algorithm))" }.joined(separator: ", "))",
            ])
        } else if case .smtp = settings.transport {
            logger.notice("mail is not DKIM-signed: receivers are more likely to file it as spam; set dkim_key and dkim_selector (see rekey-notifier dkim keygen)")
        }
        logger.info("delivering mail", metadata: ["transport": "\(description.name)", "destination": "\(description.destination)"]
            .merging(settings.transport.heloName.map { ["smtp.helo": "\($0)"] } ?? [:]) { $1 })
        let relayHost: String? = if case .smtp(let smtp) = settings.transport { smtp.host } else { nil }
        let checker = DomainChecker(
            check: DomainCheck(
                resolver: DNSResolver(host: settings.dnsServer.host, port: settings.dnsServer.port),
                configuration: .init(
                    fromAddress: settings.outbox.fromAddress,
                    envelopeDomain: settings.outbox.bounceDomain ?? String(settings.outbox.fromAddress.split(separator: "@").last ?? "").lowercased(),
                    relayHost: relayHost, dkim: settings.dkim, messageIDDomain: settings.outbox.messageIDDomain
                )
            ),
            templates: templates
        )
        for finding in checker.templateFindings + [DomainCheck.messageIDFinding(settings.outbox.messageIDDomain)].compactMap({ $0 }) {
            logger.warning("\(finding.summary)", metadata: ["fix": "\(finding.fix)"])
        }
        // Bounce reports: kept when they name no message or are no report, beside the database.
        let intake = BounceIntake(
            store: store, keepFolder: (settings.common.dataDirectory as NSString).appendingPathComponent("bounces/unmatched"), logger: logger
        )
        var bounceServices: [any Service] = []
        if let listen = settings.bounceListen {
            bounceServices.append(BounceListener(host: listen.host, port: listen.port, intake: intake, hostName: settings.transport.heloName ?? settings.outbox.bounceDomain ?? "localhost"))
        }
        if let folder = settings.bounceMaildir {
            bounceServices.append(BounceMaildirReader(folder: folder, intake: intake, interval: max(settings.pollInterval * 5, .milliseconds(250))))
        }
        if let domain = settings.outbox.bounceDomain, bounceServices.isEmpty {
            logger.warning("bounce_domain is set but neither bounce_listen nor bounce_maildir: bounces to \(domain) are not read here")
        }
        let runner = RPCServiceRunner(
            name: "rekey-notifier",
            server: settings.common.serverConfiguration,
            credentials: settings.common.credentials,
            callers: NotifierService.callers,
            services: [NotifierService(store: store, doorbell: doorbell, transport: description, domainChecker: checker)],
            healthServiceNames: [Rekey_Notifier_V1_Notifier.name],
            backgroundServices: [
                DeliveryWorker(
                    store: store, concurrency: settings.concurrency, pollInterval: settings.pollInterval, lease: settings.claimLease,
                    doorbell: doorbell, logger: logger, signer: settings.dkim, makeTransport: makeTransport
                ),
            ] + bounceServices + databaseServices,
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
    var address: String = "127.0.0.1:7103"

    /// The service's own settings: with mutual TLS, its certificate is presented.
    @OptionGroup var options: CommonServiceOptions
    @OptionGroup var own: NotifierOptions

    func run() async throws {
        try await HealthCheckCommand.run(
            addressText: self.address, service: "NOTIFIER", workload: "notifier", flags: self.options.flags.merging(self.own.flags) { $1 }, config: self.options.config
        )
    }
}

struct MigrateTo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-to",
        abstract: "Copy the SQLite outbox of the data folder into PostgreSQL (offline: stop the service first).",
        discussion: """
            Copies every message with its attempts and reports, the suppression list and its \
            removals into the schema rekey_notifier of an empty database, in one transaction, and \
            compares the counts before committing. Messages still waiting go out from PostgreSQL \
            once the service runs there: point it at the database with `database = postgres://…` \
            and start it.
            """
    )

    @Argument(help: "postgres://user:password@host:5432/database?sslmode=…")
    var url: String

    @Option(help: "The data folder holding notifier.sqlite. Env: REKEY_NOTIFIER_DATA_DIR. Default: ./data.")
    var dataDir: String?

    func run() async throws {
        do {
            let migration = try StoreMigration(url: self.url, dataDir: self.dataDir, environmentKey: "REKEY_NOTIFIER_DATA_DIR", file: "notifier.sqlite")
            let copied = try await migration.run(
                schema: PostgresOutboxRepository.schema, migrations: PostgresOutboxRepository.migrations, label: "rekey.notifier.migrate-to"
            ) { database, logger in
                try await OutboxStoreCopy.copy(from: migration.source, to: database, now: SystemWallClock().nowMilliseconds(), logger: logger)
            }
            print(
                "copied \(copied.messages) messages (\(copied.attempts) attempts) and \(copied.suppressions) suppressions from \(migration.source) to \(migration.target) (schema \(PostgresOutboxRepository.schema)); the counts match"
            )
        } catch let refusal as StoreCopyRefusal {
            throw ValidationError(refusal.description)
        }
    }
}
