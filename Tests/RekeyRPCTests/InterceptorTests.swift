import Logging
import MetricsTestKit
import RekeyProtobuf
import RekeyRPC
import RekeyTesting
import Testing

@Suite("Metrics and logging interceptors")
struct InterceptorTests {
    func call(_ dispatcher: RPCDispatcher, failWithCode: Int32 = 0) async throws -> CallOutcome {
        var request = Rekey_Testing_V1_EchoRequest()
        request.text = "x"
        request.failWithCode = failWithCode
        let call = IncomingCall(
            method: Rekey_Testing_V1_Echo.Method.Echo.descriptor.fullyQualifiedMethod,
            metadata: [MetadataKey.requestID: "req-42", MetadataKey.caller: "gateway"],
            payload: try request.serializedBytes(),
            deadline: nil,
            peer: "test"
        )
        return await dispatcher.handle(call, context: dispatcher.makeContext(for: call))
    }

    @Test("calls are counted by method and status, timed, and none stays in flight")
    func metrics() async throws {
        let metrics = TestMetrics()
        let dispatcher = RPCDispatcher(services: [EchoService()], interceptors: [MetricsInterceptor(factory: metrics)], logger: Logger(label: "test"))
        _ = try await self.call(dispatcher)
        _ = try await self.call(dispatcher)
        _ = try await self.call(dispatcher, failWithCode: 5)
        let method = Rekey_Testing_V1_Echo.Method.Echo.descriptor.fullyQualifiedMethod
        let ok = try metrics.expectCounter("rekey_rpc_server_requests_total", [("method", method), ("code", "OK")])
        #expect(ok.totalValue == 2)
        let notFound = try metrics.expectCounter("rekey_rpc_server_requests_total", [("method", method), ("code", "NOT_FOUND")])
        #expect(notFound.totalValue == 1)
        let timer = try metrics.expectTimer("rekey_rpc_server_request_duration_seconds", [("method", method)])
        #expect(timer.values.count == 3)
        let inFlight = try metrics.expectMeter("rekey_rpc_server_requests_in_flight")
        #expect(inFlight.lastValue == 0)
    }

    @Test("failed calls are logged with their status and request id; successes only at debug")
    func logging() async throws {
        let capture = LogCapture()
        let dispatcher = RPCDispatcher(services: [EchoService()], interceptors: [LoggingInterceptor()], logger: capture.logger(level: .info))
        _ = try await self.call(dispatcher)
        #expect(capture.lines.isEmpty)
        _ = try await self.call(dispatcher, failWithCode: 7)
        let line = try #require(capture.lines.first)
        #expect(line.contains("rpc failed"))
        #expect(line.contains("rpc.code=PERMISSION_DENIED"))
        #expect(line.contains("request.id=req-42"))
        #expect(line.contains("rpc.caller=gateway"))
    }

    @Test("refusals are logged once per peer address per interval, with the count left out")
    func refusalsRateLimited() async throws {
        let capture = LogCapture()
        let dispatcher = RPCDispatcher(services: [EchoService()], interceptors: [LoggingInterceptor()], logger: capture.logger(level: .info))
        for _ in 0..<200 {
            _ = try await self.call(dispatcher, failWithCode: 16)
        }
        #expect(capture.lines.count == 1, "\(capture.lines.count) lines")
        _ = try await self.call(dispatcher, failWithCode: 5)
        #expect(capture.lines.count == 2, "other failures are not limited")

        let limiter = RefusalLogLimiter(interval: .seconds(10), capacity: 2)
        let start = ContinuousClock.now
        #expect(limiter.admit(peer: "[IPv4]192.0.2.1/192.0.2.1:5000", now: start) == (true, 0))
        #expect(limiter.admit(peer: "[IPv4]192.0.2.1/192.0.2.1:5001", now: start + .seconds(1)) == (false, 0), "another port of the same address")
        #expect(limiter.admit(peer: "[IPv4]192.0.2.1/192.0.2.1:5002", now: start + .seconds(2)) == (false, 0))
        #expect(limiter.admit(peer: "[IPv4]192.0.2.2/192.0.2.2:5000", now: start + .seconds(2)) == (true, 0))
        #expect(limiter.admit(peer: "[IPv4]192.0.2.1/192.0.2.1:5000", now: start + .seconds(11)) == (true, 2), "the next window says how many were left out")
        #expect(limiter.admit(peer: "[IPv4]192.0.2.3/192.0.2.3:5000", now: start + .seconds(12)) == (true, 0), "a full table forgets old windows")
    }
}
