import Logging
import RekeyProtobuf
import RekeyRPC
import RekeyTesting
import Testing

@Suite("ServiceCredentialInterceptor")
struct ServiceCredentialInterceptorTests {
    let dispatcher = RPCDispatcher(
        services: [EchoService(), HealthService()],
        interceptors: [ServiceCredentialInterceptor(accepted: ["old-secret", "new-secret"])],
        logger: Logger(label: "test")
    )

    func call(method: String, authorization: String?) async -> CallOutcome {
        var metadata = Metadata()
        if let authorization {
            metadata[MetadataKey.authorization] = authorization
        }
        let call = IncomingCall(method: method, metadata: metadata, payload: [], deadline: nil, peer: "test")
        return await self.dispatcher.handle(call, context: self.dispatcher.makeContext(for: call))
    }

    static let echo = Rekey_Testing_V1_Echo.Method.Echo.descriptor.fullyQualifiedMethod

    @Test("calls without the right credential answer UNAUTHENTICATED", arguments: [
        nil, "", "Bearer", "Bearer ", "Bearer wrong", "old-secret", "bearer old-secret", "Bearer old-secretX",
    ] as [String?])
    func refused(authorization: String?) async {
        let outcome = await self.call(method: Self.echo, authorization: authorization)
        #expect(outcome.code == .unauthenticated)
    }

    @Test("every accepted credential works, so it can be rotated", arguments: ["Bearer old-secret", "Bearer new-secret"])
    func accepted(authorization: String) async {
        let outcome = await self.call(method: Self.echo, authorization: authorization)
        #expect(outcome.code == .ok)
    }

    @Test("an unknown method without a credential is UNAUTHENTICATED, not UNIMPLEMENTED")
    func unknownMethodsStayHidden() async {
        let outcome = await self.call(method: "/rekey.secret.v1.Hidden/Method", authorization: nil)
        #expect(outcome.code == .unauthenticated)
    }

    @Test("health checks need no credential")
    func healthIsExempt() async throws {
        let outcome = await self.call(method: Rekey_Health_V1_Health.Method.Check.descriptor.fullyQualifiedMethod, authorization: nil)
        #expect(outcome.code == .ok)
        #expect(try Rekey_Health_V1_HealthCheckResponse(serializedBytes: outcome.payload).status == .serving)
    }

    @Test("metadata keys are case-insensitive; a repeated authorization entry is refused, whatever the first one says")
    func keyCaseAndRepeats() async {
        var capitalised = Metadata()
        capitalised.add("Authorization", "Bearer old-secret")
        let call = IncomingCall(method: Self.echo, metadata: capitalised, payload: [], deadline: nil, peer: "test")
        #expect(await self.dispatcher.handle(call, context: self.dispatcher.makeContext(for: call)).code == .ok)
        var twice = Metadata()
        twice.add("authorization", "Bearer old-secret")
        twice.add("authorization", "Bearer new-secret")
        let repeated = IncomingCall(method: Self.echo, metadata: twice, payload: [], deadline: nil, peer: "test")
        let outcome = await self.dispatcher.handle(repeated, context: self.dispatcher.makeContext(for: repeated))
        #expect(outcome.code == .unauthenticated)
        #expect(outcome.message == "send exactly one authorization entry")
    }

    @Test("the health service answers for itself, for the whole server, and SERVICE_UNKNOWN for names it does not know")
    func healthOfHealth() async throws {
        for (service, status) in [(Rekey_Health_V1_Health.name, Rekey_Health_V1_HealthCheckResponse.ServingStatus.serving), ("", .serving), ("rekey.nothing.v1.Nothing", .serviceUnknown)] {
            var request = Rekey_Health_V1_HealthCheckRequest()
            request.service = service
            let call = IncomingCall(
                method: Rekey_Health_V1_Health.Method.Check.descriptor.fullyQualifiedMethod, metadata: [:], payload: try request.serializedBytes(), deadline: nil, peer: "test"
            )
            let outcome = await self.dispatcher.handle(call, context: self.dispatcher.makeContext(for: call))
            #expect(try Rekey_Health_V1_HealthCheckResponse(serializedBytes: outcome.payload).status == status, "\(service)")
        }
    }

    @Test("the comparison is exact")
    func constantTimeEquals() {
        #expect(ServiceCredentialInterceptor.constantTimeEquals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!ServiceCredentialInterceptor.constantTimeEquals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!ServiceCredentialInterceptor.constantTimeEquals(Array("abc".utf8), Array("abcd".utf8)))
    }
}
