import ArgumentParser
import Foundation
import Logging
import RekeyRPCNIO

/// The settings every Rekey service executable has. Each can be given as a flag, as the
/// environment variable `REKEY_<SERVICE>_<KEY>` or in the config file (see ``Settings``).
package struct CommonServiceOptions: ParsableArguments {
    @Option(help: "A config file of `key = value` lines (keys are the flag names with underscores).")
    package var config: String?

    @Option(help: "host:port to listen on. Env: REKEY_<SERVICE>_LISTEN.")
    package var listen: String?

    @Option(help: "host:port for Prometheus metrics (GET /metrics), or off. Env: REKEY_<SERVICE>_METRICS_LISTEN. Default: 127.0.0.1 and the RPC port + 2000 (9101, 9102, 9103).")
    package var metricsListen: String?

    @Option(help: "Folder for the service's SQLite database. Env: REKEY_<SERVICE>_DATA_DIR. Default: ./data.")
    package var dataDir: String?

    @Option(help: "Accepted service credentials, comma-separated, 16+ characters each (two while rotating). Env: REKEY_<SERVICE>_CREDENTIALS. Required; prefer the environment or the config file to a flag, which other users can see.")
    package var credentials: String?

    @Option(help: "The largest RPC frame accepted. Env: REKEY_<SERVICE>_MAX_FRAME_BYTES. Default: 1048576.")
    package var maxFrameBytes: String?

    @Option(help: "How long running calls may take to finish on shutdown. Env: REKEY_<SERVICE>_DRAIN_TIMEOUT. Default: 10s.")
    package var drainTimeout: String?

    @Option(help: "RPC connections open at once; more are closed on accept. Env: REKEY_<SERVICE>_MAX_CONNECTIONS. Default: 4096.")
    package var maxConnections: String?

    @Option(help: "Time to receive a whole frame once its first byte arrived. Env: REKEY_<SERVICE>_FRAME_TIMEOUT. Default: 10s.")
    package var frameTimeout: String?

    @Option(help: "trace, debug, info, notice, warning, error or critical. Env: REKEY_<SERVICE>_LOG_LEVEL. Default: info.")
    package var logLevel: String?

    @Option(help: "text or json. Env: REKEY_<SERVICE>_LOG_FORMAT. Default: text.")
    package var logFormat: String?

    @OptionGroup package var tls: TLSOptions

    package init() {}

    package var flags: [String: String?] {
        [
            "listen": self.listen, "metrics_listen": self.metricsListen, "data_dir": self.dataDir, "credentials": self.credentials,
            "max_frame_bytes": self.maxFrameBytes, "drain_timeout": self.drainTimeout,
            "max_connections": self.maxConnections, "frame_timeout": self.frameTimeout,
            "log_level": self.logLevel, "log_format": self.logFormat,
        ].merging(self.tls.flags) { $1 }
    }
}

/// Mutual TLS on the RPC connections, for serving and for calling (see ``TLSSettings``).
package struct TLSOptions: ParsableArguments {
    @Option(help: "Mutual TLS on RPC connections: required or off. Env: REKEY_<SERVICE>_TLS. Default: required; off (plaintext, with service credentials) logs a warning.")
    package var tls: String?

    @Option(help: "PEM file of the deployment CA that peers' certificates must chain to. Env: REKEY_<SERVICE>_TLS_CA.")
    package var tlsCa: String?

    @Option(help: "PEM file of this process's certificate (naming spiffe://<trust domain>/<workload>). Env: REKEY_<SERVICE>_TLS_CERT.")
    package var tlsCert: String?

    @Option(help: "PEM file of this process's private key. Env: REKEY_<SERVICE>_TLS_KEY.")
    package var tlsKey: String?

    @Option(help: "The SPIFFE trust domain of the certificates. Env: REKEY_<SERVICE>_TLS_TRUST_DOMAIN. Default: rekey.")
    package var tlsTrustDomain: String?

    package init() {}

    package var flags: [String: String?] {
        ["tls": self.tls, "tls_ca": self.tlsCa, "tls_cert": self.tlsCert, "tls_key": self.tlsKey, "tls_trust_domain": self.tlsTrustDomain]
    }
}

/// The common settings, validated.
package struct CommonServiceSettings: Sendable {
    package var listen: HostAndPort
    /// Where Prometheus metrics are served; nil when `metrics_listen` is `off`.
    package var metricsListen: HostAndPort?
    package var dataDirectory: String
    /// Service credentials accepted when `tls = off`; empty with TLS.
    package var credentials: [String]
    /// Mutual TLS; nil when `tls = off` (or for a command that does not serve).
    package var tls: RPCTLS?
    package var maxFrameBytes: Int
    package var drainTimeout: Duration
    package var maxConnections: Int
    package var frameTimeout: Duration
    package var logLevel: Logger.Level
    package var logFormat: LogFormat

    /// Reads the common keys from `settings`. `serving` is false for offline commands, which
    /// need neither TLS nor credentials; `workload` is the name this service's certificate must carry.
    package init(_ settings: Settings, workload: String, defaultPort: Int, serving: Bool = true) throws {
        self.listen = try settings.address("listen", default: HostAndPort(host: "127.0.0.1", port: defaultPort))
        self.metricsListen = try settings.optionalAddress("metrics_listen", default: HostAndPort(host: "127.0.0.1", port: defaultPort + 2000))
        self.dataDirectory = try settings.string("data_dir", default: "./data")
        self.tls = serving ? try TLSSettings.load(settings, workload: workload) : nil
        // With TLS the certificate says who calls; the shared credential is only for tls = off.
        self.credentials = serving && self.tls == nil ? try settings.list("credentials", default: nil) : []
        if let short = self.credentials.first(where: { $0.utf8.count < 16 }) {
            throw SettingsError("a service credential must have at least 16 characters (one has \(short.utf8.count))")
        }
        self.maxFrameBytes = try settings.integer("max_frame_bytes", default: 1 << 20, range: 1024...(64 << 20))
        self.drainTimeout = try settings.duration("drain_timeout", default: .seconds(10), range: .zero ... .seconds(3600))
        self.maxConnections = try settings.integer("max_connections", default: 4096, range: 1...1_000_000)
        self.frameTimeout = try settings.duration("frame_timeout", default: .seconds(10), range: .milliseconds(100) ... .seconds(3600))
        let log = try LogSettings(settings)
        self.logLevel = log.level
        self.logFormat = log.format
    }

    /// The RPC server's configuration from these settings.
    package var serverConfiguration: RPCServer.Configuration {
        RPCServer.Configuration(
            host: self.listen.host,
            port: self.listen.port,
            maxFrameSize: self.maxFrameBytes,
            drainTimeout: self.drainTimeout,
            maxConnections: self.maxConnections,
            frameTimeout: self.frameTimeout,
            tls: self.tls
        )
    }

    /// Installs the Prometheus metrics backend for `serve` (once, before any metric is made) and
    /// returns the metrics server to run, if metrics are on. `beforeScrape` sets gauges that are
    /// read from the database at each scrape.
    package func bootstrapObservability(
        logger: Logger,
        beforeScrape: @escaping @Sendable () async -> Void = {}
    ) -> MetricsServer? {
        let registry = MetricsServer.bootstrap()
        return self.metricsListen.map { MetricsServer(listen: $0, registry: registry, logger: logger, beforeScrape: beforeScrape) }
    }

    /// Creates the data folder if needed and checks that it is a writable folder; returns the
    /// path of `file` in it.
    package func databasePath(_ file: String) throws -> String {
        do {
            try FileManager.default.createDirectory(atPath: self.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw SettingsError("cannot create the data folder \(self.dataDirectory) (data_dir): \(error.localizedDescription)")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: self.dataDirectory, isDirectory: &isDirectory), isDirectory.boolValue,
              FileManager.default.isWritableFile(atPath: self.dataDirectory)
        else {
            throw SettingsError("the data folder \(self.dataDirectory) (data_dir) is not a writable folder")
        }
        return (self.dataDirectory as NSString).appendingPathComponent(file)
    }
}
