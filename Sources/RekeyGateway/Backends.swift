import Logging
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyRPC
import RekeyRPCNIO
import RekeyTokensAPI

/// The three services the gateway calls, each over one multiplexed RPC connection.
package struct Backends: Sendable {
    package let directory: Rekey_Directory_V1_Directory.Client
    package let tokens: Rekey_Tokens_V1_Tokens.Client
    package let notifier: Rekey_Notifier_V1_Notifier.Client
    private let clients: [RPCClient]
    private let endpoints: [(name: String, address: String)]

    package struct Endpoint: Sendable {
        package var host: String
        package var port: Int

        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    package init(directory: Endpoint, tokens: Endpoint, notifier: Endpoint, credential: String, logger: Logger) {
        func client(_ endpoint: Endpoint) -> RPCClient {
            RPCClient(configuration: .init(host: endpoint.host, port: endpoint.port, credential: credential, caller: "gateway"), logger: logger)
        }
        let clients = [client(directory), client(tokens), client(notifier)]
        self.endpoints = [
            ("rekey-directory", "\(directory.host):\(directory.port)"), ("rekey-reset-token", "\(tokens.host):\(tokens.port)"),
            ("rekey-notifier", "\(notifier.host):\(notifier.port)"),
        ]
        self.clients = clients
        self.directory = Rekey_Directory_V1_Directory.Client(wrapping: clients[0])
        self.tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: clients[1])
        self.notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: clients[2])
    }

    /// Which service an UNAVAILABLE or DEADLINE_EXCEEDED error came from, as "rekey-directory
    /// (host:port)", when its message names the address (the RPC client's do).
    package func service(of error: RPCError) -> String? {
        self.endpoints.first { error.message.contains($0.address) }.map { "\($0.name) (\($0.address))" }
    }

    package func close() async {
        for client in self.clients {
            await client.close()
        }
    }

    /// Asks each service's health; the names of those that did not answer SERVING.
    package func unhealthy(requestID: String) async -> [String] {
        let services = [
            ("directory", self.clients[0], Rekey_Directory_V1_Directory.name),
            ("reset-token", self.clients[1], Rekey_Tokens_V1_Tokens.name),
            ("notifier", self.clients[2], Rekey_Notifier_V1_Notifier.name),
        ]
        return await withTaskGroup(of: String?.self) { group in
            for (label, client, service) in services {
                group.addTask {
                    var request = Rekey_Health_V1_HealthCheckRequest()
                    request.service = service
                    let status = try? await Rekey_Health_V1_Health.Client(wrapping: client).check(request, options: Self.options(requestID, timeout: .seconds(2)))
                    return status?.status == .serving ? nil : label
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
