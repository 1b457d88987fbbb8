import RekeyInput
import Logging
import Metrics
import RekeyNotifierAPI
import RekeyCrypto
import RekeyRPC

/// The `rekey.notifier.v1.Notifier` RPC service: converts messages and calls the
/// ``OutboxStore``; rings the ``Doorbell`` when mail is queued.
///
/// Metric: `rekey_notifier_enqueued_total{status}` (queued, duplicate, suppressed).
package struct NotifierService: Rekey_Notifier_V1_Notifier.ServiceProtocol {
    private let store: OutboxStore
    private let doorbell: Doorbell
    /// What GetQueueStats reports as the transport and its destination.
    private let transport: (name: String, destination: String)
    private let domainChecker: DomainChecker?

    package init(
        store: OutboxStore, doorbell: Doorbell, transport: (name: String, destination: String), domainChecker: DomainChecker? = nil
    ) {
        self.store = store
        self.doorbell = doorbell
        self.transport = transport
        self.domainChecker = domainChecker
    }

    package func enqueue(request: Rekey_Notifier_V1_EnqueueRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_EnqueueResponse {
        var new = OutboxStore.NewMessage(template: request.templateName, toAddress: request.toAddress, idempotencyKey: request.idempotencyKey)
        new.toName = request.toName
        new.locale = request.locale
        for variable in request.variables {
            guard new.variables.updateValue(variable.value, forKey: variable.key) == nil else {
                throw NotifierError.invalidArgument("variable `\(variable.key.prefix(64))` is given twice")
            }
        }
        new.userID = request.userID
        new.tokenID = request.tokenID
        new.requestedBy = Self.actor(request.requestedBy)
        return try await self.enqueue(new, context: context)
    }

    private func enqueue(_ new: OutboxStore.NewMessage, context: ServerContext) async throws -> Rekey_Notifier_V1_EnqueueResponse {
        let prepared = try self.store.prepare(new)
        let outcome = try await self.store.commit(prepared)
        var response = Rekey_Notifier_V1_EnqueueResponse()
        defer {
            let status = response.status == .queued ? "queued" : response.status == .suppressed ? "suppressed" : "duplicate"
            Counter(label: "rekey_notifier_enqueued_total", dimensions: [("status", status)]).increment()
        }
        switch outcome {
        case .queued(let message):
            self.doorbell.ring()
            response.status = .queued
            response.messageID = message.id
            response.messageIDHeader = message.messageIDHeader
            context.logger.info("message queued", metadata: ["message.id": "\(message.id)", "message.template": "\(message.template)"])
        case .suppressed(let message, let reason):
            response.status = .suppressed
            response.messageID = message.id
            response.suppressionReason = reason
            context.logger.notice("message to a suppressed address not queued", metadata: ["message.id": "\(message.id)"])
        case .duplicate(let message):
            response.status = .duplicate
            response.messageID = message.id
            response.messageIDHeader = message.messageIDHeader
        }
        return response
    }

    package func getMessage(request: Rekey_Notifier_V1_GetMessageRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_MessageResponse {
        var response = Rekey_Notifier_V1_MessageResponse()
        response.message = Self.wire(try await self.store.message(id: request.messageID))
        return response
    }

    package func listMessages(request: Rekey_Notifier_V1_ListMessagesRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_ListMessagesResponse {
        let pageSize = try Bounded.pageSize(request.pageSize, default: 20, max: 100)
        let (messages, next) = try await self.store.messages(
            toAddress: request.toAddress, userID: request.userID, since: request.sinceUnixMs, pageSize: pageSize, pageToken: request.pageToken
        )
        var response = Rekey_Notifier_V1_ListMessagesResponse()
        response.messages = messages.map(Self.wire)
        response.nextPageToken = next
        return response
    }

    package func listSuppressions(request: Rekey_Notifier_V1_ListSuppressionsRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_ListSuppressionsResponse {
        let pageSize = try Bounded.pageSize(request.pageSize, default: 50, max: 500)
        let (suppressions, next) = try await self.store.suppressions(address: request.address, pageSize: pageSize, pageToken: request.pageToken)
        var response = Rekey_Notifier_V1_ListSuppressionsResponse()
        response.suppressions = suppressions.map(Self.wire)
        response.nextPageToken = next
        return response
    }

    package func removeSuppression(request: Rekey_Notifier_V1_RemoveSuppressionRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_RemoveSuppressionResponse {
        let actor = Self.actor(request.actor)
        let removed = try await self.store.removeSuppression(address: request.address, why: request.reason, actor: actor)
        context.logger.notice("suppression removed", metadata: ["actor.user_id": "\(actor.userID)"])
        var response = Rekey_Notifier_V1_RemoveSuppressionResponse()
        response.removed = Self.wire(removed)
        return response
    }

    package func getQueueStats(request: Rekey_Notifier_V1_GetQueueStatsRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_QueueStats {
        let windowMs = try Bounded.integer(request.windowMs, "window_ms", in: 0...(30 * 86_400_000))
        let window = Duration.milliseconds(windowMs == 0 ? 3_600_000 : windowMs)
        let hours = try Bounded.integer(request.hours, "hours", in: 0...168)
        let stats = try await self.store.stats(window: window, hours: hours)
        var response = Rekey_Notifier_V1_QueueStats()
        response.depth = UInt32(stats.depth)
        response.oldestQueuedAgeMs = stats.oldestQueuedAge
        response.lastAcceptedAtUnixMs = stats.lastAcceptedAt
        response.lastAttemptAtUnixMs = stats.lastAttemptAt
        response.recentAccepted = UInt32(stats.recent[.accepted] ?? 0)
        response.recentTemporaryFailures = UInt32((stats.recent[.temporaryFailure] ?? 0) + (stats.recent[.interrupted] ?? 0))
        response.recentPermanentFailures = UInt32(stats.recent[.permanentFailure] ?? 0)
        response.recentByDomain = stats.byDomain.map { figures in
            var wire = Rekey_Notifier_V1_DomainFigures()
            wire.domain = figures.domain
            wire.accepted = UInt32(figures.accepted)
            wire.temporaryFailures = UInt32(figures.temporary)
            wire.permanentFailures = UInt32(figures.permanent)
            return wire
        }
        response.hourly = stats.hourly.map { figures in
            var wire = Rekey_Notifier_V1_HourFigures()
            wire.startUnixMs = figures.start
            wire.accepted = UInt32(figures.accepted)
            wire.temporaryFailures = UInt32(figures.temporary)
            wire.permanentFailures = UInt32(figures.permanent)
            return wire
        }
        response.transport = self.transport.name
        response.server = self.transport.destination
        response.windowMs = window.milliseconds
        return response
    }

    package func sendTest(request: Rekey_Notifier_V1_SendTestRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_EnqueueResponse {
        // A key of its own per call: every test is a new message.
        var new = OutboxStore.NewMessage(template: MailTemplate.test.rawValue, toAddress: request.toAddress, idempotencyKey: try Hex.randomID(prefix: "test-"))
        new.requestedBy = Self.actor(request.requestedBy)
        return try await self.enqueue(new, context: context)
    }

    package func checkDomain(request: Rekey_Notifier_V1_CheckDomainRequest, context: ServerContext) async throws -> Rekey_Notifier_V1_CheckDomainResponse {
        guard let checker = self.domainChecker else {
            throw NotifierError.failedPrecondition("this notifier was started without a domain check")
        }
        let report = await checker.report(fresh: request.fresh)
        var response = Rekey_Notifier_V1_CheckDomainResponse()
        response.fromDomain = report.check.configuration.fromDomain
        response.envelopeDomain = report.check.configuration.envelopeDomain
        response.dkimDomain = report.check.configuration.dkim?.domain ?? ""
        response.dnsServer = report.check.resolver.server
        response.checkedAtUnixMs = report.checkedAtUnixMs
        response.findings = report.findings.map { finding in
            var wire = Rekey_Notifier_V1_DomainFinding()
            wire.check = finding.check
            wire.status = switch finding.status {
            case .ok: .ok
            case .warning: .warning
            case .problem: .problem
            }
            wire.summary = finding.summary
            wire.fix = finding.fix
            wire.evidence = finding.evidence
            return wire
        }
        return response
    }

    // MARK: Conversions

    private static func actor(_ actor: Rekey_Notifier_V1_Actor?) -> ActorInfo {
        ActorInfo(userID: actor?.userID ?? "", clientAddress: actor?.clientAddress ?? "")
    }

    static func wire(_ message: MessageRecord) -> Rekey_Notifier_V1_Message {
        var wire = Rekey_Notifier_V1_Message()
        wire.id = message.id
        wire.templateName = message.template
        wire.toAddress = message.toAddress
        wire.toName = message.toName
        wire.locale = message.locale
        wire.userID = message.userID
        wire.tokenID = message.tokenID
        wire.state = Rekey_Notifier_V1_MessageState(rawValue: Int32(message.state.rawValue))
        wire.messageIDHeader = message.messageIDHeader
        wire.subject = message.subject
        wire.createdAtUnixMs = message.createdAt
        wire.updatedAtUnixMs = message.updatedAt
        wire.nextAttemptAtUnixMs = message.state.isFinal ? 0 : (message.nextAttemptAt ?? 0)
        wire.reports = message.reports.map { report in
            var wire = Rekey_Notifier_V1_Report()
            wire.receivedAtUnixMs = report.receivedAt
            wire.kind = report.kind
            wire.action = report.action
            wire.status = report.status
            wire.diagnosticCode = report.diagnostic
            wire.remoteMta = report.remoteMTA
            wire.recipient = report.recipient
            wire.feedbackType = report.feedbackType
            wire.reporter = report.reporter
            return wire
        }
        wire.reason = message.reason
        var actor = Rekey_Notifier_V1_Actor()
        actor.userID = message.requestedBy.userID
        actor.clientAddress = message.requestedBy.clientAddress
        wire.requestedBy = actor
        wire.attempts = message.attempts.map { attempt in
            var wire = Rekey_Notifier_V1_Attempt()
            wire.startedAtUnixMs = attempt.startedAt
            wire.finishedAtUnixMs = attempt.finishedAt ?? 0
            wire.transport = attempt.transport
            wire.server = attempt.server
            wire.outcome = attempt.outcome.map { Rekey_Notifier_V1_AttemptOutcome(rawValue: Int32($0.rawValue)) } ?? .unspecified
            wire.stage = attempt.stage
            wire.replyCode = UInt32(attempt.replyCode)
            wire.enhancedStatus = attempt.enhancedStatus
            wire.replyText = attempt.replyText
            wire.remoteQueueID = attempt.remoteQueueID
            wire.error = attempt.error
            return wire
        }
        return wire
    }

    static func wire(_ suppression: SuppressionRecord) -> Rekey_Notifier_V1_Suppression {
        var wire = Rekey_Notifier_V1_Suppression()
        wire.address = suppression.address
        wire.reason = suppression.reason
        wire.createdAtUnixMs = suppression.createdAt
        wire.messageID = suppression.messageID
        return wire
    }
}
