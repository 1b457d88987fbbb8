import Logging
import NIOCore
import NIOPosix
import RekeyRPC
import RekeyRPCNIO

/// The service credential that tests use.
package let testCredential = "test-credential-0123456789abcdef"

/// Runs an RPC server on 127.0.0.1 with a free port for the duration of `body`, then drains it
/// and waits until it has stopped.
package func withRPCServer<R>(
    services: [any RPCService],
    interceptors: [any ServerInterceptor] = [ServiceCredentialInterceptor(accepted: [testCredential])],
    configuration: RPCServer.Configuration = .defaults,
    health: HealthService? = HealthService(),
    logger: Logger = Logger(label: "rekey.test.server"),
    _ body: (RPCServer, Int) async throws -> R
) async throws -> R {
    let server = RPCServer(
        configuration: configuration,
        services: services,
        interceptors: interceptors,
        health: health,
        logger: logger
    )
    let running = Task { try await server.run() }
    let port: Int
    do {
        port = try await server.localAddress.port!
    } catch {
        running.cancel()
        _ = try? await running.value
        throw error
    }
    do {
        let result = try await body(server, port)
        server.beginShutdown()
        try await running.value
        return result
    } catch {
        server.beginShutdown()
        _ = try? await running.value
        throw error
    }
}

/// A client for a test server on 127.0.0.1, closed when `body` returns. Connecting (with its TLS
/// handshake) may take 60 s, not the production 5 s: the full suite on two cores was seen to take
/// longer, and a client that gave up then hung up on the server mid-handshake, which a test of
/// the server's refusal reasons read as the wrong reason. No test is about connecting quickly.
package func withRPCClient<R>(
    port: Int,
    credential: String? = testCredential,
    configure: (inout RPCClient.Configuration) -> Void = { _ in },
    _ body: (RPCClient) async throws -> R
) async throws -> R {
    var configuration = RPCClient.Configuration(host: "127.0.0.1", port: port, credential: credential, caller: "tests", connectTimeout: .seconds(60))
    configure(&configuration)
    let client = RPCClient(configuration: configuration, logger: Logger(label: "rekey.test.client"))
    do {
        let result = try await body(client)
        await client.close()
        return result
    } catch {
        await client.close()
        throw error
    }
}
