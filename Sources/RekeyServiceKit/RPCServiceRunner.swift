import Foundation
import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import RekeyRPC
import RekeyRPCNIO
import RekeySQLite
import ServiceLifecycle

/// The common part of every Rekey service executable: the RPC server with the standard
/// interceptors, health, and background services, run in a `ServiceGroup` that drains on SIGTERM
/// and SIGINT.
package struct RPCServiceRunner {
    package var name: String
    package var server: RPCServer.Configuration
    /// Accepted service credentials, used when the server has no TLS (`tls = off`).
    package var credentials: [String]
    /// Who may call what, by the workload in the caller's certificate, when the server has TLS.
    package var callers: CallerPolicy
    package var services: [any RPCService]
    /// Fully qualified service names reported SERVING by the health service.
    package var healthServiceNames: [String]
    /// Long-lived work besides the server (purgers, delivery workers).
    package var backgroundServices: [any Service]
    /// Serves the Prometheus metrics, when `metrics_listen` is not off.
    package var metrics: MetricsServer?
    /// The service's database: a full disk makes health NOT_SERVING and calls RESOURCE_EXHAUSTED
    /// until writes work again (``StorageWatch``).
    package var database: SQLiteDatabase?
    /// Another reason to answer NOT_SERVING, checked at each health check (a database server
    /// that does not answer).
    package var healthProblem: @Sendable () -> String?
    package var logger: Logger

    package init(
        name: String,
        server: RPCServer.Configuration,
        credentials: [String],
        callers: CallerPolicy,
        services: [any RPCService],
        healthServiceNames: [String],
        backgroundServices: [any Service] = [],
        metrics: MetricsServer? = nil,
        database: SQLiteDatabase? = nil,
        healthProblem: @escaping @Sendable () -> String? = { nil },
        logger: Logger
    ) {
        self.name = name
        self.server = server
        self.credentials = credentials
        self.callers = callers
        self.services = services
        self.healthServiceNames = healthServiceNames
        self.backgroundServices = backgroundServices
        self.metrics = metrics
        self.database = database
        self.healthProblem = healthProblem
        self.logger = logger
    }

    package func run() async throws {
        let database = self.database
        let healthProblem = self.healthProblem
        let health = HealthService(services: self.healthServiceNames, problem: { database?.storageProblem ?? healthProblem() })
        let server = RPCServer(
            configuration: self.server,
            services: self.services,
            interceptors: [
                LoggingInterceptor(),
                MetricsInterceptor(),
                self.server.tls == nil ? ServiceCredentialInterceptor(accepted: self.credentials) as any ServerInterceptor : CallerPolicyInterceptor(policy: self.callers),
                StorageErrorInterceptor(service: self.name),
            ],
            health: health,
            logger: self.logger
        )
        var others: [any Service] = self.backgroundServices
        if let metrics = self.metrics { others.append(metrics) }
        if let tls = self.server.tls { others.append(TLSReloader(tls: tls, logger: self.logger)) }
        if let database { others.append(StorageWatch(database: database, logger: self.logger)) }
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)] + others.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: self.logger
            )
        )
        self.logger.info("starting \(self.name)", metadata: ["rpc.listen": "\(self.server.host):\(self.server.port)"])
        TLSSettings.logStart(self.server.tls, logger: self.logger)
        // Every other listener first: "rpc server listening" then means the whole service is up.
        try await self.metrics?.bind()
        try await group.run()
    }
}

/// `healthcheck`: asks a server's health method and answers with the exit status (0: SERVING).
/// With mutual TLS it presents the service's own certificate (the same settings as `serve`) and
/// fails when that certificate has expired.
package enum HealthCheckCommand {
    /// Parses `address` (host:port) and checks it: the body of every executable's `healthcheck`.
    /// `flags` and `config` are the service's own settings, for its TLS files.
    package static func run(addressText: String, service: String, workload: String, flags: [String: String?], config: String?) async throws -> Never {
        guard let address = HostAndPort(parsing: addressText) else {
            throw ValidationError("--address must be host:port, got \(addressText)")
        }
        let tls: RPCTLS?
        do {
            let settings = try Settings(service: service, flags: flags, knownKeys: Set(flags.keys), configFile: config)
            tls = try TLSSettings.load(settings, workload: workload)
        } catch let error as SettingsError {
            throw ValidationError(error.message)
        }
        if let tls, tls.notValidAfter < Date() {
            print("\(address): this service's TLS certificate (\(tls.files.certificate)) has expired")
            throw ExitCode(1)
        }
        throw ExitCode(await Self.run(address: address, service: "", tls: tls))
    }

    /// Returns the process exit status to use.
    package static func run(address: HostAndPort, service: String, tls: RPCTLS? = nil, timeout: Duration = .seconds(3)) async -> Int32 {
        var logger = Logger(label: "rekey.healthcheck")
        logger.logLevel = .critical
        let client = RPCClient(
            configuration: .init(host: address.host, port: address.port, caller: "healthcheck", tls: tls, serverIdentity: tls?.workload),
            logger: logger
        )
        var request = Rekey_Health_V1_HealthCheckRequest()
        request.service = service
        do {
            let response = try await Rekey_Health_V1_Health.Client(wrapping: client).check(request, options: CallOptions(timeout: timeout))
            print("\(address): \(response.status)")
            await client.close()
            return response.status == .serving ? 0 : 1
        } catch {
            print("\(address): \(error)")
            await client.close()
            return 1
        }
    }
}
