import Foundation
import RekeyClock
import RekeyCrypto
import RekeySQLite

/// The notifier's storage: the outbox and the history of every message, the suppression list.
/// Every method is synchronous and runs on the database's thread.
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

    package init(configuration: Configuration, templates: MailTemplates, clock: any WallClock) {
        self.configuration = configuration
        self.templates = templates
        self.clock = clock
    }

    package static let migrations = [
        SQLiteMigration(version: 1, name: "outbox", sql: """
            CREATE TABLE messages (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                idempotency_key TEXT NOT NULL UNIQUE,
                template TEXT NOT NULL,
                locale TEXT NOT NULL,
                to_address TEXT NOT NULL,
                to_normalized TEXT NOT NULL,
                to_domain TEXT NOT NULL,
                to_name TEXT NOT NULL,
                user_id TEXT NOT NULL,
                token_id TEXT NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                state INTEGER NOT NULL,
                message_id_header TEXT NOT NULL,
                subject TEXT NOT NULL,
                content BLOB,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                next_attempt_at INTEGER,
                claimed_by TEXT,
                reason TEXT NOT NULL DEFAULT ''
            );
            CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state IN (1, 2);
            CREATE INDEX messages_by_address ON messages (to_normalized, seq);
            CREATE INDEX messages_by_user ON messages (user_id, seq);
            CREATE TABLE attempts (
                id INTEGER PRIMARY KEY,
                message_seq INTEGER NOT NULL REFERENCES messages (seq),
                to_domain TEXT NOT NULL,
                started_at INTEGER NOT NULL,
                finished_at INTEGER,
                transport TEXT NOT NULL,
                server TEXT NOT NULL,
                outcome INTEGER,
                stage TEXT NOT NULL DEFAULT '',
                reply_code INTEGER NOT NULL DEFAULT 0,
                enhanced_status TEXT NOT NULL DEFAULT '',
                reply_text TEXT NOT NULL DEFAULT '',
                remote_queue_id TEXT NOT NULL DEFAULT '',
                error TEXT NOT NULL DEFAULT ''
            );
            CREATE INDEX attempts_by_message ON attempts (message_seq, id);
            CREATE INDEX attempts_by_time ON attempts (started_at);
            CREATE TABLE suppressions (
                normalized TEXT PRIMARY KEY,
                address TEXT NOT NULL,
                reason TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                message_id TEXT NOT NULL
            );
            CREATE TABLE suppression_removals (
                id INTEGER PRIMARY KEY,
                normalized TEXT NOT NULL,
                address TEXT NOT NULL,
                reason TEXT NOT NULL,
                removed_at INTEGER NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL
            );
            """),
        SQLiteMigration(version: 2, name: "suppression removal reasons", sql: """
            ALTER TABLE suppression_removals ADD COLUMN removal_reason TEXT NOT NULL DEFAULT '';
            """),
        SQLiteMigration(version: 3, name: "reports after delivery", sql: """
            CREATE TABLE reports (
                id INTEGER PRIMARY KEY,
                message_seq INTEGER NOT NULL REFERENCES messages (seq),
                received_at INTEGER NOT NULL,
                kind TEXT NOT NULL,
                action TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL DEFAULT '',
                diagnostic TEXT NOT NULL DEFAULT '',
                remote_mta TEXT NOT NULL DEFAULT '',
                recipient TEXT NOT NULL DEFAULT '',
                feedback_type TEXT NOT NULL DEFAULT '',
                reporter TEXT NOT NULL DEFAULT ''
            );
            CREATE INDEX reports_by_message ON reports (message_seq, id);
            """),
    ]

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
    /// off the database's thread, ``commit(_:in:)`` the little that must be on it.
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
    package func commit(_ prepared: Prepared, in connection: SQLiteConnection) throws -> EnqueueOutcome {
        try connection.transaction { connection in
            if let existing = try connection.queryFirst(
                "SELECT seq, template, to_normalized, user_id, token_id FROM messages WHERE idempotency_key = ?", .text(prepared.new.idempotencyKey)
            ), let seq = existing.int("seq") {
                // The same key is the same request, as with payment APIs: a key reused for another
                // template, recipient, user or token is the caller's bug, never silently merged.
                let new = prepared.new
                guard existing.string("template") == new.template, existing.string("to_normalized") == prepared.address.normalized,
                      existing.string("user_id") == new.userID, existing.string("token_id") == new.tokenID
                else {
                    throw NotifierError.alreadyExists(
                        "idempotency_key was already used for another request (another template, recipient, user or token); use a new key for a new message"
                    )
                }
                return .duplicate(try self.message(seq: seq, in: connection))
            }
            if let suppression = try connection.queryFirst("SELECT reason FROM suppressions WHERE normalized = ?", .text(prepared.address.normalized)) {
                let reason = suppression.string("reason") ?? ""
                let seq = try self.insert(prepared, state: .suppressed, reason: "suppressed: \(reason)", in: connection)
                return .suppressed(try self.message(seq: seq, in: connection), reason: reason)
            }
            let seq = try self.insert(prepared, state: .queued, reason: "", in: connection)
            return .queued(try self.message(seq: seq, in: connection))
        }
    }

    /// ``prepare(_:)`` and ``commit(_:in:)`` in one, for callers already on the database's thread.
    package func enqueue(_ new: NewMessage, in connection: SQLiteConnection) throws -> EnqueueOutcome {
        try self.commit(try self.prepare(new), in: connection)
    }

    private func insert(_ prepared: Prepared, state: MessageStateValue, reason: String, in connection: SQLiteConnection) throws -> Int64 {
        let new = prepared.new
        let queued = state == .queued
        guard let seq = try connection.query(
            """
            INSERT INTO messages (id, idempotency_key, template, locale, to_address, to_normalized, to_domain, to_name, user_id, token_id,
                actor_id, actor_address, state, message_id_header, subject, content, created_at, updated_at, next_attempt_at, reason)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq
            """,
            [
                .text(prepared.id), .text(new.idempotencyKey), .text(new.template), .text(prepared.locale), .text(prepared.address.address),
                .text(prepared.address.normalized), .text(prepared.address.domain), .text(new.toName), .text(new.userID), .text(new.tokenID),
                .text(new.requestedBy.userID), .text(new.requestedBy.clientAddress), .integer(state.rawValue),
                .text(queued ? prepared.messageIDHeader : ""), .text(prepared.subject), queued ? .blob(prepared.content) : .null,
                .integer(prepared.now), .integer(prepared.now), queued ? .integer(prepared.now) : .null, .text(reason),
            ]
        ).first?.int("seq") else {
            throw NotifierError.failedPrecondition("the message could not be stored")
        }
        return seq
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
    }

    /// Marks attempts that a stopped process left open as interrupted; their messages are due again.
    package func recoverInterruptedAttempts(in connection: SQLiteConnection) throws -> Int {
        try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            let count = try connection.run(
                "UPDATE attempts SET outcome = ?, finished_at = ?, error = 'the service stopped during this attempt' WHERE outcome IS NULL",
                .integer(AttemptOutcomeValue.interrupted.rawValue), .integer(now)
            )
            try connection.run("UPDATE messages SET claimed_by = NULL WHERE claimed_by IS NOT NULL")
            return count
        }
    }

    /// Takes the message due soonest that no worker of this run holds, and records the start of
    /// an attempt (committed before anything is sent, so a crash leaves a trace).
    package func claimNext(worker runID: String, transport: String, server: String, in connection: SQLiteConnection) throws -> Claimed? {
        try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            guard let row = try connection.queryFirst(
                """
                SELECT seq, id, to_address, to_domain, content, created_at FROM messages
                WHERE state IN (1, 2) AND next_attempt_at <= ? AND claimed_by IS NULL
                ORDER BY next_attempt_at LIMIT 1
                """,
                .integer(now)
            ), let seq = row.int("seq") else { return nil }
            try connection.run("UPDATE messages SET claimed_by = ? WHERE seq = ?", .text(runID), .integer(seq))
            guard let attemptID = try connection.queryFirst(
                "INSERT INTO attempts (message_seq, to_domain, started_at, transport, server) VALUES (?, ?, ?, ?, ?) RETURNING id",
                .integer(seq), .text(row.string("to_domain") ?? ""), .integer(now), .text(transport), .text(server)
            )?.int("id") else { return nil }
            let failures = try connection.queryFirst(
                // Earlier failures move the schedule on: temporary ones, and refusals by the relay
                // (the only permanent ones after which a message is tried again).
                "SELECT count(*) AS n FROM attempts WHERE message_seq = ? AND outcome IN (?, ?)",
                .integer(seq), .integer(AttemptOutcomeValue.temporaryFailure.rawValue), .integer(AttemptOutcomeValue.permanentFailure.rawValue)
            )?.int("n") ?? 0
            return Claimed(
                seq: seq, id: row.string("id") ?? "", toAddress: row.string("to_address") ?? "", content: row.blob("content") ?? [],
                attemptID: attemptID, createdAt: row.int("created_at") ?? now, failures: Int(failures)
            )
        }
    }

    /// How a message's reason starts when the relay refused it for its policy or our setup.
    package static let relayRefusal = "the relay refuses our mail (its policy or our setup, not the mailbox; nothing suppressed)"

    /// When the next attempt is due after `failures` temporary failures (this one included).
    func retryDelay(afterFailures failures: Int) -> Duration {
        let schedule = self.configuration.retrySchedule
        return schedule[min(max(failures, 1), schedule.count) - 1]
    }

    /// Records how an attempt ended and moves the message on: accepted; deferred with the next
    /// time; failed (and, for a refused recipient, suppressed).
    @discardableResult
    package func finish(_ claimed: Claimed, result: DeliveryResult, in connection: SQLiteConnection) throws -> MessageStateValue {
        try connection.transaction { connection in
            let now = self.clock.nowMilliseconds()
            try connection.run(
                """
                UPDATE attempts SET finished_at = ?, outcome = ?, stage = ?, reply_code = ?, enhanced_status = ?, reply_text = ?,
                    remote_queue_id = ?, error = ? WHERE id = ?
                """,
                .integer(now), .integer(result.outcome.rawValue), .text(result.stage), .integer(Int64(result.replyCode)),
                .text(result.enhancedStatus), .text(result.replyText), .text(result.remoteQueueID), .text(result.error), .integer(claimed.attemptID)
            )
            let state: MessageStateValue
            var reason = ""
            var next: Int64?
            switch result.outcome {
            case .accepted:
                state = .accepted
            case .permanentFailure where result.refusal == .relaySetup, .temporaryFailure, .interrupted:
                // Kept and retried on the schedule until max_age: a temporary failure, or a
                // refusal every recipient would get (the relay's policy or our setup), which lasts
                // until the relay is fixed.
                let relay = result.outcome == .permanentFailure
                let due = now + self.retryDelay(afterFailures: claimed.failures + 1).milliseconds
                if due - claimed.createdAt > self.configuration.maxAge.milliseconds {
                    state = .failed
                    let still = Self.describe(self.configuration.maxAge)
                    reason = relay ? "\(Self.relayRefusal) still after \(still): \(result.summary)" : "still failing after \(still): \(result.summary)"
                } else {
                    state = .deferred
                    next = due
                    reason = relay ? "\(Self.relayRefusal): \(result.summary)" : result.summary
                }
            case .permanentFailure:
                state = .failed
                reason = result.summary
                if result.refusal == .mailbox {
                    try Self.suppress(claimed.toAddress, reason: result.summary, messageID: claimed.id, now: now, in: connection)
                    reason = "hard bounce, address suppressed: \(result.summary)"
                }
            }
            try connection.run(
                """
                UPDATE messages SET state = ?, reason = ?, next_attempt_at = ?, updated_at = ?, claimed_by = NULL,
                    content = CASE WHEN ? THEN NULL ELSE content END
                WHERE seq = ?
                """,
                .integer(state.rawValue), .text(reason), next.map { .integer($0) } ?? .null, .integer(now),
                .integer(state.isFinal ? 1 : 0), .integer(claimed.seq)
            )
            return state
        }
    }

    /// Puts `address` on the suppression list (or renews its entry) because of `messageID`.
    static func suppress(_ address: String, reason: String, messageID: String, now: Int64, in connection: SQLiteConnection) throws {
        let address = try Self.validAddress(address)
        try connection.run(
            """
            INSERT INTO suppressions (normalized, address, reason, created_at, message_id) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (normalized) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, message_id = excluded.message_id
            """,
            .text(address.normalized), .text(address.address), .text(reason), .integer(now), .text(messageID)
        )
    }

    /// When the earliest queued or deferred message is due; nil when there is none.
    package func nextDue(in connection: SQLiteConnection) throws -> Int64? {
        try connection.queryFirst("SELECT min(next_attempt_at) AS due FROM messages WHERE state IN (1, 2) AND claimed_by IS NULL")?.int("due")
    }

    static func describe(_ duration: Duration) -> String {
        let seconds = duration.components.seconds
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }

    // MARK: History

    package func message(id: String, in connection: SQLiteConnection) throws -> MessageRecord {
        guard id.hasPrefix("m_"), let seq = try connection.queryFirst("SELECT seq FROM messages WHERE id = ?", .text(id))?.int("seq") else {
            throw NotifierError.notFound("no message has the id \(id.prefix(80))")
        }
        return try self.message(seq: seq, in: connection)
    }

    func message(seq: Int64, in connection: SQLiteConnection) throws -> MessageRecord {
        guard let row = try connection.queryFirst("SELECT * FROM messages WHERE seq = ?", .integer(seq)) else {
            throw NotifierError.notFound("no such message")
        }
        let attempts = try connection.query("SELECT * FROM attempts WHERE message_seq = ? ORDER BY id", .integer(seq)).map { row in
            AttemptRecord(
                startedAt: row.int("started_at") ?? 0, finishedAt: row.int("finished_at"), transport: row.string("transport") ?? "",
                server: row.string("server") ?? "", outcome: row.int("outcome").flatMap(AttemptOutcomeValue.init(rawValue:)),
                stage: row.string("stage") ?? "", replyCode: Int(row.int("reply_code") ?? 0), enhancedStatus: row.string("enhanced_status") ?? "",
                replyText: row.string("reply_text") ?? "", remoteQueueID: row.string("remote_queue_id") ?? "", error: row.string("error") ?? ""
            )
        }
        let reports = try connection.query("SELECT * FROM reports WHERE message_seq = ? ORDER BY id", .integer(seq)).map(Self.report)
        return MessageRecord(
            seq: seq, id: row.string("id") ?? "", template: row.string("template") ?? "", toAddress: row.string("to_address") ?? "",
            toName: row.string("to_name") ?? "", locale: row.string("locale") ?? "", userID: row.string("user_id") ?? "",
            tokenID: row.string("token_id") ?? "", state: row.int("state").flatMap(MessageStateValue.init(rawValue:)) ?? .queued,
            messageIDHeader: row.string("message_id_header") ?? "", subject: row.string("subject") ?? "",
            createdAt: row.int("created_at") ?? 0, updatedAt: row.int("updated_at") ?? 0, nextAttemptAt: row.int("next_attempt_at"),
            reason: row.string("reason") ?? "",
            requestedBy: ActorInfo(userID: row.string("actor_id") ?? "", clientAddress: row.string("actor_address") ?? ""),
            attempts: attempts, reports: reports
        )
    }

    /// Messages to an address or of a user, newest first.
    package func messages(
        toAddress: String, userID: String, since: Int64, pageSize: Int, pageToken: String, in connection: SQLiteConnection
    ) throws -> (messages: [MessageRecord], next: String) {
        guard toAddress.isEmpty != userID.isEmpty else {
            throw NotifierError.invalidArgument("give either to_address or user_id")
        }
        guard (1...100).contains(pageSize) else {
            throw NotifierError.invalidArgument("page_size must be from 1 to 100 (0 for 20)")
        }
        let before = try Self.decodeToken(pageToken, kind: "m1") ?? Int64.max
        let rows = toAddress.isEmpty
            ? try connection.query(
                "SELECT seq FROM messages WHERE user_id = ? AND seq < ? AND created_at >= ? ORDER BY seq DESC LIMIT ?",
                .text(userID), .integer(before), .integer(since), .integer(Int64(pageSize + 1))
            )
            : try connection.query(
                "SELECT seq FROM messages WHERE to_normalized = ? AND seq < ? AND created_at >= ? ORDER BY seq DESC LIMIT ?",
                .text(toAddress.trimmingCharacters(in: .whitespaces).lowercased()), .integer(before), .integer(since), .integer(Int64(pageSize + 1))
            )
        let seqs = rows.compactMap { $0.int("seq") }
        let messages = try seqs.prefix(pageSize).map { try self.message(seq: $0, in: connection) }
        let next = seqs.count > pageSize ? PageToken.encode("m1", seqs[pageSize - 1]) : ""
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

    package func suppressions(address: String, pageSize: Int, pageToken: String, in connection: SQLiteConnection) throws -> (suppressions: [SuppressionRecord], next: String) {
        guard (1...500).contains(pageSize) else {
            throw NotifierError.invalidArgument("page_size must be from 1 to 500 (0 for 50)")
        }
        let after = try Self.decodeToken(pageToken, kind: "s1") ?? 0
        let rows = address.isEmpty
            ? try connection.query("SELECT rowid AS r, * FROM suppressions WHERE rowid > ? ORDER BY rowid LIMIT ?", .integer(after), .integer(Int64(pageSize + 1)))
            : try connection.query("SELECT rowid AS r, * FROM suppressions WHERE normalized = ?", .text(address.trimmingCharacters(in: .whitespaces).lowercased()))
        let records = rows.prefix(pageSize).map(Self.suppression)
        let next = rows.count > pageSize ? PageToken.encode("s1", rows[pageSize - 1].int("r") ?? 0) : ""
        return (records, next)
    }

    /// Takes `address` off the list; `why` (the admin's reason, at most 200 characters) is kept
    /// with the removal record.
    package func removeSuppression(address: String, why: String = "", actor: ActorInfo, in connection: SQLiteConnection) throws -> SuppressionRecord {
        let normalized = address.trimmingCharacters(in: .whitespaces).lowercased()
        guard why.count <= 200 else {
            throw NotifierError.invalidArgument("reason must be at most 200 characters")
        }
        return try connection.transaction { connection in
            guard let row = try connection.queryFirst("SELECT * FROM suppressions WHERE normalized = ?", .text(normalized)) else {
                throw NotifierError.notFound("\(address.prefix(254)) is not on the suppression list")
            }
            let record = Self.suppression(row)
            try connection.run("DELETE FROM suppressions WHERE normalized = ?", .text(normalized))
            try connection.run(
                "INSERT INTO suppression_removals (normalized, address, reason, removed_at, actor_id, actor_address, removal_reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                .text(normalized), .text(record.address), .text(record.reason), .integer(self.clock.nowMilliseconds()),
                .text(actor.userID), .text(actor.clientAddress), .text(why)
            )
            return record
        }
    }

    private static func suppression(_ row: SQLiteRow) -> SuppressionRecord {
        SuppressionRecord(
            address: row.string("address") ?? "", reason: row.string("reason") ?? "", createdAt: row.int("created_at") ?? 0,
            messageID: row.string("message_id") ?? ""
        )
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
    package func queue(in connection: SQLiteConnection) throws -> (depth: Int, oldestAge: Int64) {
        let now = self.clock.nowMilliseconds()
        guard let row = try connection.queryFirst("SELECT count(*) AS n, min(created_at) AS oldest FROM messages WHERE state IN (1, 2)") else {
            return (0, 0)
        }
        return (Int(row.int("n") ?? 0), row.int("oldest").map { max(0, now - $0) } ?? 0)
    }

    package func stats(window: Duration, hours: Int = 0, in connection: SQLiteConnection) throws -> Stats {
        let now = self.clock.nowMilliseconds()
        var stats = Stats()
        (stats.depth, stats.oldestQueuedAge) = try self.queue(in: connection)
        stats.lastAcceptedAt = try connection.queryFirst(
            "SELECT max(finished_at) AS at FROM attempts WHERE outcome = ?", .integer(AttemptOutcomeValue.accepted.rawValue)
        )?.int("at") ?? 0
        stats.lastAttemptAt = try connection.queryFirst("SELECT max(started_at) AS at FROM attempts")?.int("at") ?? 0
        let since = now - window.milliseconds
        var domains: [String: (Int, Int, Int)] = [:]
        for row in try connection.query(
            "SELECT to_domain, outcome, count(*) AS n FROM attempts WHERE started_at >= ? AND outcome IS NOT NULL GROUP BY to_domain, outcome",
            .integer(since)
        ) {
            guard let outcome = row.int("outcome").flatMap(AttemptOutcomeValue.init(rawValue:)) else { continue }
            let count = Int(row.int("n") ?? 0)
            stats.recent[outcome, default: 0] += count
            var figures = domains[row.string("to_domain") ?? "", default: (0, 0, 0)]
            switch outcome {
            case .accepted: figures.0 += count
            case .temporaryFailure, .interrupted: figures.1 += count
            case .permanentFailure: figures.2 += count
            }
            domains[row.string("to_domain") ?? ""] = figures
        }
        stats.byDomain = domains.map { (domain: $0.key, accepted: $0.value.0, temporary: $0.value.1, permanent: $0.value.2) }
            .sorted { ($0.temporary + $0.permanent, $0.domain) > ($1.temporary + $1.permanent, $1.domain) }
        if hours > 0 {
            let hour: Int64 = 3_600_000
            let first = (now / hour - Int64(hours - 1)) * hour
            stats.hourly = (0..<Int64(hours)).map { (start: first + $0 * hour, accepted: 0, temporary: 0, permanent: 0) }
            for row in try connection.query(
                "SELECT (started_at - ?) / ? AS bucket, outcome, count(*) AS n FROM attempts WHERE started_at >= ? AND outcome IS NOT NULL GROUP BY bucket, outcome",
                .integer(first), .integer(hour), .integer(first)
            ) {
                guard let bucket = row.int("bucket").map(Int.init), stats.hourly.indices.contains(bucket),
                      let outcome = row.int("outcome").flatMap(AttemptOutcomeValue.init(rawValue:)) else { continue }
                let count = Int(row.int("n") ?? 0)
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
