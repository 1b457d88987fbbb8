import Foundation
import Logging
import Metrics
import RekeyCrypto
import ServiceLifecycle
import Synchronization

/// Delivers the outbox: `concurrency` workers, each with a transport of its own (so at most that
/// many connections to the server), take the message due soonest, send it and record what
/// happened. Nothing is marked sent before the server accepted it, so a crash at any moment means
/// the message is sent again after the restart (at-least-once; the Message-ID stays the same).
///
/// A worker holds the message it sends under a lease, renewed every third of `lease` while the
/// relay talks. With replicas on one database, the messages of a replica that dies are taken over
/// by the others once their leases run out; those are the only messages that may go out twice,
/// and each is counted in `rekey_notifier_lease_takeovers_total`.
///
/// Metrics: `rekey_notifier_delivery_attempts_total{outcome}`,
/// `rekey_notifier_messages_finished_total{state}` (accepted, failed, suppressed),
/// `rekey_notifier_delivery_duration_seconds`, `rekey_notifier_lease_takeovers_total`.
package struct DeliveryWorker: Service {
    package let store: OutboxStore
    package let makeTransport: @Sendable () throws -> any MailTransport
    package let concurrency: Int
    /// How often idle workers look for due messages (new messages also wake them at once).
    package let pollInterval: Duration
    package let doorbell: Doorbell
    package let logger: Logger
    /// Signs each message (DKIM) just before it goes out; nil sends them unsigned.
    package let signer: DKIMSigner?
    /// How long a claim holds without renewal.
    package let lease: Duration

    package init(
        store: OutboxStore,
        concurrency: Int,
        pollInterval: Duration = .seconds(1),
        lease: Duration = .seconds(60),
        doorbell: Doorbell,
        logger: Logger,
        signer: DKIMSigner? = nil,
        makeTransport: @escaping @Sendable () throws -> any MailTransport
    ) {
        self.signer = signer
        self.lease = lease
        self.store = store
        self.makeTransport = makeTransport
        self.concurrency = concurrency
        self.pollInterval = pollInterval
        self.doorbell = doorbell
        self.logger = logger
    }

    package func run() async throws {
        let interrupted = try await self.store.recoverInterruptedAttempts()
        if interrupted > 0 {
            self.logger.notice("attempts interrupted by the last stop will be retried", metadata: ["attempts": "\(interrupted)"])
        }
        let runID = try Hex.randomID(prefix: "run_")
        let gate = RelayGate()
        try await withThrowingDiscardingTaskGroup { group in
            for index in 0..<self.concurrency {
                let transport = try self.makeTransport()
                group.addTask {
                    await self.work(index: index, runID: runID, transport: transport, gate: gate)
                }
            }
        }
    }

    private func work(index: Int, runID: String, transport: any MailTransport, gate: RelayGate) async {
        let store = self.store
        var idleSince: ContinuousClock.Instant? = nil
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // While the relay cannot be reached, one worker probes it now and then; the others
            // leave the queue alone instead of failing a connect for every message.
            let probe: Bool
            switch gate.admit(now: .now) {
            case .wait(let pause):
                try? await Task.sleep(for: min(pause, self.pollInterval))
                continue
            case .go(let isProbe):
                probe = isProbe
            }
            let claimed: OutboxStore.Claimed?
            do {
                claimed = try await store.claimNext(
                    holder: "\(runID)/\(index)", transport: transport.name, server: transport.destination, lease: self.lease
                )
            } catch {
                if probe { gate.withdrawProbe() }
                self.logger.error("cannot read the outbox", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: self.pollInterval)
                continue
            }
            guard let claimed else {
                if probe { gate.withdrawProbe() }
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
            if claimed.tookOver {
                Counter(label: "rekey_notifier_lease_takeovers_total").increment()
                self.logger.warning(
                    "took over a message whose worker stopped renewing its claim: it may have been sent already (same Message-ID)",
                    metadata: ["message.id": "\(claimed.id)"]
                )
            }
            let started = ContinuousClock.now
            var content = claimed.content
            if let signer = self.signer {
                do {
                    content = try signer.sign(content, at: Date())
                } catch {
                    // Never seen with a key that loaded; an unsigned reset email still beats none.
                    Counter(label: "rekey_notifier_dkim_failures_total").increment()
                    self.logger.error("cannot DKIM-sign a message: it goes out unsigned", metadata: ["message.id": "\(claimed.id)", "error": "\(error)"])
                }
            }
            let sender = store.configuration.envelopeSender(for: claimed.id)
            let signed = content
            let result = await self.holding(claimed) {
                await transport.deliver(from: sender, to: claimed.toAddress, content: signed)
            }
            Timer(label: "rekey_notifier_delivery_duration_seconds").record(duration: ContinuousClock.now - started)
            switch gate.report(unreachable: result.relayUnreachable, probe: probe, now: .now) {
            case .wentDown(let pause):
                Gauge(label: "rekey_notifier_relay_unreachable").record(1)
                self.logger.warning(
                    "the relay cannot be reached: deliveries pause, and one message probes it with growing pauses until it answers",
                    metadata: ["destination": "\(transport.destination)", "delivery.reply": "\(result.summary)", "next_probe_in": "\(pause)"]
                )
            case .cameBack:
                Gauge(label: "rekey_notifier_relay_unreachable").record(0)
                self.logger.notice("the relay answers again: deliveries resume", metadata: ["destination": "\(transport.destination)"])
            case .unchanged:
                break
            }
            do {
                guard let state = try await store.finish(claimed, result: result) else {
                    self.logger.warning(
                        "the claim on a message ran out during its attempt and another worker took it: attempt recorded, message left to it",
                        metadata: ["message.id": "\(claimed.id)", "delivery.outcome": "\(result.outcome)"]
                    )
                    continue
                }
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

    /// Runs `body` (an attempt) while renewing the claim on `claimed` every third of the lease.
    private func holding<R: Sendable>(_ claimed: OutboxStore.Claimed, _ body: @escaping @Sendable () async -> R) async -> R {
        let store = self.store
        let lease = self.lease
        let logger = self.logger
        return await withTaskGroup(of: R?.self) { group in
            group.addTask { await body() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: lease / 3)
                    guard !Task.isCancelled else { break }
                    do {
                        if try await !store.renewLease(claimed, lease: lease) {
                            logger.warning("lost the claim on a message during its attempt", metadata: ["message.id": "\(claimed.id)"])
                            break
                        }
                    } catch {
                        logger.error("cannot renew the claim on a message", metadata: ["message.id": "\(claimed.id)", "error": "\(error)"])
                    }
                }
                return nil
            }
            var result: R? = nil
            while result == nil, let next = await group.next() {
                result = next
            }
            group.cancelAll()
            return result!
        }
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
        case .bounced: return "bounced"
        }
    }
}

extension DeliveryResult {
    /// The relay could not be reached at all (no connection, or no greeting, or 421 in place of
    /// one): every message would fail the same way.
    package var relayUnreachable: Bool {
        self.outcome != .accepted && (self.stage == "CONNECT" || (self.stage == "GREETING" && (self.replyCode == 0 || self.replyCode == 421)))
    }
}

/// The relay's reachability, shared by the workers. When it cannot be reached, workers stop
/// taking messages; one probe (the next due message) goes out after a pause that doubles up to
/// `maxPause`, and the first probe that reaches it lets every worker resume. A relay outage then
/// costs a handful of failed connects, not one per queued message per retry.
package final class RelayGate: Sendable {
    package enum Admission: Equatable {
        /// Take a message; `probe` when it is the one that tests an unreachable relay.
        case go(probe: Bool)
        /// Do not take one yet.
        case wait(Duration)
    }

    package enum Change: Equatable {
        case wentDown(nextProbeIn: Duration)
        case cameBack
        case unchanged
    }

    private struct State {
        var down = false
        var probing = false
        var pause: Duration
        var nextProbe: ContinuousClock.Instant
    }

    private let state: Mutex<State>
    private let firstPause: Duration
    private let maxPause: Duration

    package init(firstPause: Duration = .seconds(1), maxPause: Duration = .seconds(60)) {
        self.firstPause = firstPause
        self.maxPause = maxPause
        self.state = Mutex(State(pause: firstPause, nextProbe: .now))
    }

    package func admit(now: ContinuousClock.Instant) -> Admission {
        self.state.withLock { state in
            guard state.down else { return .go(probe: false) }
            if state.probing || now < state.nextProbe {
                return .wait(state.probing ? .milliseconds(100) : state.nextProbe - now)
            }
            state.probing = true
            return .go(probe: true)
        }
    }

    /// The probe found nothing to send: another worker may probe later.
    package func withdrawProbe() {
        self.state.withLock { $0.probing = false }
    }

    /// How an attempt ended, as far as reaching the relay goes.
    package func report(unreachable: Bool, probe: Bool, now: ContinuousClock.Instant) -> Change {
        self.state.withLock { state in
            if probe { state.probing = false }
            guard unreachable else {
                guard state.down else { return .unchanged }
                state.down = false
                state.pause = self.firstPause
                return .cameBack
            }
            if !state.down {
                state.down = true
                state.pause = self.firstPause
                state.nextProbe = now + state.pause
                return .wentDown(nextProbeIn: state.pause)
            }
            // Only a failed probe lengthens the pause (not the attempts already under way when
            // the relay went away).
            if probe {
                state.pause = min(state.pause * 2, self.maxPause)
                state.nextProbe = now + state.pause
            }
            return .unchanged
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
