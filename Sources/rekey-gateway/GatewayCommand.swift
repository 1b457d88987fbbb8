import ArgumentParser
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import RekeyGateway
import RekeyRPCNIO
import RekeyServiceKit
import ServiceLifecycle

@main
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey-gateway",
        abstract: "Rekey's gateway: the sign-on and reset pages and the admin API, over the directory, reset-token and notifier services.",
        subcommands: [Serve.self, Healthcheck.self],
        defaultSubcommand: Serve.self
    )
}

struct GatewayOptions: ParsableArguments {
    @Option(help: "A config file of `key = value` lines (keys are the flag names with underscores).")
    var config: String?

    @Option(help: "host:port for HTTP. Env: REKEY_GATEWAY_LISTEN. Default: 127.0.0.1:8080.")
    var listen: String?

    @Option(help: "host:port for Prometheus metrics (GET /metrics), or off. Env: REKEY_GATEWAY_METRICS_LISTEN. Default: 127.0.0.1:9100.")
    var metricsListen: String?

    @Option(help: "The address users reach the gateway at; links in mail are built from it. Env: REKEY_GATEWAY_PUBLIC_URL. Default: http://LISTEN.")
    var publicUrl: String?

    @Option(help: "host:port of rekey-directory; several, comma-separated, for replicas. Env: REKEY_GATEWAY_DIRECTORY. Default: 127.0.0.1:7101.")
    var directory: String?

    @Option(help: "host:port of rekey-reset-token; several, comma-separated, for replicas. Env: REKEY_GATEWAY_RESET_TOKEN. Default: 127.0.0.1:7102.")
    var resetToken: String?

    @Option(help: "host:port of rekey-notifier; several, comma-separated, for replicas. Env: REKEY_GATEWAY_NOTIFIER. Default: 127.0.0.1:7103.")
    var notifier: String?

    @Option(help: "With tls = off: the service credential the gateway presents to the services. Env: REKEY_GATEWAY_SERVICE_CREDENTIAL.")
    var serviceCredential: String?

    @Option(help: "The secret form (CSRF) tokens are signed with, 16+ characters, the same on every gateway. Env: REKEY_GATEWAY_FORM_SECRET. Default: service_credential; required with mutual TLS.")
    var formSecret: String?

    @Option(help: "IP addresses of proxies whose X-Forwarded-For is believed, comma-separated. Env: REKEY_GATEWAY_TRUSTED_PROXIES. Default: none.")
    var trustedProxies: String?

    @Option(help: "The least time a forgot-password answer takes, so that it does not tell whether the account exists. Env: REKEY_GATEWAY_FORGOT_MIN_DURATION. Default: 400ms.")
    var forgotMinDuration: String?

    @Option(help: "Time for a request's headers to arrive in full (from the connection's start, or the previous response's end). Env: REKEY_GATEWAY_HEADER_TIMEOUT. Default: 10s.")
    var headerTimeout: String?

    @Option(help: "The product name on every page and in the console. Env: REKEY_GATEWAY_BRAND_NAME. Default: Rekey.")
    var brandName: String?

    @Option(help: "A logo for the pages: an https URL or a path on this host. Env: REKEY_GATEWAY_BRAND_LOGO_URL. Default: none (the name's first letter).")
    var brandLogoUrl: String?

    @Option(help: "The accent colour of the pages, as #rrggbb. Env: REKEY_GATEWAY_BRAND_COLOR. Default: #2f5fd0.")
    var brandColor: String?

    @Option(help: "trace … critical. Env: REKEY_GATEWAY_LOG_LEVEL. Default: info.")
    var logLevel: String?

    @Option(help: "text or json. Env: REKEY_GATEWAY_LOG_FORMAT. Default: text.")
    var logFormat: String?

    /// Mutual TLS to the services: the gateway's certificate, and the CA theirs chain to.
    @OptionGroup var tls: TLSOptions

    var flags: [String: String?] {
        [
            "listen": self.listen, "metrics_listen": self.metricsListen, "public_url": self.publicUrl, "directory": self.directory, "reset_token": self.resetToken,
            "notifier": self.notifier, "service_credential": self.serviceCredential, "trusted_proxies": self.trustedProxies, "forgot_min_duration": self.forgotMinDuration, "header_timeout": self.headerTimeout,
            "brand_name": self.brandName, "brand_logo_url": self.brandLogoUrl, "brand_color": self.brandColor, "log_level": self.logLevel, "log_format": self.logFormat,
            "form_secret": self.formSecret,
        ].merging(self.tls.flags) { $1 }
    }
}

struct GatewaySettings {
    var listen: HostAndPort
    var metricsListen: HostAndPort?
    var publicURL: String
    /// Each service's replicas (one or more).
    var directory: [HostAndPort]
    var resetToken: [HostAndPort]
    var notifier: [HostAndPort]
    /// Mutual TLS to the services; nil with `tls = off`.
    var tls: RPCTLS?
    /// Presented to the services with `tls = off`.
    var credential: String?
    var formSecret: String
    var trustedProxies: Set<String>
    var forgotMinDuration: Duration
    var headerTimeout: Duration
    var brand: Brand
    var logLevel: Logger.Level
    var logFormat: LogFormat

    init(_ options: GatewayOptions) throws {
        let settings = try Settings(service: "GATEWAY", flags: options.flags, knownKeys: Set(options.flags.keys), configFile: options.config)
        self.listen = try settings.address("listen", default: HostAndPort(host: "127.0.0.1", port: 8080))
        let listen = self.listen
        self.metricsListen = try settings.optionalAddress("metrics_listen", default: HostAndPort(host: "127.0.0.1", port: 9100))
        self.publicURL = try settings.value("public_url", default: "http://\(listen.host):\(listen.port)", expected: "an http or https URL such as https://sso.example.com") { text in
            guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil, url.query == nil else { return nil }
            return text
        }
        self.directory = try settings.addresses("directory", default: HostAndPort(host: "127.0.0.1", port: 7101))
        self.resetToken = try settings.addresses("reset_token", default: HostAndPort(host: "127.0.0.1", port: 7102))
        self.notifier = try settings.addresses("notifier", default: HostAndPort(host: "127.0.0.1", port: 7103))
        self.tls = try TLSSettings.load(settings, workload: "gateway")
        // With TLS the gateway's certificate says who it is; the shared credential is for tls = off.
        if self.tls == nil || settings.raw("service_credential") != nil {
            let credential = try settings.string("service_credential", default: nil)
            guard credential.utf8.count >= 16 else {
                throw SettingsError("`service_credential` must have at least 16 characters")
            }
            self.credential = credential
        }
        guard let formSecret = settings.raw("form_secret")?.value ?? self.credential else {
            throw SettingsError("missing setting `form_secret` (16+ characters, the same on every gateway): it signs the forms' CSRF tokens")
        }
        guard formSecret.utf8.count >= 16 else {
            throw SettingsError("`form_secret` must have at least 16 characters")
        }
        self.formSecret = formSecret
        self.trustedProxies = settings.raw("trusted_proxies") == nil ? [] : Set(try settings.list("trusted_proxies", default: []))
        self.forgotMinDuration = try settings.duration("forgot_min_duration", default: .milliseconds(400), range: .zero ... .seconds(5))
        self.headerTimeout = try settings.duration("header_timeout", default: .seconds(10), range: .milliseconds(100) ... .seconds(600))
        do {
            self.brand = try Brand.make(name: settings.raw("brand_name")?.value, logoURL: settings.raw("brand_logo_url")?.value, color: settings.raw("brand_color")?.value)
        } catch {
            throw SettingsError(error.description)
        }
        let log = try LogSettings(settings)
        self.logLevel = log.level
        self.logFormat = log.format
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway (the default).")

    @OptionGroup var options: GatewayOptions

    func run() async throws {
        let settings: GatewaySettings
        do {
            settings = try GatewaySettings(self.options)
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        settings.logFormat.bootstrap(level: settings.logLevel)
        let registry = MetricsServer.bootstrap()
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        let logger = Logger(label: "rekey.gateway")
        let backends = Backends(
            directory: settings.directory.map { .init(host: $0.host, port: $0.port) },
            tokens: settings.resetToken.map { .init(host: $0.host, port: $0.port) },
            notifier: settings.notifier.map { .init(host: $0.host, port: $0.port) },
            credential: settings.credential,
            tls: settings.tls,
            logger: logger
        )
        TLSSettings.logStart(settings.tls, logger: logger)
        let flows = Flows(backends: backends, publicURL: settings.publicURL, logger: logger)
        let publicURL = settings.publicURL
        let background = BackgroundQueue(logger: logger)
        let app = Application(
            router: Gateway.router(
                flows: flows, logger: logger, secret: settings.formSecret, background: background, trustedProxies: settings.trustedProxies,
                forgotMinimumDuration: settings.forgotMinDuration, brand: settings.brand
            ),
            server: Gateway.httpServer(headerTimeout: settings.headerTimeout, logger: logger),
            configuration: .init(address: .hostname(settings.listen.host, port: settings.listen.port), serverName: "rekey-gateway"),
            onServerRunning: { channel in
                logger.info(
                    "http server listening",
                    metadata: ["http.port": "\(channel.localAddress?.port ?? 0)", "public_url": "\(publicURL)"]
                )
            },
            logger: logger
        )
        let metrics = settings.metricsListen.map { MetricsServer(listen: $0, registry: registry, logger: logger) }
        let group = ServiceGroup(
            configuration: .init(
                // The background queue last: on shutdown it finishes the flows already accepted.
                services: [.init(service: app), .init(service: background)] + (metrics.map { [.init(service: $0)] } ?? [])
                    + (settings.tls.map { [.init(service: TLSReloader(tls: $0, logger: logger))] } ?? [])
                    + (self.options.config.map { [.init(service: ConfigReloader(options: self.options, file: $0, backends: backends, logger: logger))] } ?? []),
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        // The metrics port first: "http server listening" then means every listener is bound.
        try await metrics?.bind()
        try await group.run()
        await backends.close()
    }
}

/// Reads the config file again on SIGHUP and when it changes (checked every `interval`): the
/// services' replica lists (`directory`, `reset_token`, `notifier`) take effect at once, without a
/// restart; any other setting that changed is named in the log as waiting for a restart. A file
/// that no longer parses, or a list that is not valid, changes nothing and is logged. A flag or an
/// environment variable still outranks the file, as at start.
struct ConfigReloader: Service {
    let options: GatewayOptions
    let file: String
    let backends: Backends
    var interval: Duration = .seconds(10)
    let logger: Logger

    func run() async throws {
        try await ReloadTicks.run(every: self.interval) { ticks in
            var stamp = Self.stamp(self.file)
            var values = Self.values(self.options)
            for await reason in ticks {
                let now = Self.stamp(self.file)
                guard reason == "SIGHUP" || now != stamp else { continue }
                stamp = now
                let settings: GatewaySettings
                do {
                    settings = try GatewaySettings(self.options)
                } catch {
                    self.logger.error(
                        "cannot use the changed config file; the settings loaded before stay in use",
                        metadata: ["config.file": "\(self.file)", "config.reason": "\(reason)", "error": "\(error)"]
                    )
                    continue
                }
                let changes = self.backends.updateReplicas(
                    directory: settings.directory.map { .init(host: $0.host, port: $0.port) },
                    tokens: settings.resetToken.map { .init(host: $0.host, port: $0.port) },
                    notifier: settings.notifier.map { .init(host: $0.host, port: $0.port) }
                )
                for change in changes {
                    self.logger.notice("replicas changed: new calls go to the new list", metadata: [
                        "rpc.service": "rekey-\(change.service)", "rpc.replicas": "\(change.replicas.joined(separator: ","))",
                        "rpc.added": "\(change.added.joined(separator: ","))", "rpc.removed": "\(change.removed.joined(separator: ","))",
                        "config.reason": "\(reason)",
                    ])
                }
                let fresh = Self.values(self.options)
                let waiting = fresh.keys.filter { !Self.applied.contains($0) && fresh[$0] != values[$0] }.sorted()
                if !waiting.isEmpty {
                    self.logger.warning(
                        "settings changed in the config file take effect at the next restart",
                        metadata: ["config.settings": "\(waiting.joined(separator: ","))", "config.file": "\(self.file)"]
                    )
                }
                values = fresh
                if changes.isEmpty && waiting.isEmpty {
                    self.logger.info("config file read again: nothing changed", metadata: ["config.reason": "\(reason)"])
                }
            }
        }
    }

    /// Settings applied while running: the replica lists here, the TLS files by ``TLSReloader``.
    static let applied: Set<String> = ["directory", "reset_token", "notifier", "tls_ca", "tls_cert", "tls_key"]

    /// Every setting's value as resolved now (flag, environment, file), by key; empty when the
    /// file cannot be read.
    static func values(_ options: GatewayOptions) -> [String: String] {
        guard let settings = try? Settings(service: "GATEWAY", flags: options.flags, knownKeys: Set(options.flags.keys), configFile: options.config) else {
            return [:]
        }
        return Dictionary(uniqueKeysWithValues: options.flags.keys.compactMap { key in settings.raw(key).map { (key, $0.value) } })
    }

    /// What tells a changed file: its modification time, size and inode (a file replaced by a
    /// rename, as editors and config management do, has a new inode).
    static func stamp(_ file: String) -> [String] {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file) else { return [] }
        return ["\(attributes[.modificationDate] ?? "")", "\(attributes[.size] ?? "")", "\(attributes[.systemFileNumber] ?? "")"]
    }
}

struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 if the gateway at URL answers /healthz (or /readyz with --ready), 1 otherwise.")

    @Option(help: "The gateway's base URL.")
    var url: String = "http://127.0.0.1:8080"

    @Flag(help: "Ask /readyz: the gateway and every service it calls answer.")
    var ready = false

    func run() async throws {
        guard let url = URL(string: self.url), url.scheme == "http", let host = url.host else {
            throw ValidationError("--url must be an http URL such as http://127.0.0.1:8080, got \(self.url)")
        }
        let status = await HTTPProbe.status(host: host, port: url.port ?? 80, path: url.path.trimmingSuffix("/") + (self.ready ? "/readyz" : "/healthz"))
        print("\(self.url): \(status.map(String.init) ?? "no answer")")
        throw ExitCode(status == 200 ? 0 : 1)
    }
}

extension String {
    fileprivate func trimmingSuffix(_ suffix: String) -> String {
        self.hasSuffix(suffix) ? String(self.dropLast(suffix.count)) : self
    }
}
