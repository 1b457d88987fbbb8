import Logging
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyRPCNIO
import RekeyTokensAPI

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
    private let closeAll: @Sendable () async -> Void

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
    /// calls are spread over them and move on from one that fails (``ReplicaSet``).
    package init(
        directory: [Endpoint], tokens: [Endpoint], notifier: [Endpoint], credential: String?, tls: RPCTLS? = nil, logger: Logger
    ) {
        var clients: [RPCClient] = []
        func replicas(_ endpoints: [Endpoint], _ workload: String, label: String, safe: Set<String>) -> NamedTransport {
            var serviceLogger = logger
            serviceLogger[metadataKey: "rpc.service"] = "rekey-\(label)"
            let set = ReplicaSet(
                endpoints.map { endpoint in
                    let client = RPCClient(
                        configuration: .init(
                            host: endpoint.host, port: endpoint.port, credential: tls == nil ? credential : nil, caller: "gateway", tls: tls, serverIdentity: workload
                        ),
                        logger: logger
                    )
                    clients.append(client)
                    return ReplicaSet.Replica(name: "\(endpoint.host):\(endpoint.port)", transport: client)
                },
                isSafeToRepeat: { safe.contains($0.method) },
                logger: serviceLogger
            )
            return NamedTransport(name: "rekey-\(label) (\(set.names.joined(separator: ", ")))", label: label, base: set)
        }
        let transports = [
            replicas(directory, "directory", label: "directory", safe: Self.safeToRepeat.directory),
            replicas(tokens, "reset-token", label: "reset-token", safe: Self.safeToRepeat.tokens),
            replicas(notifier, "notifier", label: "notifier", safe: Self.safeToRepeat.notifier),
        ]
        let all = clients
        self.init(
            transports: transports,
            close: {
                for client in all { await client.close() }
            }
        )
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
                NamedTransport(name: "rekey-directory (in-process)", label: "directory", base: directory),
                NamedTransport(name: "rekey-reset-token (in-process)", label: "reset-token", base: tokens),
                NamedTransport(name: "rekey-notifier (in-process)", label: "notifier", base: notifier),
            ],
            close: {}
        )
    }

    private init(transports: [NamedTransport], close: @escaping @Sendable () async -> Void) {
        self.transports = transports
        self.closeAll = close
        self.directory = Rekey_Directory_V1_Directory.Client(wrapping: transports[0])
        self.tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: transports[1])
        self.notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: transports[2])
    }

    package func close() async {
        await self.closeAll()
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
    /// "rekey-directory (10.0.0.11:7101)": for error messages.
    let name: String
    /// "directory": for `/readyz`.
    let label: String
    let base: any ClientTransport

    func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        do {
            return try await self.base.unary(method: method, payload: payload, metadata: metadata, deadline: deadline)
        } catch var error as RPCError where error.code == .unavailable || error.code == .deadlineExceeded {
            error.service = self.name
            throw error
        }
    }
}
