import Logging
import RekeyProtobuf
import RekeyRPC
import RekeyTesting
import Synchronization
import Testing

@Suite("RPCDispatcher")
struct RPCDispatcherTests {
    let echoMethod = Rekey_Testing_V1_Echo.Method.Echo.descriptor.fullyQualifiedMethod

    func dispatcher(
        interceptors: [any ServerInterceptor] = [],
        services: [any RPCService] = [EchoService(), HealthService()],
        logger: Logger = Logger(label: "test")
    ) -> RPCDispatcher {
        RPCDispatcher(services: services, interceptors: interceptors, logger: logger)
    }

    func call(
        _ dispatcher: RPCDispatcher,
        method: String,
        payload: [UInt8] = [],
        metadata: Metadata = [:]
    ) async -> (CallOutcome, ServerContext) {
        let call = IncomingCall(method: method, metadata: metadata, payload: payload, deadline: nil, peer: "test")
        let context = dispatcher.makeContext(for: call)
        return (await dispatcher.handle(call, context: context), context)
    }

    func echo(_ text: String, failWithCode: Int32 = 0) throws -> [UInt8] {
        var request = Rekey_Testing_V1_EchoRequest()
        request.text = text
        request.failWithCode = failWithCode
        return try request.serializedBytes()
    }

    @Test("a call is routed to its typed handler")
    func routes() async throws {
        let (outcome, _) = await self.call(self.dispatcher(), method: self.echoMethod, payload: try self.echo("hi"))
        #expect(outcome.code == .ok)
        #expect(try Rekey_Testing_V1_EchoResponse(serializedBytes: outcome.payload).text == "hi")
    }

    @Test("an unknown method answers UNIMPLEMENTED")
    func unknownMethod() async {
        let (outcome, _) = await self.call(self.dispatcher(), method: "/rekey.testing.v1.Echo/Nope")
        #expect(outcome.code == .unimplemented)
        #expect(outcome.message.contains("/rekey.testing.v1.Echo/Nope"))
    }

    @Test("a payload that does not decode answers INVALID_ARGUMENT")
    func badPayload() async {
        let (outcome, _) = await self.call(self.dispatcher(), method: self.echoMethod, payload: [0xFF, 0xFF])
        #expect(outcome.code == .invalidArgument)
        #expect(outcome.message.contains("rekey.testing.v1.EchoRequest"))
    }

    @Test("an RPCError from a handler reaches the caller with its code, message and trailers")
    func rpcErrors() async throws {
        let (outcome, _) = await self.call(self.dispatcher(), method: self.echoMethod, payload: try self.echo("", failWithCode: 5))
        #expect(outcome.code == .notFound)
        #expect(outcome.message == "failed as asked")
        #expect(outcome.trailers["echo-trailer"] == "yes")
    }

    @Test("any other error leaves as INTERNAL without its text, which goes to the log")
    func unexpectedErrors() async throws {
        let capture = LogCapture()
        let dispatcher = self.dispatcher(logger: capture.logger())
        let (outcome, context) = await self.call(dispatcher, method: self.echoMethod, payload: try self.echo("", failWithCode: EchoService.unexpectedErrorCode))
        #expect(outcome.code == .internalError)
        #expect(!outcome.message.contains("secret"))
        #expect(outcome.message.contains(context.requestID))
        #expect(capture.lines.contains { $0.contains("secret internal detail") && $0.contains(context.requestID) })
    }

    @Test("domain errors convert through RPCErrorConvertible")
    func convertible() async throws {
        struct Exhausted: RPCErrorConvertible {
            var rpcError: RPCError { RPCError(.resourceExhausted, "slow down", trailers: [MetadataKey.retryAfterSeconds: "60"]) }
        }
        struct Failing: Rekey_Testing_V1_Echo.ServiceProtocol {
            func echo(request: Rekey_Testing_V1_EchoRequest, context: ServerContext) async throws -> Rekey_Testing_V1_EchoResponse {
                throw Exhausted()
            }
        }
        let (outcome, _) = await self.call(self.dispatcher(services: [Failing()]), method: self.echoMethod)
        #expect(outcome.code == .resourceExhausted)
        #expect(outcome.trailers[MetadataKey.retryAfterSeconds] == "60")
    }

    @Test("a request id sent by the caller is kept; a missing or unsafe one is replaced", arguments: [
        ("abc-123", true), ("", false), ("has space", false), (String(repeating: "x", count: 129), false),
    ])
    func requestIDs(given: String, kept: Bool) async throws {
        let metadata: Metadata = given.isEmpty ? [:] : [MetadataKey.requestID: given]
        let (outcome, context) = await self.call(self.dispatcher(), method: self.echoMethod, payload: try self.echo("x"), metadata: metadata)
        let seen = try Rekey_Testing_V1_EchoResponse(serializedBytes: outcome.payload).requestID
        #expect(seen == context.requestID)
        if kept {
            #expect(seen == given)
        } else {
            #expect(seen != given)
            #expect(seen.count == 16 && seen.allSatisfy(\.isHexDigit))
        }
    }

    @Test("interceptors run in order, the first outermost")
    func interceptorOrder() async throws {
        final class EventLog: Sendable {
            let events = Mutex<[String]>([])
        }
        struct Recorder: ServerInterceptor {
            let name: String
            let log: EventLog
            func intercept(
                request: ServerRequest,
                context: ServerContext,
                next: @Sendable (ServerRequest, ServerContext) async throws -> ServerResponse
            ) async throws -> ServerResponse {
                self.log.events.withLock { $0.append("\(self.name) in") }
                defer { self.log.events.withLock { $0.append("\(self.name) out") } }
                return try await next(request, context)
            }
        }
        let log = EventLog()
        let dispatcher = self.dispatcher(interceptors: [Recorder(name: "a", log: log), Recorder(name: "b", log: log)])
        _ = await self.call(dispatcher, method: self.echoMethod, payload: try self.echo("x"))
        #expect(log.events.withLock { $0 } == ["a in", "b in", "b out", "a out"])
    }
}
