import Logging
import RekeyProtobuf
import RekeyRPC
import RekeyTesting
import Synchronization
import Testing

/// A transport that records what a client would have sent; this tests the core's propagation
/// logic, so no network is involved.
final class RecordingTransport: ClientTransport {
    struct Sent: Sendable {
        var metadata: Metadata
        var deadline: ContinuousClock.Instant?
    }

    let sent = Mutex<[Sent]>([])

    func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        self.sent.withLock { $0.append(Sent(metadata: metadata, deadline: deadline)) }
        return try Rekey_Health_V1_HealthCheckResponse().serializedBytes()
    }
}

@Suite("Deadline and request-id propagation")
struct PropagationTests {
    /// A service whose handler calls another service through `transport`.
    private struct Forwarder: Rekey_Testing_V1_Echo.ServiceProtocol {
        let transport: RecordingTransport
        let timeout: Duration?

        func echo(request: Rekey_Testing_V1_EchoRequest, context: ServerContext) async throws -> Rekey_Testing_V1_EchoResponse {
            let client = Rekey_Health_V1_Health.Client(wrapping: self.transport)
            _ = try await client.check(Rekey_Health_V1_HealthCheckRequest(), options: CallOptions(timeout: self.timeout))
            return Rekey_Testing_V1_EchoResponse()
        }
    }

    func serve(timeout: Duration?, callerDeadline: ContinuousClock.Instant?) async -> (RecordingTransport.Sent, ServerContext) {
        let transport = RecordingTransport()
        let dispatcher = RPCDispatcher(services: [Forwarder(transport: transport, timeout: timeout)], interceptors: [], logger: Logger(label: "test"))
        let call = IncomingCall(
            method: Rekey_Testing_V1_Echo.Method.Echo.descriptor.fullyQualifiedMethod,
            metadata: [MetadataKey.requestID: "req-1"],
            payload: [],
            deadline: callerDeadline,
            peer: "test"
        )
        let context = dispatcher.makeContext(for: call)
        let outcome = await dispatcher.handle(call, context: context)
        #expect(outcome.code == .ok)
        return (transport.sent.withLock { $0[0] }, context)
    }

    @Test("a handler's outgoing call carries the request id it is serving")
    func requestID() async {
        let (sent, _) = await self.serve(timeout: nil, callerDeadline: nil)
        #expect(sent.metadata[MetadataKey.requestID] == "req-1")
    }

    @Test("a request id made here is sixteen lowercase hex digits, new each time, and acceptable to the next hop")
    func madeRequestIDs() {
        let ids = (0..<1000).map { _ in RequestID.make() }
        #expect(Set(ids).count == ids.count)
        for id in ids {
            #expect(id.utf8.count == 16 && id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }, "\(id)")
            #expect(RequestID.isAcceptable(id))
        }
        // All share the process's random high half; the low half counts.
        #expect(Set(ids.map { UInt64($0, radix: 16)! >> 32 }).count == 1)
    }

    @Test("a handler's outgoing call gets no more time than its own caller left")
    func deadlineIsInherited() async {
        let callerDeadline = ContinuousClock.now + .seconds(2)
        let (sent, _) = await self.serve(timeout: .seconds(60), callerDeadline: callerDeadline)
        #expect(sent.deadline == callerDeadline)
    }

    @Test("a shorter timeout of the handler's own wins over the inherited deadline")
    func shorterTimeoutWins() async {
        let callerDeadline = ContinuousClock.now + .seconds(60)
        let (sent, _) = await self.serve(timeout: .seconds(1), callerDeadline: callerDeadline)
        #expect(sent.deadline! < callerDeadline)
    }

    @Test("without any deadline the outgoing call has none")
    func noDeadline() async {
        let (sent, _) = await self.serve(timeout: nil, callerDeadline: nil)
        #expect(sent.deadline == nil)
    }
}
