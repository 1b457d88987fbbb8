import Logging
import RekeyRPC
import Synchronization
import Testing

/// A replica played by the test: answers, or fails the way it is told, and counts what it got.
final class FakeReplica: ClientTransport {
    enum Behaviour: Sendable {
        case answer
        /// UNAVAILABLE before any server saw the call (no connection).
        case unreachable
        /// UNAVAILABLE after the call was sent (the connection broke mid-call).
        case lostMidCall
        case error(RPCError.Code)
    }

    let name: String
    let behaviour: Mutex<Behaviour>
    let calls = Atomic<Int>(0)

    init(_ name: String, _ behaviour: Behaviour = .answer) {
        self.name = name
        self.behaviour = Mutex(behaviour)
    }

    func unary(method: MethodDescriptor, payload: [UInt8], metadata: Metadata, deadline: ContinuousClock.Instant?) async throws -> [UInt8] {
        self.calls.add(1, ordering: .relaxed)
        switch self.behaviour.withLock({ $0 }) {
        case .answer: return Array(self.name.utf8)
        case .unreachable: throw RPCError(.unavailable, "\(self.name) is unavailable: cannot connect", notStarted: true)
        case .lostMidCall: throw RPCError(.unavailable, "the connection to \(self.name) closed before the answer came")
        case .error(let code): throw RPCError(code, "\(self.name) says no")
        }
    }
}

@Suite("Calls spread over replicas")
struct ReplicaSetTests {
    static let read = MethodDescriptor(service: "rekey.tokens.v1.Tokens", method: "PeekToken")
    static let write = MethodDescriptor(service: "rekey.tokens.v1.Tokens", method: "RedeemToken")

    static func set(_ replicas: [FakeReplica], retryAfter: Duration = .seconds(60)) -> ReplicaSet {
        ReplicaSet(
            replicas.map { ReplicaSet.Replica(name: $0.name, transport: $0) },
            isSafeToRepeat: { $0.method == "PeekToken" },
            retryAfter: retryAfter,
            logger: Logger(label: "rekey.test")
        )
    }

    static func call(_ set: ReplicaSet, _ method: MethodDescriptor = Self.read) async throws -> String {
        String(decoding: try await set.unary(method: method, payload: [], metadata: [:], deadline: nil), as: UTF8.self)
    }

    @Test("calls go round-robin over the replicas")
    func roundRobin() async throws {
        let replicas = [FakeReplica("a"), FakeReplica("b"), FakeReplica("c")]
        let set = Self.set(replicas)
        for _ in 0..<30 {
            _ = try await Self.call(set, Self.write)
        }
        #expect(replicas.map { $0.calls.load(ordering: .relaxed) } == [10, 10, 10])
    }

    @Test("a replica nobody can reach is skipped, for writes too: no server started the call")
    func unreachableIsSkipped() async throws {
        let down = FakeReplica("down", .unreachable)
        let up = FakeReplica("up")
        let set = Self.set([down, up])
        for _ in 0..<20 {
            #expect(try await Self.call(set, Self.write) == "up")
        }
        #expect(down.calls.load(ordering: .relaxed) == 1, "tried once, then left alone while it is believed down")
        #expect(up.calls.load(ordering: .relaxed) == 20)
    }

    @Test("a replica lost mid-call: a read moves to another replica, a write comes back as UNAVAILABLE (it may have run)")
    func midCallFailure() async throws {
        let broken = FakeReplica("broken", .lostMidCall)
        let up = FakeReplica("up")
        // The read: whichever replica it starts on, it ends on the one that answers.
        #expect(try await Self.call(Self.set([broken, up]), Self.read) == "up")
        // The write starting on the broken replica is not repeated elsewhere.
        let set = Self.set([broken, up])
        let error = await #expect(throws: RPCError.self) { _ = try await Self.call(set, Self.write) }
        #expect(error?.code == .unavailable && error?.notStarted == false)
        #expect(up.calls.load(ordering: .relaxed) == 1, "only the read reached it")
        // The broken replica is now believed down: the next write goes to the other one.
        #expect(try await Self.call(set, Self.write) == "up")
    }

    @Test("the service's own answers are not retried elsewhere", arguments: [RPCError.Code.notFound, .permissionDenied, .invalidArgument, .deadlineExceeded, .internalError])
    func answersAreFinal(code: RPCError.Code) async throws {
        let refusing = FakeReplica("refusing", .error(code))
        let other = FakeReplica("other")
        let set = Self.set([refusing, other])
        let error = await #expect(throws: RPCError.self) { _ = try await Self.call(set, Self.read) }
        #expect(error?.code == code)
        #expect(other.calls.load(ordering: .relaxed) == 0)
    }

    @Test("when every replica is down the call still tries each once and fails with the last reason")
    func allDown() async throws {
        let replicas = [FakeReplica("a", .unreachable), FakeReplica("b", .unreachable)]
        let set = Self.set(replicas)
        let error = await #expect(throws: RPCError.self) { _ = try await Self.call(set, Self.write) }
        #expect(error?.code == .unavailable && error?.notStarted == true)
        #expect(replicas.map { $0.calls.load(ordering: .relaxed) } == [1, 1])
        // Both believed down: the next call still tries both rather than failing without trying.
        _ = try? await Self.call(set, Self.write)
        #expect(replicas.map { $0.calls.load(ordering: .relaxed) } == [2, 2])
    }

    @Test("a replica that comes back takes calls again once its wait is over, without a restart")
    func comesBack() async throws {
        let flaky = FakeReplica("flaky", .unreachable)
        let steady = FakeReplica("steady")
        let set = Self.set([flaky, steady], retryAfter: .milliseconds(50))
        for _ in 0..<4 { _ = try await Self.call(set, Self.write) }
        let before = flaky.calls.load(ordering: .relaxed)
        flaky.behaviour.withLock { $0 = .answer }
        try await Task.sleep(for: .milliseconds(80))
        var answers: [String] = []
        for _ in 0..<10 { answers.append(try await Self.call(set, Self.write)) }
        #expect(answers.contains("flaky"), "the wait is over: it is tried, answers, and is believed up again")
        #expect(flaky.calls.load(ordering: .relaxed) > before)
        #expect(answers.filter { $0 == "flaky" }.count >= 4, "round-robin again: \(answers)")
    }

    @Test("members replaced while it runs: the new list takes the calls, a kept member keeps what is known of its health, a removed one gets none")
    func replaced() async throws {
        let down = FakeReplica("down", .unreachable)
        let kept = FakeReplica("kept")
        let removed = FakeReplica("removed")
        let set = Self.set([down, kept, removed])
        for _ in 0..<6 { _ = try await Self.call(set, Self.write) }
        #expect(down.calls.load(ordering: .relaxed) == 1)

        let added = FakeReplica("added")
        set.replace(with: [down, kept, added].map { ReplicaSet.Replica(name: $0.name, transport: $0) })
        #expect(set.names == ["down", "kept", "added"])
        let removedBefore = removed.calls.load(ordering: .relaxed)
        var answers: [String] = []
        for _ in 0..<20 { answers.append(try await Self.call(set, Self.write)) }
        #expect(removed.calls.load(ordering: .relaxed) == removedBefore, "a removed replica takes no call")
        #expect(down.calls.load(ordering: .relaxed) == 1, "still believed down: its wait carried over")
        #expect(Set(answers) == ["kept", "added"], "the two listed and up take every call: \(answers)")
    }
}
