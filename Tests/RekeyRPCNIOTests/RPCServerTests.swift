import Logging
import NIOCore
import RekeyProtobuf
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import Testing

typealias EchoRequest = Rekey_Testing_V1_EchoRequest
let echoMethod = Rekey_Testing_V1_Echo.Method.Echo.descriptor

func echoRequest(_ text: String, delayMillis: UInt32 = 0, data: [UInt8] = []) -> EchoRequest {
    var request = EchoRequest()
    request.text = text
    request.delayMillis = delayMillis
    request.data = data
    return request
}

/// Waits for `condition`, checking every few milliseconds, for at most ten seconds.
func eventually(_ what: Comment, _ condition: () -> Bool) async throws {
    for _ in 0..<2000 {
        if condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    Issue.record("timed out waiting: \(what)")
}

@Suite("RPC over TCP")
struct RPCServerTests {
    @Test("the health method answers SERVING, without a credential")
    func health() async throws {
        try await withRPCServer(services: []) { _, port in
            try await withRPCClient(port: port, credential: nil) { client in
                let response = try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init())
                #expect(response.status == .serving)
                var unknown = Rekey_Health_V1_HealthCheckRequest()
                unknown.service = "rekey.nothing.v1.Nothing"
                #expect(try await Rekey_Health_V1_Health.Client(wrapping: client).check(unknown).status == .serviceUnknown)
            }
        }
    }

    @Test("many calls share one connection and each gets its own answer")
    func multiplexing() async throws {
        try await withRPCServer(services: [EchoService()]) { _, port in
            try await withRPCClient(port: port) { client in
                let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<200 {
                        group.addTask {
                            let response = try await echo.echo(echoRequest("call \(index)", data: [UInt8(index % 256)]))
                            #expect(response.text == "call \(index)")
                            #expect(response.data == [UInt8(index % 256)])
                        }
                    }
                    try await group.waitForAll()
                }
            }
        }
    }

    @Test("answers come in the order calls finish, not the order they were sent")
    func outOfOrder() async throws {
        let service = EchoService()
        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
                let blocked = Task { try await echo.echo(echoRequest(EchoService.blockingText)) }
                await service.waitUntilRunning(1)
                let fast = try await echo.echo(echoRequest("fast"))
                #expect(fast.text == "fast")
                #expect(service.runningCalls == 1, "the blocked call is still running")
                service.release()
                #expect(try await blocked.value.text == EchoService.blockingText)
            }
        }
    }

    @Test("a call past its deadline fails with DEADLINE_EXCEEDED and its handler is cancelled")
    func deadlineExceeded() async throws {
        let service = EchoService()
        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
                // Connect first: on a loaded machine, connecting could use up the deadline before
                // the request is even sent, and then no handler runs to be cancelled.
                #expect(try await echo.echo(echoRequest("before")).text == "before")
                // A loaded machine may still deliver the call after its deadline, when the server
                // answers without running a handler: then it is tried again with a longer one.
                for seconds in [1, 4, 16] where service.blockedCalls == 0 {
                    let error = await #expect(throws: RPCError.self) {
                        try await echo.echo(echoRequest(EchoService.blockingText), options: CallOptions(timeout: .seconds(seconds)))
                    }
                    #expect(error?.code == .deadlineExceeded)
                }
                try #require(service.blockedCalls >= 1, "a blocking call reached its handler")
                // Every handler that started waits for a release that never comes: each must be cancelled.
                try await eventually("the server cancels the handler") { service.runningCalls == 0 && service.cancelledCalls == service.blockedCalls }
                // The connection is still good for other calls.
                #expect(try await echo.echo(echoRequest("after")).text == "after")
            }
        }
    }

    @Test("the server sees the time the client has left")
    func deadlinePropagates() async throws {
        try await withRPCServer(services: [EchoService()]) { _, port in
            try await withRPCClient(port: port) { client in
                // An hour: however loaded the machine (connecting included), time is left.
                let response = try await Rekey_Testing_V1_Echo.Client(wrapping: client)
                    .echo(echoRequest("x"), options: CallOptions(timeout: .seconds(3600)))
                #expect(response.deadlineLeftMicros > 0)
                #expect(response.deadlineLeftMicros <= 3_600_000_000)
                let none = try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(echoRequest("x"))
                #expect(none.deadlineLeftMicros == 0)
            }
        }
    }

    @Test("a missing or wrong credential answers UNAUTHENTICATED", arguments: [nil, "wrong"] as [String?])
    func credentials(credential: String?) async throws {
        try await withRPCServer(services: [EchoService()]) { _, port in
            try await withRPCClient(port: port, credential: credential) { client in
                let error = await #expect(throws: RPCError.self) {
                    try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(echoRequest("x"))
                }
                #expect(error?.code == .unauthenticated)
            }
        }
    }

    @Test("an unknown method answers UNIMPLEMENTED and a payload that does not decode INVALID_ARGUMENT; the connection stays up")
    func badCalls() async throws {
        try await withRPCServer(services: [EchoService()]) { _, port in
            try await withRPCClient(port: port) { client in
                let unknown = await #expect(throws: RPCError.self) {
                    try await client.unary(method: MethodDescriptor(service: "rekey.testing.v1.Echo", method: "Nope"), payload: [], metadata: [:], deadline: nil)
                }
                #expect(unknown?.code == .unimplemented)
                let invalid = await #expect(throws: RPCError.self) {
                    try await client.unary(method: echoMethod, payload: [0xFF, 0xFF, 0xFF], metadata: [:], deadline: nil)
                }
                #expect(invalid?.code == .invalidArgument)
                let after = try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(echoRequest("still here"))
                #expect(after.text == "still here")
            }
        }
    }

    @Test("an error's code, message and trailers reach the client")
    func errorDetails() async throws {
        try await withRPCServer(services: [EchoService()]) { _, port in
            try await withRPCClient(port: port) { client in
                var request = echoRequest("x")
                request.failWithCode = RPCError.Code.resourceExhausted.rawValue
                let error = await #expect(throws: RPCError.self) {
                    try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(request)
                }
                #expect(error == RPCError(.resourceExhausted, "failed as asked", trailers: ["echo-trailer": "yes"]))

                request.failWithCode = EchoService.unexpectedErrorCode
                let hidden = await #expect(throws: RPCError.self) {
                    try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(request)
                }
                #expect(hidden?.code == .internalError)
                #expect(hidden?.message.contains("secret") == false)
            }
        }
    }

    @Test("no more than the configured number of calls run at once on a connection")
    func concurrencyBound() async throws {
        let service = EchoService()
        var configuration = RPCServer.Configuration.defaults
        configuration.maxConcurrentCallsPerConnection = 2
        try await withRPCServer(services: [service], configuration: configuration) { _, port in
            try await withRPCClient(port: port) { client in
                let echo = Rekey_Testing_V1_Echo.Client(wrapping: client)
                try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in 0..<10 {
                        group.addTask { try await echo.echo(echoRequest(EchoService.blockingText)).text }
                    }
                    await service.waitUntilRunning(2)
                    // Give the server every chance to start more than it may.
                    for _ in 0..<100 { await Task.yield() }
                    try await Task.sleep(for: .milliseconds(50))
                    #expect(service.runningCalls == 2)
                    service.release()
                    var answered = 0
                    for try await text in group {
                        #expect(text == EchoService.blockingText)
                        answered += 1
                    }
                    #expect(answered == 10)
                }
                #expect(service.maxConcurrentCalls == 2)
            }
        }
    }
}
