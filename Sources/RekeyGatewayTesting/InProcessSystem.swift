import Hummingbird
import Logging
import RekeyClock
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyDirectoryService
import RekeyGateway
import RekeyNotifierAPI
import RekeyNotifierService
import RekeyRPC
import RekeySQLite
import RekeyTokenService
import RekeyTokensAPI
import Synchronization

/// The whole system in one process, for route tests that run in milliseconds: the three services'
/// real handlers and stores on in-memory SQLite databases, called through ``InProcessTransport``
/// (encoded, dispatched and decoded as over TCP, without sockets), and the gateway's real router
/// over them, for Hummingbird's test client (`app.test(.router)`).
///
/// The notifier queues mail but runs no delivery worker: messages stay `queued`.
// @unchecked: the router is built in init and only read after; everything else is Sendable.
package final class InProcessSystem: @unchecked Sendable {
    package static let credential = "in-process-test-credential-0123"
    /// The least time a call gets before its deadline. The gateway's 10 s says a service has
    /// stopped answering; here every service is in this process, and its calls run on Swift's
    /// concurrency pool (one thread per core), shared with every test running in parallel. A
    /// full run on two cores was measured to keep a task waiting for a thread up to 7.5 s, so a
    /// call that queues for threads several times could pass 10 s and answer 503 although
    /// nothing was down. These tests check what the routes do, not how fast.
    package static let patience = Duration.seconds(60)
    package let directoryStore: DirectoryStore
    package let directoryDatabase: SQLiteDatabase
    /// The notifier's outbox, for tests that need a message or a suppression in a given state.
    package let outboxDatabase: SQLiteDatabase
    package let backends: Backends
    package let flows: Flows
    package let router: Router<GatewayContext>
    /// The owner's API key (role owner: every permission).
    package let ownerKey: String
    package let ownerID: String
    private let log: CallLog

    /// The RPCs made so far ("Directory/GetUser", …), and forgets them.
    package func takeCalls() -> [String] {
        self.log.calls.withLock { calls in
            defer { calls = [] }
            return calls
        }
    }

    /// Which services answer; a stopped one makes its calls fail with UNAVAILABLE, as a service
    /// that is down does over TCP.
    package init(stopped: Set<String> = [], logger: Logger = Logger(label: "rekey.test", factory: { _ in SwiftLogNoOpLogHandler() })) async throws {
        let clock = SystemWallClock()
        let log = CallLog()
        self.log = log
        self.directoryDatabase = try SQLiteDatabase(path: ":memory:", migrations: DirectoryStore.migrations)
        self.directoryStore = DirectoryStore(clock: clock)
        let hashing = HashingPool(hasher: PasswordHasher(parameters: .init(logN: 8, r: 8, p: 1)), threads: 1)
        let tokensDatabase = try SQLiteDatabase(path: ":memory:", migrations: SQLiteTokenRepository.migrations)
        let outboxDatabase = try SQLiteDatabase(path: ":memory:", migrations: SQLiteOutboxRepository.migrations)
        self.outboxDatabase = outboxDatabase
        let outbox = OutboxStore(
            configuration: .init(fromAddress: "rekey@example.test", messageIDDomain: "example.test"), templates: try MailTemplates(), clock: clock,
            repository: SQLiteOutboxRepository(database: outboxDatabase)
        )
        func transport(_ name: String, _ service: any RPCService, health: String) -> any ClientTransport {
            guard !stopped.contains(name) else { return StoppedTransport(name: name) }
            let dispatcher = RPCDispatcher(
                services: [service, HealthService(services: [health])],
                interceptors: [ServiceCredentialInterceptor(accepted: [Self.credential])],
                logger: logger
            )
            return CountingTransport(log: log, base: InProcessTransport(dispatcher: dispatcher, credential: Self.credential, caller: "gateway"))
        }
        self.backends = Backends(
            directory: transport("directory", DirectoryService(database: .sqlite(self.directoryDatabase), store: self.directoryStore, hashing: hashing), health: Rekey_Directory_V1_Directory.name),
            tokens: transport("reset-token", TokenService(store: TokenStore(configuration: .init(), clock: clock, repository: SQLiteTokenRepository(database: tokensDatabase))), health: Rekey_Tokens_V1_Tokens.name),
            notifier: transport(
                "notifier",
                NotifierService(
                    store: outbox, doorbell: Doorbell(), transport: ("maildir", "in-process"),
                    domainChecker: DomainChecker(
                        check: DomainCheck(
                            resolver: StaticDNS(),
                            configuration: .init(fromAddress: "rekey@example.test", envelopeDomain: "example.test", relayHost: nil, dkim: nil, messageIDDomain: "example.test")
                        ),
                        templates: try MailTemplates()
                    )
                ),
                health: Rekey_Notifier_V1_Notifier.name
            )
        )
        self.flows = Flows(backends: self.backends, publicURL: "https://sso.example.test", logger: logger)
        self.router = Gateway.router(
            flows: self.flows, logger: logger, secret: Self.credential, background: BackgroundQueue(logger: logger), forgotMinimumDuration: .zero
        )
        let store = self.directoryStore
        let (owner, key) = try await self.directoryDatabase.withConnection { connection in
            var new = DirectoryStore.NewUser(name: "Olive Owner", role: "owner", email: "owner@example.com")
            new.emailVerified = true
            let owner = try store.createUser(new, actor: .system, in: connection)
            return (owner, try store.createAPIKey(owner.id, name: "test", lifetime: nil, actor: .system, in: connection).key)
        }
        self.ownerID = owner.id
        self.ownerKey = key
    }

    /// A staff member of `role` (agent: reads only; admin: users.manage) and their API key.
    package func staff(_ name: String, role: String, email: String) async throws -> (id: String, key: String) {
        let store = self.directoryStore
        return try await self.directoryDatabase.withConnection { connection in
            let user = try store.createUser(.init(name: name, role: role, email: email), actor: .system, in: connection)
            return (user.id, try store.createAPIKey(user.id, name: "test", lifetime: nil, actor: .system, in: connection).key)
        }
    }

    /// A sign-on session of the user: the session cookie's value, as signing in would set it.
    package func session(_ userID: String) async throws -> String {
        let store = self.directoryStore
        return try await self.directoryDatabase.withConnection { connection in try store.createSession(userID, in: connection).token }
    }

    /// A custom staff role with the given permissions.
    package func role(_ name: String, permissions: [String]) async throws {
        let store = self.directoryStore
        try await self.directoryDatabase.withConnection { connection in
            _ = try store.createRole(name: name, permissions: permissions, staff: true, actor: .system, in: connection)
        }
    }

    /// An application over the router, for `app.test(.router) { client in … }`.
    package var application: some ApplicationProtocol {
        Application(router: self.router)
    }
}

/// Notes the method of every call that goes through it.
private final class CallLog: Sendable {
    let calls = Mutex<[String]>([])
}

/// Notes each call in the log, and gives it at least ``InProcessSystem/patience``.
private struct CountingTransport: ClientTransport {
    let log: CallLog
    let base: any ClientTransport

    func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        self.log.calls.withLock { $0.append("\(method.service.split(separator: ".").last ?? "")/\(method.method)") }
        let patient = deadline.map { max($0, .now + InProcessSystem.patience) }
        return try await self.base.unary(method: method, payload: payload, metadata: metadata, deadline: patient)
    }
}

/// A service that is down: every call fails with UNAVAILABLE.
private struct StoppedTransport: ClientTransport {
    let name: String

    func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        throw RPCError(.unavailable, "\(self.name) is stopped")
    }
}

/// DNS for the in-process system, from a table: example.test with SPF, DMARC and MX (and no
/// DKIM key, as the in-process notifier does not sign). The real resolver is tested against a
/// DNS server in the notifier's executable tests.
struct StaticDNS: DNSLookup {
    var server: String { "in-process" }

    func lookup(_ name: String, _ type: DNSResolver.RecordType) async throws -> DNSResolver.Lookup {
        switch (name.lowercased(), type) {
        case ("example.test", .txt): .records([.txt("v=spf1 ip4:192.0.2.25 -all")])
        case ("example.test", .mx): .records([.mx(preference: 10, exchange: "mx.example.test")])
        case ("_dmarc.example.test", .txt): .records([.txt("v=DMARC1; p=quarantine")])
        case ("example.test", _), ("mx.example.test", _): .records([])
        default: .noSuchName
        }
    }
}
