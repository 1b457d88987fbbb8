import Logging
import Metrics
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyRPCNIO
import RekeyTokensAPI
import Synchronization

/// The three services the gateway calls: over TCP (one multiplexed RPC connection each), or in
/// the same process (``init(directory:tokens:notifier:)`` with in-process transports, for tests).
///
/// Each client's transport is wrapped so that an error saying the service did not answer names
/// that service (`RPCError.service`): which one failed is known from where the call went.
package struct Backends: Sendable {
    package let directory: Rekey_Directory_V1_Directory.Client
    package let tokens: Rekey_Tokens_V1_Tokens.Client
    package let notifier: Rekey_Notifier_V1_Notifier.Client
    private let transports: [NamedTransport]
    /// Over TCP: each service's replicas, in the order of `transports`; empty in-process.
    private let pools: [ReplicaPool]

    package struct Endpoint: Sendable {
        package var host: String
        package var port: Int

        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    /// Over TCP: with mutual TLS (`tls`, each service's certificate checked to name it), or in
    /// plaintext presenting `credential` to each service. Each service may have several replicas:
    /// calls are spread over them and move on from one that fails (``ReplicaSet``); the lists can
    /// change later (``updateReplicas(directory:tokens:notifier:)``).
    package init(
        directory: [Endpoint], tokens: [Endpoint], notifier: [Endpoint], credential: String?, tls: RPCTLS? = nil, logger: Logger
    ) {
        func pool(_ endpoints: [Endpoint], _ workload: String, safe: Set<String>) -> ReplicaPool {
            var serviceLogger = logger
            serviceLogger[metadataKey: "rpc.service"] = "rekey-\(workload)"
            return ReplicaPool(label: workload, endpoints: endpoints, isSafeToRepeat: { safe.contains($0.method) }, logger: serviceLogger) { endpoint in
                RPCClient(
                    configuration: .init(
                        host: endpoint.host, port: endpoint.port, credential: tls == nil ? credential : nil, caller: "gateway", tls: tls, serverIdentity: workload
                    ),
                    logger: logger
                )
            }
        }
        let pools = [
            pool(directory, "directory", safe: Self.safeToRepeat.directory),
            pool(tokens, "reset-token", safe: Self.safeToRepeat.tokens),
            pool(notifier, "notifier", safe: Self.safeToRepeat.notifier),
        ]
        self.init(transports: pools.map { NamedTransport(label: $0.label, base: $0.set, replicas: $0.set) }, pools: pools)
    }

    /// What changed in one service's list of replicas.
    package struct ReplicaChange: Sendable {
        /// "directory", "reset-token" or "notifier".
        package var service: String
        package var replicas: [String]
        package var added: [String]
        package var removed: [String]
    }

    /// Makes these the replicas of each service from the next call on: a replica still listed
    /// keeps its connection, a new one is connected to when first called, and a removed one's
    /// connection closes once the calls already sent to it have had their time. Returns what
    /// changed (nothing for a service whose list is the same, in the same order). Does nothing
    /// in-process.
    @discardableResult
    package func updateReplicas(directory: [Endpoint], tokens: [Endpoint], notifier: [Endpoint]) -> [ReplicaChange] {
        zip(self.pools, [directory, tokens, notifier]).compactMap { pool, endpoints in pool.update(endpoints) }
    }

    /// The methods a replica set may send to a second replica after the first failed mid-call:
    /// reads, and writes carrying their own idempotency (Enqueue's required key). Health is
    /// always safe. Writes such as IssueToken, RedeemToken or SetPassword move only when no
    /// server started them.
    package static let safeToRepeat = (
        directory: Set([
            "GetUser", "FindUserByEmail", "SearchUsers", "ListUsers", "GetOrganization", "ListOrganizations", "ListRoles",
            "CheckPermission", "CheckPasswordPolicy", "ListAuditRecords", "Check",
        ]),
        tokens: Set(["PeekToken", "ListUserTokens", "ListUserEvents", "GetRateLimitStatus", "Check"]),
        notifier: Set(["Enqueue", "GetMessage", "ListMessages", "ListSuppressions", "GetQueueStats", "CheckDomain", "Check"])
    )

    /// Over any transports, such as ``InProcessTransport``s.
    package init(directory: any ClientTransport, tokens: any ClientTransport, notifier: any ClientTransport) {
        self.init(
            transports: [
                NamedTransport(label: "directory", base: directory),
                NamedTransport(label: "reset-token", base: tokens),
                NamedTransport(label: "notifier", base: notifier),
            ],
            pools: []
        )
    }

    private init(transports: [NamedTransport], pools: [ReplicaPool]) {
        self.transports = transports
        self.pools = pools
        self.directory = Rekey_Directory_V1_Directory.Client(wrapping: transports[0])
        self.tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: transports[1])
        self.notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: transports[2])
    }

    package func close() async {
        for pool in self.pools { await pool.close() }
    }

    /// Asks each service's health; the names of those that did not answer SERVING.
    package func unhealthy(requestID: String) async -> [String] {
        let services = [Rekey_Directory_V1_Directory.name, Rekey_Tokens_V1_Tokens.name, Rekey_Notifier_V1_Notifier.name]
        return await withTaskGroup(of: String?.self) { group in
            for (transport, service) in zip(self.transports, services) {
                group.addTask {
                    var request = Rekey_Health_V1_HealthCheckRequest()
                    request.service = service
                    let status = try? await Rekey_Health_V1_Health.Client(wrapping: transport).check(request, options: Self.options(requestID, timeout: .seconds(2)))
                    return status?.status == .serving ? nil : transport.label
                }
            }
            var down: [String] = []
            for await label in group {
                if let label { down.append(label) }
            }
            return down.sorted()
        }
    }

    /// Call options carrying the request id of the external request and a deadline.
    package static func options(_ requestID: String, timeout: Duration = .seconds(10)) -> CallOptions {
        var metadata = Metadata()
        metadata[MetadataKey.requestID] = requestID
        return CallOptions(timeout: timeout, metadata: metadata)
    }
}

/// A transport that puts its service's name on the errors saying the service did not answer.
private struct NamedTransport: ClientTransport {
    /// "directory": for `/readyz`.
    let label: String
    let base: any ClientTransport
    /// Over TCP, the replicas named in errors: "rekey-directory (10.0.0.11:7101)".
    var replicas: ReplicaSet? = nil

    func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        do {
            return try await self.base.unary(method: method, payload: payload, metadata: metadata, deadline: deadline)
        } catch var error as RPCError where error.code == .unavailable || error.code == .deadlineExceeded {
            error.service = "rekey-\(self.label) (\(self.replicas?.names.joined(separator: ", ") ?? "in-process"))"
            throw error
        }
    }
}

/// One service's replicas over TCP: a client (one connection) per listed endpoint, kept while the
/// endpoint stays listed. Metric: `rekey_gateway_replicas{service}`, how many are listed.
private final class ReplicaPool: Sendable {
    let label: String
    let set: ReplicaSet
    private let makeClient: @Sendable (Backends.Endpoint) -> RPCClient
    private let gauge: Gauge
    /// The clients listed now, by "host:port", and those removed but not yet closed.
    private let clients: Mutex<(listed: [String: RPCClient], retired: [RPCClient])>

    /// How long a removed replica's connection stays open for the calls already sent to it: more
    /// than any deadline the gateway gives a call.
    static let retirement = Duration.seconds(30)

    init(
        label: String, endpoints: [Backends.Endpoint], isSafeToRepeat: @escaping @Sendable (MethodDescriptor) -> Bool, logger: Logger,
        makeClient: @escaping @Sendable (Backends.Endpoint) -> RPCClient
    ) {
        self.label = label
        self.makeClient = makeClient
        self.gauge = Gauge(label: "rekey_gateway_replicas", dimensions: [("service", label)])
        var listed: [String: RPCClient] = [:]
        let replicas = endpoints.map { endpoint in
            let client = listed[Self.name(endpoint)] ?? makeClient(endpoint)
            listed[Self.name(endpoint)] = client
            return ReplicaSet.Replica(name: Self.name(endpoint), transport: client)
        }
        self.set = ReplicaSet(replicas, isSafeToRepeat: isSafeToRepeat, logger: logger)
        self.clients = Mutex((listed, []))
        self.gauge.record(endpoints.count)
    }

    static func name(_ endpoint: Backends.Endpoint) -> String {
        "\(endpoint.host):\(endpoint.port)"
    }

    func update(_ endpoints: [Backends.Endpoint]) -> Backends.ReplicaChange? {
        let names = endpoints.map(Self.name)
        guard !endpoints.isEmpty, names != self.set.names else { return nil }
        let (replicas, added, removed): ([ReplicaSet.Replica], [String], [String: RPCClient]) = self.clients.withLock { clients in
            var listed: [String: RPCClient] = [:]
            var added: [String] = []
            let replicas = zip(endpoints, names).map { endpoint, name in
                let client = listed[name] ?? clients.listed[name] ?? {
                    added.append(name)
                    return self.makeClient(endpoint)
                }()
                listed[name] = client
                return ReplicaSet.Replica(name: name, transport: client)
            }
            let removed = clients.listed.filter { listed[$0.key] == nil }
            clients.listed = listed
            clients.retired += removed.values
            return (replicas, added, removed)
        }
        self.set.replace(with: replicas)
        self.gauge.record(endpoints.count)
        for client in removed.values {
            Task {
                try? await Task.sleep(for: Self.retirement)
                await client.close()
                self.clients.withLock { clients in clients.retired.removeAll { $0 === client } }
            }
        }
        return Backends.ReplicaChange(service: self.label, replicas: names, added: added, removed: removed.keys.sorted())
    }

    func close() async {
        let all = self.clients.withLock { Array($0.listed.values) + $0.retired }
        for client in all { await client.close() }
    }
}
