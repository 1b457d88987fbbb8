import Logging
import NIOCore
import NIOPosix
import RekeyProtobuf
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import ServiceLifecycle
import Testing

@Suite("Draining and reconnecting")
struct LifecycleTests {
    @Test("a graceful shutdown lets in-flight calls finish, refuses new ones, and reports NOT_SERVING, on open connections too")
    func drain() async throws {
        let service = EchoService()
        let health = HealthService()
        // What is checked is the order of things, not speed: the drain may take as long as the
        // busy first minute of the suite makes it (the default 10 s were once not enough).
        var configuration = RPCServer.Configuration.defaults
        configuration.drainTimeout = .seconds(300)
        let server = RPCServer(
            configuration: configuration,
            services: [service],
            interceptors: [ServiceCredentialInterceptor(accepted: [testCredential])],
            health: health,
            logger: Logger(label: "test")
        )
        let group = ServiceGroup(services: [server], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        let port = try await server.localAddress.port!

        try await withRPCClient(port: port) { client in
            let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
            let inFlight = Task { try await echo.echo(echoRequest(EchoService.blockingText)) }
            await service.waitUntilRunning(1)

            await group.triggerGracefulShutdown()
            try await eventually("health turns NOT_SERVING") {
                health.currentStatus() == .notServing
            }
            // A new call on the open connection is refused while the old one runs.
            let refused = await #expect(throws: RPCError.self) { try await echo.echo(echoRequest("new")) }
            #expect(refused?.code == .unavailable)
            // Health on that open connection answers, and says NOT_SERVING (not UNAVAILABLE).
            let status = try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init())
            #expect(status.status == .notServing)
            // New connections are not accepted any more.
            try await withRPCClient(port: port) { other in
                let error = await #expect(throws: RPCError.self) {
                    try await Rekey_Health_V1_Health.Client(wrapping: other).check(.init())
                }
                #expect(error?.code == .unavailable)
            }

            service.release()
            let finished = try await inFlight.value
            #expect(finished.text == EchoService.blockingText)
        }
        try await running.value
    }

    @Test("calls still running when the drain timeout passes are cut off, and the server stops")
    func drainTimeout() async throws {
        let service = EchoService()
        var configuration = RPCServer.Configuration.defaults
        configuration.drainTimeout = .milliseconds(100)
        let server = RPCServer(configuration: configuration, services: [service], logger: Logger(label: "test"))
        let running = Task { try await server.run() }
        let port = try await server.localAddress.port!
        try await withRPCClient(port: port, credential: nil) { client in
            let inFlight = Task { try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(echoRequest(EchoService.blockingText)) }
            await service.waitUntilRunning(1)
            server.beginShutdown()
            try await running.value
            let error = await #expect(throws: RPCError.self) { try await inFlight.value }
            #expect(error?.code == .unavailable)
        }
    }

    @Test("a peer that is down fails calls at once with UNAVAILABLE, and the client reconnects when it is back")
    func reconnect() async throws {
        // A port held but not listening: connections are refused, and no other test's server
        // can take it meanwhile.
        let reservation = try PortReservation()
        let port = reservation.port
        try await withRPCClient(port: port, configure: {
            $0.initialBackoff = .milliseconds(20)
            $0.maxBackoff = .milliseconds(50)
        }) { client in
            let health = Rekey_Health_V1_Health.Client(wrapping: client)
            let first = await #expect(throws: RPCError.self) { try await health.check(.init()) }
            #expect(first?.code == .unavailable)
            // Within the back-off, the client does not even try: same answer.
            let second = await #expect(throws: RPCError.self) { try await health.check(.init()) }
            #expect(second?.code == .unavailable)

            var configuration = RPCServer.Configuration.defaults
            configuration.port = port
            reservation.release()
            try await withRPCServer(services: [], configuration: configuration) { _, _ in
                var answer: Rekey_Health_V1_HealthCheckResponse?
                for _ in 0..<200 where answer == nil {
                    answer = try? await health.check(.init())
                    if answer == nil { try await Task.sleep(for: .milliseconds(10)) }
                }
                #expect(answer?.status == .serving)
            }
            // The server went away again: calls fail, they do not hang.
            let third = await #expect(throws: RPCError.self) { try await health.check(.init(), options: CallOptions(timeout: .seconds(30))) }
            #expect(third?.code == .unavailable)
        }
    }

    @Test("a server that accepts but never answers cannot make a call outlive its deadline")
    func unresponsivePeer() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = silent.localAddress!.port!
        try await withRPCClient(port: port) { client in
            let error = await #expect(throws: RPCError.self) {
                try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init(), options: CallOptions(timeout: .milliseconds(100)))
            }
            #expect(error?.code == .deadlineExceeded)
        }
        try await silent.close()
    }

    @Test("a cancelled caller gets CANCELLED and the connection stays usable")
    func cancellation() async throws {
        let service = EchoService()
        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
                let call = Task { try await echo.echo(echoRequest(EchoService.blockingText)) }
                await service.waitUntilRunning(1)
                call.cancel()
                let error = await #expect(throws: RPCError.self) { try await call.value }
                #expect(error?.code == .cancelled)
                service.release()
                let after = try await echo.echo(echoRequest("after"))
                #expect(after.text == "after")
            }
        }
    }
}
