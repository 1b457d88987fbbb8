import Logging
import RekeyRPC
import RekeyTesting
import Testing

/// The in-process transport behaves as the TCP one does for a caller: the typed answer, the
/// server's status with its trailers, the credential checked, and the deadline enforced.
@Suite("InProcessTransport")
struct InProcessTransportTests {
    static func client(_ echo: EchoService = EchoService(), credential: String? = "in-process-credential-01") -> Rekey_Testing_V1_Echo.Client {
        let dispatcher = RPCDispatcher(
            services: [echo], interceptors: [ServiceCredentialInterceptor(accepted: ["in-process-credential-01"])], logger: Logger(label: "test")
        )
        return Rekey_Testing_V1_Echo.Client(wrapping: InProcessTransport(dispatcher: dispatcher, credential: credential, caller: "tests"))
    }

    static func request(_ text: String, failWithCode: Int32 = 0) -> Rekey_Testing_V1_EchoRequest {
        var request = Rekey_Testing_V1_EchoRequest()
        request.text = text
        request.failWithCode = failWithCode
        return request
    }

    @Test("an answer, with the request id passed on")
    func answers() async throws {
        // An hour: however loaded the machine, the handler sees time left.
        var options = CallOptions(timeout: .seconds(3600))
        options.metadata[MetadataKey.requestID] = "req-in-process-1"
        let response = try await Self.client().echo(Self.request("hello"), options: options)
        #expect(response.text == "hello")
        #expect(response.requestID == "req-in-process-1")
        #expect(response.deadlineLeftMicros > 0, "the handler sees the caller's deadline")
    }

    @Test("the server's status and trailers; a missing credential is refused as over TCP")
    func errors() async throws {
        do {
            _ = try await Self.client().echo(Self.request("x", failWithCode: RPCError.Code.notFound.rawValue), options: .defaults)
            Issue.record("no error")
        } catch let error as RPCError {
            #expect(error.code == .notFound)
            #expect(error.trailers["echo-trailer"] == "yes")
        }
        await #expect(throws: RPCError.self) { try await Self.client(credential: nil).echo(Self.request("x"), options: .defaults) }
    }

    @Test("past the deadline: DEADLINE_EXCEEDED, and the handler is cancelled")
    func deadline() async throws {
        let echo = EchoService()
        do {
            // Blocks until released, which never happens: only the deadline can end the call.
            _ = try await Self.client(echo).echo(Self.request(EchoService.blockingText), options: CallOptions(timeout: .milliseconds(50)))
            Issue.record("no error")
        } catch let error as RPCError {
            #expect(error.code == .deadlineExceeded)
        }
        #expect(await RekeyTestingWait.until { echo.cancelledCalls == 1 })
    }
}

/// Waits for a condition, polling, for up to thirty seconds.
enum RekeyTestingWait {
    static func until(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<3000 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}
