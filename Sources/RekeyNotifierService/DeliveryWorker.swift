import Logging
import Metrics
import RekeyCrypto
import RekeySQLite
import ServiceLifecycle
import Synchronization

/// Delivers the outbox: `concurrency` workers, each with a transport of its own (so at most that
/// many connections to the server), take the message due soonest, send it and record what
/// happened. Nothing is marked sent before the server accepted it, so a crash at any moment means
/// the message is sent again after the restart (at-least-once; the Message-ID stays the same).
///
/// Metrics: `rekey_notifier_delivery_attempts_total{outcome}`,
/// `rekey_notifier_messages_finished_total{state}` (accepted, failed, suppressed),
/// `rekey_notifier_delivery_duration_seconds`.
package struct DeliveryWorker: Service {
    package let database: SQLiteDatabase
    package let store: OutboxStore
    package let makeTransport: @Sendable () throws -> any MailTransport
    package let concurrency: Int
    /// How often idle workers look for due messages (new messages also wake them at once).
    package let pollInterval: Duration
    package let doorbell: Doorbell
    package let logger: Logger

    package init(
        database: SQLiteDatabase,
        store: OutboxStore,
        concurrency: Int,
        pollInterval: Duration = .seconds(1),
        doorbell: Doorbell,
        logger: Logger,
        makeTransport: @escaping @Sendable () throws -> any MailTransport
    ) {
        self.database = database
        self.store = store
        self.makeTransport = makeTransport
        self.concurrency = concurrency
        self.pollInterval = pollInterval
        self.doorbell = doorbell
        self.logger = logger
    }

    package func run() async throws {
        let store = self.store
        let interrupted = try await self.database.withConnection { try store.recoverInterruptedAttempts(in: $0) }
        if interrupted > 0 {
            self.logger.notice("attempts interrupted by the last stop will be retried", metadata: ["attempts": "\(interrupted)"])
        }
        let runID = try Hex.randomID(prefix: "run_")
        try await withThrowingDiscardingTaskGroup { group in
            for index in 0..<self.concurrency {
                let transport = try self.makeTransport()
                group.addTask {
                    await self.work(index: index, runID: runID, transport: transport)
                }
            }
        }
    }

    private func work(index: Int, runID: String, transport: any MailTransport) async {
        let store = self.store
        var idleSince: ContinuousClock.Instant? = nil
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let claimed: OutboxStore.Claimed?
            do {
                claimed = try await self.database.withConnection {
                    try store.claimNext(worker: runID, transport: transport.name, server: transport.destination, in: $0)
                }
            } catch {
                self.logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: self.pollInterval)
                continue
            }
            guard let claimed else {
                if let since = idleSince, ContinuousClock.now - since > .seconds(10) {
                    await transport.close()
                    idleSince = nil
                } else if idleSince == nil {
                    idleSince = .now
                }
                await self.doorbell.wait(timeout: self.pollInterval)
                continue
            }
            idleSince = nil
            let started = ContinuousClock.now
            let result = await transport.deliver(from: store.configuration.fromAddress, to: claimed.toAddress, content: claimed.content)
            Timer(label: "rekey_notifier_delivery_duration_seconds").record(duration: ContinuousClock.now - started)
            do {
                let state = try await self.database.withConnection { try store.finish(claimed, result: result, in: $0) }
                Counter(label: "rekey_notifier_delivery_attempts_total", dimensions: [("outcome", Self.metricName(result.outcome))]).increment()
                if result.outcome == .permanentFailure, result.refusal == .relaySetup {
                    // Not the recipient: the relay refuses us. Alert on this one.
                    Counter(label: "rekey_notifier_relay_refusals_total", dimensions: [("stage", result.stage)]).increment()
                    self.logger.warning(
                        "the relay refuses our mail: its policy or our setup, not the recipient's mailbox (message kept and retried)",
                        metadata: ["message.id": "\(claimed.id)", "delivery.stage": "\(result.stage)", "delivery.reply": "\(result.summary)"]
                    )
                }
                if state.isFinal {
                    Counter(label: "rekey_notifier_messages_finished_total", dimensions: [("state", Self.metricName(state))]).increment()
                }
                self.logger.info(
                    "delivery attempt",
                    metadata: [
                        "message.id": "\(claimed.id)", "delivery.outcome": "\(result.outcome)", "delivery.stage": "\(result.stage)",
                        "delivery.reply_code": "\(result.replyCode)", "message.state": "\(state)", "worker": "\(index)",
                    ]
                )
            } catch {
                // The attempt stays open; after a restart it is recorded as interrupted and retried.
                self.logger.error("cannot record a delivery attempt", metadata: ["message.id": "\(claimed.id)", "error": "\(error)"])
            }
        }
        await transport.close()
    }
}

extension DeliveryWorker: CustomStringConvertible {
    /// Short, for ServiceLifecycle's start-up log line (the default would print the templates).
    package var description: String { "DeliveryWorker(concurrency: \(self.concurrency))" }

    static func metricName(_ outcome: AttemptOutcomeValue) -> String {
        switch outcome {
        case .accepted: return "accepted"
        case .temporaryFailure: return "temporary_failure"
        case .permanentFailure: return "permanent_failure"
        case .interrupted: return "interrupted"
        }
    }

    static func metricName(_ state: MessageStateValue) -> String {
        switch state {
        case .queued: return "queued"
        case .deferred: return "deferred"
        case .accepted: return "accepted"
        case .failed: return "failed"
        case .suppressed: return "suppressed"
        }
    }
}

/// Wakes idle delivery workers when a message is queued.
package final class Doorbell: Sendable {
    private struct State {
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var abandoned: Set<UInt64> = []
        var nextID: UInt64 = 0
        /// A ring nobody was waiting for: the next waiter returns at once.
        var pending = false
    }

    private let state = Mutex(State())

    package init() {}

    package func ring() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.waiters.isEmpty else {
                state.pending = true
                return []
            }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when rung or after `timeout`.
    package func wait(timeout: Duration) async {
        let id = self.state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.pending || state.abandoned.remove(id) != nil {
                                state.pending = false
                                return true
                            }
                            state.waiters[id] = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    self.abandon(id)
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func abandon(_ id: UInt64) {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
            state.abandoned.insert(id)
            return nil
        }
        waiter?.resume()
    }
}
