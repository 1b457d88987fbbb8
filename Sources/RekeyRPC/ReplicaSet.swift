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

    private let replicas: [Replica]
    private let isSafeToRepeat: @Sendable (MethodDescriptor) -> Bool
    private let retryAfter: Duration
    private let logger: Logger
    private let next = Atomic<Int>(0)
    /// Per replica: until when it is skipped; nil while it is believed up.
    private let downUntil: Mutex<[ContinuousClock.Instant?]>

    package init(
        _ replicas: [Replica],
        isSafeToRepeat: @escaping @Sendable (MethodDescriptor) -> Bool,
        retryAfter: Duration = .seconds(2),
        logger: Logger
    ) {
        precondition(!replicas.isEmpty, "a replica set needs at least one replica")
        self.replicas = replicas
        self.isSafeToRepeat = isSafeToRepeat
        self.retryAfter = retryAfter
        self.logger = logger
        self.downUntil = Mutex(Array(repeating: nil, count: replicas.count))
    }

    /// The replicas' names, in the order given.
    package var names: [String] { self.replicas.map(\.name) }

    package func unary(
        method: MethodDescriptor,
        payload: [UInt8],
        metadata: Metadata,
        deadline: ContinuousClock.Instant?
    ) async throws -> [UInt8] {
        var lastError: RPCError?
        for index in self.order() {
            if let deadline, deadline <= .now, lastError != nil { break }
            do {
                let answer = try await self.replicas[index].transport.unary(method: method, payload: payload, metadata: metadata, deadline: deadline)
                self.markUp(index)
                return answer
            } catch let error as RPCError where error.code == .unavailable {
                self.markDown(index, error)
                lastError = error
                guard error.notStarted || self.isSafeToRepeat(method) else { throw error }
            }
        }
        throw lastError ?? RPCError(.deadlineExceeded, "the deadline passed before the call was sent")
    }

    /// Every replica once, starting at the next in turn: first those believed up or whose wait is
    /// over (they take their share of calls again, which is how one that came back is found),
    /// then those still waiting, as a last resort.
    private func order() -> [Int] {
        let count = self.replicas.count
        let start = self.next.wrappingAdd(1, ordering: .relaxed).oldValue
        let now = ContinuousClock.now
        let down = self.downUntil.withLock { $0 }
        let first = (start % count + count) % count  // `start` wraps to negative after Int.max calls
        let rotated = (0..<count).map { (first + $0) % count }
        let available = rotated.filter { down[$0].map { $0 <= now } ?? true }
        let waiting = rotated.filter { down[$0].map { $0 > now } ?? false }
        return available + waiting
    }

    private func markDown(_ index: Int, _ error: RPCError) {
        let wasUp = self.downUntil.withLock { down in
            defer { down[index] = .now + self.retryAfter }
            return down[index] == nil
        }
        if wasUp {
            self.logger.warning("a replica is unavailable; calls go to the others", metadata: [
                "rpc.replica": "\(self.replicas[index].name)", "error": "\(error.message)",
                "rpc.retry_in_ms": "\(self.retryAfter.components.seconds * 1000 + self.retryAfter.components.attoseconds / 1_000_000_000_000_000)",
            ])
        }
    }

    private func markUp(_ index: Int) {
        let wasDown = self.downUntil.withLock { down in
            defer { down[index] = nil }
            return down[index] != nil
        }
        if wasDown {
            self.logger.info("a replica answers again", metadata: ["rpc.replica": "\(self.replicas[index].name)"])
        }
    }
}
