import Foundation
import RekeyClock
import RekeyCrypto

/// The notifier's rules for the outbox, the history of every message and the suppression list:
/// validation and rendering, idempotency, the retry schedule, what a refusal does to a message.
/// The data lives behind an ``OutboxRepository`` (SQLite or PostgreSQL).
///
/// A message's rendered content is kept only until the message is final (accepted, failed or
/// suppressed): it holds a reset link, and the history does not need it.
package struct OutboxStore: Sendable {
    package struct Configuration: Sendable {
        /// The sender, `From:`.
        package var fromAddress: String
        package var fromName: String
        /// The product name and accent colour (`#rrggbb`) at the top of every email: the
        /// templates' `brand_name` and `brand_color`.
        package var brandName: String
        package var brandColor: String
        /// The right-hand side of Message-ID headers.
        package var messageIDDomain: String
        /// Delays after the 1st, 2nd, … temporary failure; the last one repeats.
        package var retrySchedule: [Duration]
        /// A message still failing this long after it was queued fails for good.
        package var maxAge: Duration
        /// With a bounce domain, each message goes out with its own envelope sender (VERP),
        /// `bounces+<message id>@<bounce domain>`, so a bounce names the message it is about.
        package var bounceDomain: String? = nil

        /// MAIL FROM for the message `id`.
        package func envelopeSender(for id: String) -> String {
            guard let domain = self.bounceDomain else { return self.fromAddress }
            return "\(OutboxStore.verpPrefix)\(id)@\(domain)"
        }

        package init(
            fromAddress: String,
            fromName: String = "Rekey",
            brandName: String? = nil,
            brandColor: String = "#2f5fd0",
            messageIDDomain: String,
            retrySchedule: [Duration] = [.seconds(60), .seconds(300), .seconds(900), .seconds(3600)],
            maxAge: Duration = .seconds(86400)
        ) {
            self.fromAddress = fromAddress
            self.fromName = fromName
            self.brandName = brandName ?? fromName
            self.brandColor = brandColor
            self.messageIDDomain = messageIDDomain
            self.retrySchedule = retrySchedule
            self.maxAge = maxAge
        }
    }

    package let configuration: Configuration
    package let templates: MailTemplates
    package let clock: any WallClock
    package let repository: any OutboxRepository

    package init(configuration: Configuration, templates: MailTemplates, clock: any WallClock, repository: any OutboxRepository) {
        self.configuration = configuration
        self.templates = templates
        self.clock = clock
        self.repository = repository
    }

    // MARK: Enqueue

    package struct NewMessage: Sendable {
        package var template: String
        package var toAddress: String
        package var toName: String = ""
        package var locale: String = ""
        package var variables: [String: String] = [:]
        package var userID: String = ""
        package var tokenID: String = ""
        package var idempotencyKey: String
        package var requestedBy = ActorInfo()

        package init(template: String, toAddress: String, idempotencyKey: String) {
            self.template = template
            self.toAddress = toAddress
            self.idempotencyKey = idempotencyKey
        }
    }

    package enum EnqueueOutcome: Sendable, Hashable {
        case queued(MessageRecord)
        case suppressed(MessageRecord, reason: String)
        case duplicate(MessageRecord)
    }

    /// A message checked and rendered, ready to be committed: ``prepare(_:)`` does the CPU work
    /// before the database is involved, ``commit(_:)`` stores it.
    package struct Prepared: Sendable {
        var new: NewMessage
        var id: String
        var address: (address: String, normalized: String, domain: String)
        var locale: String
        var messageIDHeader: String
        var subject: String
        var content: [UInt8]
        var now: Int64
    }

    /// Validates and renders the message. Throws INVALID_ARGUMENT for bad input.
    package func prepare(_ new: NewMessage) throws -> Prepared {
        guard (1...200).contains(new.idempotencyKey.utf8.count) else {
            throw NotifierError.invalidArgument("idempotency_key is required (at most 200 bytes)")
        }
        for (field, value) in [("user_id", new.userID), ("token_id", new.tokenID)] where !value.isEmpty {
            guard value.utf8.count <= 128, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw NotifierError.invalidArgument("\(field) must be 1-128 printable ASCII characters without spaces")
            }
        }
        guard let template = MailTemplate(rawValue: new.template) else {
            throw NotifierError.invalidArgument(
                "unknown template `\(new.template.prefix(80))`; known: \(MailTemplate.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        let address = try Self.validAddress(new.toAddress)
        try MIMEMessage.checkHeaderValue(new.toName, field: "to_name")
        guard new.toName.count <= 200 else {
            throw NotifierError.invalidArgument("to_name is longer than 200 characters")
        }
        let locale = new.locale.isEmpty ? "en" : new.locale
        guard locale.utf8.count <= 35, locale.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw NotifierError.invalidArgument("locale `\(new.locale.prefix(40))` is not a language tag such as en or de-CH")
        }
        for name in template.requiredVariables where (new.variables[name] ?? "").isEmpty {
            throw NotifierError.invalidArgument("the \(template.rawValue) template needs the variable `\(name)`")
        }
        for (key, value) in new.variables {
            guard key.utf8.count <= 64, value.utf8.count <= 2048 else {
                throw NotifierError.invalidArgument("variable `\(key.prefix(64))` is too long (names up to 64 bytes, values up to 2048)")
            }
        }
        if let link = new.variables["link"] {
            guard let url = URL(string: link), url.scheme == "https" || url.scheme == "http", url.host != nil else {
                throw NotifierError.invalidArgument("variable `link` must be an http or https URL")
            }
        }
        var variables = new.variables
        variables["name"] = new.toName
        variables["brand_name"] = self.configuration.brandName
        variables["brand_color"] = self.configuration.brandColor

        let now = self.clock.nowMilliseconds()
        let id = try Hex.randomID(prefix: "m_")
        let messageIDHeader = "\(id).\(now)@\(self.configuration.messageIDDomain)"
        let subject = self.templates.render(template, .subject, locale: locale, variables: variables).text
            .trimmingCharacters(in: .whitespaces)
        var mime = MIMEMessage(
            from: .init(address: self.configuration.fromAddress, name: self.configuration.fromName),
            to: .init(address: address.address, name: new.toName),
            subject: subject,
            messageID: messageIDHeader,
            date: Date(timeIntervalSince1970: Double(now) / 1000),
            text: self.templates.render(template, .text, locale: locale, variables: variables).text,
            html: MailTemplates.branded(
                self.templates.render(template, .html, locale: locale, variables: variables).text,
                name: self.configuration.brandName, color: self.configuration.brandColor, locale: locale
            )
        )
        mime.extraHeaders = [("X-Rekey-Template", template.rawValue), ("X-Rekey-Message", id)]
        return Prepared(
            new: new, id: id, address: address, locale: locale, messageIDHeader: messageIDHeader, subject: subject,
            content: try mime.render(), now: now
        )
    }

    /// Commits a prepared message to the outbox, or records it as suppressed, or finds the
    /// message its idempotency key names. Returns only once it is committed.
    package func commit(_ prepared: Prepared) async throws -> EnqueueOutcome {
        let new = prepared.new
        let stored = try await self.repository.enqueue(
            NewOutboxMessage(
                id: prepared.id, idempotencyKey: new.idempotencyKey, template: new.template, locale: prepared.locale,
                toAddress: prepared.address.address, toNormalized: prepared.address.normalized, toDomain: prepared.address.domain,
                toName: new.toName, userID: new.userID, tokenID: new.tokenID, requestedBy: new.requestedBy,
                messageIDHeader: prepared.messageIDHeader, subject: prepared.subject, content: prepared.content, now: prepared.now
            ),
            suppressedReason: { "suppressed: \($0)" }
        )
        switch stored {
        case .queued(let message):
            return .queued(message)
        case .suppressed(let message, let listReason):
            return .suppressed(message, reason: listReason)
        case .existing(let existing):
            // The same key is the same request, as with payment APIs: a key reused for another
            // template, recipient, user or token is the caller's bug, never silently merged.
            guard existing.template == new.template, existing.toAddress.lowercased() == prepared.address.normalized,
                  existing.userID == new.userID, existing.tokenID == new.tokenID
            else {
                throw NotifierError.alreadyExists(
                    "idempotency_key was already used for another request (another template, recipient, user or token); use a new key for a new message"
                )
            }
            return .duplicate(existing)
        }
    }

    /// ``prepare(_:)`` and ``commit(_:)`` in one.
    package func enqueue(_ new: NewMessage) async throws -> EnqueueOutcome {
        try await self.commit(try self.prepare(new))
    }

    /// An address, trimmed, its lower-case form and its domain.
    static func validAddress(_ value: String) throws -> (address: String, normalized: String, domain: String) {
        try MIMEMessage.checkHeaderValue(value, field: "to_address")
        let address = value.trimmingCharacters(in: .whitespaces)
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[0].utf8.count <= 64, address.utf8.count <= 254,
              parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !address.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0 == "," || $0 == ";" || $0 == "\"" })
        else {
            throw NotifierError.invalidArgument("to_address `\(address.prefix(80))` is not an email address")
        }
        return (address, address.lowercased(), parts[1].lowercased())
    }

    // MARK: Delivery

    /// A message handed to a delivery worker.
    package struct Claimed: Sendable {
        package var seq: Int64
        package var id: String
        package var toAddress: String
        package var content: [UInt8]
        package var attemptID: Int64
        package var createdAt: Int64
        package var failures: Int
        /// The worker holding the claim (its lease is renewed and checked under this name).
        package var holder: String
        /// The message was held by a worker whose lease ran out (a replica that died or lost its
        /// database): it may have been sent already.
        package var tookOver: Bool
    }

    /// What an attempt cut short by an expired lease says in the message's history.
    package static let leaseExpired = "the worker holding this message stopped renewing its claim (its process stopped or lost the database); tried again"

    /// Marks attempts that a stopped process left open as interrupted; their messages are due
    /// again. Only for a store that one process writes (SQLite); with replicas, leases do this.
    package func recoverInterruptedAttempts() async throws -> Int {
        try await self.repository.recoverInterruptedAttempts(now: self.clock.nowMilliseconds())
    }

    /// Takes the message due soonest that nobody holds, for `lease`, and records the start of an
    /// attempt (committed before anything is sent, so a crash leaves a trace).
    package func claimNext(holder: String, transport: String, server: String, lease: Duration = .seconds(60)) async throws -> Claimed? {
        let now = self.clock.nowMilliseconds()
        return try await self.repository.claimNext(
            ClaimRequest(holder: holder, transport: transport, server: server, now: now, lease: lease.milliseconds)
        )
    }

    /// Keeps holding `claimed` for `lease` from now; false when the claim was lost.
    package func renewLease(_ claimed: Claimed, lease: Duration) async throws -> Bool {
        try await self.repository.renewLease(claimed, now: self.clock.nowMilliseconds(), lease: lease.milliseconds)
    }

    /// How a message's reason starts when the relay refused it for its policy or our setup.
    package static let relayRefusal = "the relay refuses our mail (its policy or our setup, not the mailbox; nothing suppressed)"

    /// When the next attempt is due after `failures` temporary failures (this one included).
    func retryDelay(afterFailures failures: Int) -> Duration {
        let schedule = self.configuration.retrySchedule
        return schedule[min(max(failures, 1), schedule.count) - 1]
    }

    /// What the attempt's `result` does to the message: accepted; deferred with the next time;
    /// failed (and, for a refused recipient, suppressed).
    func plan(_ claimed: Claimed, result: DeliveryResult, now: Int64) throws -> FinishPlan {
        var plan = FinishPlan(state: .accepted, reason: "", nextAttemptAt: nil, now: now, suppress: nil)
        switch result.outcome {
        case .accepted:
            break
        case .permanentFailure where result.refusal == .relaySetup, .temporaryFailure, .interrupted:
            // Kept and retried on the schedule until max_age: a temporary failure, or a refusal
            // every recipient would get (the relay's policy or our setup), which lasts until the
            // relay is fixed.
            let relay = result.outcome == .permanentFailure
            let due = now + self.retryDelay(afterFailures: claimed.failures + 1).milliseconds
            if due - claimed.createdAt > self.configuration.maxAge.milliseconds {
                plan.state = .failed
                let still = Self.describe(self.configuration.maxAge)
                plan.reason = relay ? "\(Self.relayRefusal) still after \(still): \(result.summary)" : "still failing after \(still): \(result.summary)"
            } else {
                plan.state = .deferred
                plan.nextAttemptAt = due
                plan.reason = relay ? "\(Self.relayRefusal): \(result.summary)" : result.summary
            }
        case .permanentFailure:
            plan.state = .failed
            plan.reason = result.summary
            if result.refusal == .mailbox {
                plan.suppress = try self.suppression(of: claimed.toAddress, reason: result.summary, messageID: claimed.id, at: now)
                plan.reason = "hard bounce, address suppressed: \(result.summary)"
            }
        }
        return plan
    }

    /// Records how an attempt ended and moves the message on. Returns the message's new state,
    /// or nil when the worker had lost its claim (the attempt is recorded; the message is its
    /// new holder's).
    @discardableResult
    package func finish(_ claimed: Claimed, result: DeliveryResult) async throws -> MessageStateValue? {
        let plan = try self.plan(claimed, result: result, now: self.clock.nowMilliseconds())
        return try await self.repository.finish(claimed, result: result, plan: plan) ? plan.state : nil
    }

    /// An entry of the suppression list for `address`, because of the message `messageID`.
    func suppression(of address: String, reason: String, messageID: String, at now: Int64) throws -> Suppression {
        let address = try Self.validAddress(address)
        return Suppression(address: address.address, normalized: address.normalized, reason: reason, messageID: messageID, at: now)
    }

    static func describe(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }

    // MARK: History

    package func message(id: String) async throws -> MessageRecord {
        guard id.hasPrefix("m_"), id.utf8.count <= 64, let message = try await self.repository.message(id: id) else {
            throw NotifierError.notFound("no message has the id \(id.prefix(80))")
        }
        return message
    }

    /// Messages to an address or of a user, newest first.
    package func messages(
        toAddress: String, userID: String, since: Int64, pageSize: Int, pageToken: String
    ) async throws -> (messages: [MessageRecord], next: String) {
        guard toAddress.isEmpty != userID.isEmpty else {
            throw NotifierError.invalidArgument("give either to_address or user_id")
        }
        guard (1...100).contains(pageSize) else {
            throw NotifierError.invalidArgument("page_size must be from 1 to 100 (0 for 20)")
        }
        let before = try Self.decodeToken(pageToken, kind: "m1") ?? Int64.max
        let filter: MessageFilter = toAddress.isEmpty ? .user(userID) : .address(toAddress.trimmingCharacters(in: .whitespaces).lowercased())
        let found = try await self.repository.messages(filter, before: before, since: since, limit: pageSize + 1)
        let messages = Array(found.prefix(pageSize))
        let next = found.count > pageSize ? PageToken.encode("m1", messages[pageSize - 1].seq) : ""
        return (messages, next)
    }

    static func decodeToken(_ token: String, kind: String) throws -> Int64? {
        guard !token.isEmpty else { return nil }
        guard let value = PageToken.position(token, kind: kind) else {
            throw NotifierError.invalidArgument("page_token is not one this service gave out")
        }
        return value
    }

    // MARK: Suppressions

    package func suppressions(address: String, pageSize: Int, pageToken: String) async throws -> (suppressions: [SuppressionRecord], next: String) {
        guard (1...500).contains(pageSize) else {
            throw NotifierError.invalidArgument("page_size must be from 1 to 500 (0 for 50)")
        }
        let after = try Self.decodeToken(pageToken, kind: "s1") ?? 0
        let normalized = address.isEmpty ? nil : address.trimmingCharacters(in: .whitespaces).lowercased()
        let found = try await self.repository.suppressions(normalized: normalized, after: after, limit: pageSize + 1)
        let page = found.prefix(pageSize)
        let next = found.count > pageSize ? PageToken.encode("s1", page.last?.position ?? 0) : ""
        return (page.map(\.record), next)
    }

    /// Takes `address` off the list; `why` (the admin's reason, at most 200 characters) is kept
    /// with the removal record.
    package func removeSuppression(address: String, why: String = "", actor: ActorInfo) async throws -> SuppressionRecord {
        guard why.count <= 200 else {
            throw NotifierError.invalidArgument("reason must be at most 200 characters")
        }
        let normalized = address.trimmingCharacters(in: .whitespaces).lowercased()
        guard let removed = try await self.repository.removeSuppression(
            normalized: normalized, removal: SuppressionRemoval(why: why, actor: actor, at: self.clock.nowMilliseconds())
        ) else {
            throw NotifierError.notFound("\(address.prefix(254)) is not on the suppression list")
        }
        return removed
    }

    // MARK: Statistics

    package struct Stats: Sendable {
        package var depth = 0
        package var oldestQueuedAge: Int64 = 0
        package var lastAcceptedAt: Int64 = 0
        package var lastAttemptAt: Int64 = 0
        package var recent: [AttemptOutcomeValue: Int] = [:]
        package var byDomain: [(domain: String, accepted: Int, temporary: Int, permanent: Int)] = []
        /// Attempts per hour, oldest first (the last one is the hour now running).
        package var hourly: [(start: Int64, accepted: Int, temporary: Int, permanent: Int)] = []
    }

    /// Messages waiting (queued or deferred) and how long the oldest has waited, in milliseconds.
    package func queue() async throws -> (depth: Int, oldestAge: Int64) {
        let now = self.clock.nowMilliseconds()
        let (depth, oldest) = try await self.repository.queue()
        return (depth, oldest.map { max(0, now - $0) } ?? 0)
    }

    package func stats(window: Duration, hours: Int = 0) async throws -> Stats {
        let now = self.clock.nowMilliseconds()
        var stats = Stats()
        (stats.depth, stats.oldestQueuedAge) = try await self.queue()
        let hour: Int64 = 3_600_000
        let first = (now / hour - Int64(hours - 1)) * hour
        let figures = try await self.repository.attemptFigures(since: now - window.milliseconds, hourly: hours > 0 ? (first, hour) : nil)
        stats.lastAcceptedAt = figures.lastAcceptedAt
        stats.lastAttemptAt = figures.lastAttemptAt
        var domains: [String: (Int, Int, Int)] = [:]
        for (domain, outcome, count) in figures.byDomain {
            stats.recent[outcome, default: 0] += count
            var counts = domains[domain, default: (0, 0, 0)]
            switch outcome {
            case .accepted: counts.0 += count
            case .temporaryFailure, .interrupted: counts.1 += count
            case .permanentFailure: counts.2 += count
            }
            domains[domain] = counts
        }
        stats.byDomain = domains.map { (domain: $0.key, accepted: $0.value.0, temporary: $0.value.1, permanent: $0.value.2) }
            .sorted { ($0.temporary + $0.permanent, $0.domain) > ($1.temporary + $1.permanent, $1.domain) }
        if hours > 0 {
            stats.hourly = (0..<Int64(hours)).map { (start: first + $0 * hour, accepted: 0, temporary: 0, permanent: 0) }
            for (bucket, outcome, count) in figures.byHour where stats.hourly.indices.contains(bucket) {
                switch outcome {
                case .accepted: stats.hourly[bucket].accepted += count
                case .temporaryFailure, .interrupted: stats.hourly[bucket].temporary += count
                case .permanentFailure: stats.hourly[bucket].permanent += count
                }
            }
        }
        return stats
    }
}
