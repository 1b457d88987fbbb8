import Logging
import Synchronization

/// Calls spread over the replicas of one service, each reached through its own transport (one
/// connection each).
///
/// Calls go round-robin to the replicas believed healthy. A replica that answers UNAVAILABLE (or
/// cannot be reached) is believed down for `retryAfter` and skipped meanwhile; the next call after
/// that tries it again, so a replica that comes back takes traffic without anyone restarting. A
/// call that failed on one replica moves on to the next when that cannot run it twice:
///
/// - always when no server started it (``RPCError/notStarted``: no connection, a failed write, a
///   draining server's refusal);
/// - when the method is safe to repeat (`isSafeToRepeat`: reads, and writes that carry their own
///   idempotency) even if the replica failed mid-call.
///
/// Other answers (NOT_FOUND, PERMISSION_DENIED, …) are the service's and come back as they are;
/// so does DEADLINE_EXCEEDED, whose time is spent. When every replica is down, the call still
/// tries each once, in case one is back.
///
/// The members can change while calls go on (``replace(with:)``): the gateway's lists of
/// replicas are read again from its config file without a restart.
package final class ReplicaSet: ClientTransport {
    package struct Replica: Sendable {
        /// For logs: "10.0.0.12:7102".
        package var name: String
        package var transport: any ClientTransport

        package init(name: String, transport: any ClientTransport) {
            self.name = name
            self.transport = transport
        }
    }

    /// The members, and per member (by name) until when it is skipped; absent while it is
    /// believed up. Replaced as a whole by ``replace(with:)``.
    private struct Members {
        var replicas: [Replica]
        var downUntil: [String: ContinuousClock.Instant] = [:]
    }

    private let members: Mutex<Members>
    private let isSafeToRepeat: @Sendable (MethodDescriptor) -> Bool
    private let retryAfter: Duration
    private let logger: Logger
    private let next = Atomic<Int>(0)

    package init(
        _ replicas: [Replica],
        isSafeToRepeat: @escaping @Sendable (MethodDescriptor) -> Bool,
        retryAfter: Duration = .seconds(2),
        logger: Logger
    ) {
        precondition(!replicas.isEmpty, "a replica set needs at least one replica")
        self.members = Mutex(Members(replicas: replicas))
        self.isSafeToRepeat = isSafeToRepeat
        self.retryAfter = retryAfter
        self.logger = logger
    }

    /// The replicas' names, in the order given.
    package var names: [String] { self.members.withLock { $0.replicas.map(\.name) } }

    /// Makes `replicas` the members from the next call on. Calls already under way finish on the
    /// replica they went to; a replica kept (same name) keeps what is known of its health.
    package func replace(with replicas: [Replica]) {
        precondition(!replicas.isEmpty, "a replica set needs at least one replica")
        self.members.withLock { members in
            let names = Set(replicas.map(\.name))
            members.replicas = replicas
            members.downUntil = members.downUntil.filter { names.contains($0.key) }
        }
    }

    package func unary(
        method: MethodDescriptor,
        payload: [UInt8],
        metadata: Metadata,
        deadline: ContinuousClock.Instant?
    ) async throws -> [UInt8] {
        var lastError: RPCError?
        for replica in self.order() {
            if let deadline, deadline <= .now, lastError != nil { break }
            do {
                let answer = try await replica.transport.unary(method: method, payload: payload, metadata: metadata, deadline: deadline)
                self.markUp(replica)
                return answer
            } catch let error as RPCError where error.code == .unavailable {
                self.markDown(replica, error)
                lastError = error
                guard error.notStarted || self.isSafeToRepeat(method) else { throw error }
            }
        }
        throw lastError ?? RPCError(.deadlineExceeded, "the deadline passed before the call was sent")
    }

    /// Every replica once, starting at the next in turn: first those believed up or whose wait is
    /// over (they take their share of calls again, which is how one that came back is found),
    /// then those still waiting, as a last resort.
    private func order() -> [Replica] {
        let start = self.next.wrappingAdd(1, ordering: .relaxed).oldValue
        let now = ContinuousClock.now
        let (replicas, down) = self.members.withLock { ($0.replicas, $0.downUntil) }
        let count = replicas.count
        let first = (start % count + count) % count  // `start` wraps to negative after Int.max calls
        let rotated = (0..<count).map { replicas[(first + $0) % count] }
        let available = rotated.filter { down[$0.name].map { $0 <= now } ?? true }
        let waiting = rotated.filter { down[$0.name].map { $0 > now } ?? false }
        return available + waiting
    }

    private func markDown(_ replica: Replica, _ error: RPCError) {
        let wasUp = self.members.withLock { members in
            // A replica removed meanwhile is not brought back into the books.
            guard members.replicas.contains(where: { $0.name == replica.name }) else { return false }
            defer { members.downUntil[replica.name] = .now + self.retryAfter }
            return members.downUntil[replica.name] == nil
        }
        if wasUp {
            self.logger.warning("a replica is unavailable; calls go to the others", metadata: [
                "rpc.replica": "\(replica.name)", "error": "\(error.message)",
                "rpc.retry_in_ms": "\(self.retryAfter.components.seconds * 1000 + self.retryAfter.components.attoseconds / 1_000_000_000_000_000)",
            ])
        }
    }

    private func markUp(_ replica: Replica) {
        let wasDown = self.members.withLock { members in
            members.downUntil.removeValue(forKey: replica.name) != nil
        }
        if wasDown {
            self.logger.info("a replica answers again", metadata: ["rpc.replica": "\(replica.name)"])
        }
    }
}
