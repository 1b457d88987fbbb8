import RekeySQLite

/// Where the notifier keeps its outbox, the history of every message and the suppression list:
/// SQLite (the default, one process) or PostgreSQL (any number of replicas).
///
/// Operations are at the level of the domain; the rules (validation, rendering, the retry
/// schedule, what a bounce does to a message, the wording of reasons) stay in ``OutboxStore`` and
/// reach the repository as plain values, or as a small closure that runs inside the repository's
/// transaction.
///
/// Claims are leases: a worker that takes a message holds it until `lease_until` and renews the
/// lease while it talks to the relay. A message whose lease ran out is due again, and the attempt
/// its holder left open is recorded as interrupted: that is how a replica that died (or lost its
/// database) hands its messages on, at most once each. A backend shared by replicas keeps lease
/// times on one clock, its own, so that a replica whose clock runs ahead cannot take over a
/// lease that is still live.
package protocol OutboxRepository: Sendable {
    /// Stores `message`, or returns the message already stored under its idempotency key. When
    /// its address is on the suppression list it is stored as suppressed (no content, never
    /// sent), with the reason `suppressedReason(listReason)`.
    func enqueue(_ message: NewOutboxMessage, suppressedReason: @escaping @Sendable (String) -> String) async throws -> StoredMessage

    /// Records every attempt left open as interrupted and releases every claim: for a backend
    /// that only one process writes, at its start. Backends shared by replicas return 0 and rely
    /// on leases instead.
    func recoverInterruptedAttempts(now: Int64) async throws -> Int

    /// Takes the message due soonest that nobody holds (or whose holder's lease ran out), and
    /// records the start of an attempt, committed before anything is sent.
    func claimNext(_ request: ClaimRequest) async throws -> OutboxStore.Claimed?

    /// Extends the lease to `lease` milliseconds from now (`now` on the replica's clock, for a
    /// backend that has none of its own); false when the claim was lost (the lease ran out and
    /// another worker took the message).
    func renewLease(_ claimed: OutboxStore.Claimed, now: Int64, lease: Int64) async throws -> Bool

    /// Records how the attempt ended and, when the worker still holds the message, moves the
    /// message on as `plan` says. Returns false when the claim had been lost: the attempt is
    /// recorded, the message left to its new holder.
    func finish(_ claimed: OutboxStore.Claimed, result: DeliveryResult, plan: FinishPlan) async throws -> Bool

    func message(id: String) async throws -> MessageRecord?

    /// Messages to an address (lower case) or of a user, newest first, with `seq` below `before`.
    func messages(_ filter: MessageFilter, before: Int64, since: Int64, limit: Int) async throws -> [MessageRecord]

    /// The suppression list in the order entries were made, after position `after`; or the one
    /// entry for `normalized`.
    func suppressions(normalized: String?, after: Int64, limit: Int) async throws -> [PositionedSuppression]

    /// Takes the entry off the list and keeps a removal record; nil when there is no entry.
    func removeSuppression(normalized: String, removal: SuppressionRemoval) async throws -> SuppressionRecord?

    /// Messages waiting (queued or deferred) and the creation time of the oldest.
    func queue() async throws -> (depth: Int, oldestCreatedAt: Int64?)

    /// Counts of finished attempts since `since`, by domain and outcome, and per hour from
    /// `hourly.first` when asked.
    func attemptFigures(since: Int64, hourly: (first: Int64, hour: Int64)?) async throws -> AttemptFigures

    /// Finds the message a report is about (by the ids its VERP addresses name, else by the
    /// Message-ID it returns) and stores what `decide` makes of it, in one transaction.
    func recordReport(
        messageIDs: [String], messageIDHeader: String?, decide: @escaping @Sendable (MessageRecord) -> ReportEffect
    ) async throws -> (message: MessageRecord, effect: ReportEffect)?
}

/// A message checked and rendered, as the repository stores it.
package struct NewOutboxMessage: Sendable {
    package var id: String
    package var idempotencyKey: String
    package var template: String
    package var locale: String
    package var toAddress: String
    package var toNormalized: String
    package var toDomain: String
    package var toName: String
    package var userID: String
    package var tokenID: String
    package var requestedBy: ActorInfo
    package var messageIDHeader: String
    package var subject: String
    package var content: [UInt8]
    package var now: Int64
}

package enum StoredMessage: Sendable {
    case queued(MessageRecord)
    case suppressed(MessageRecord, listReason: String)
    /// A message already had the idempotency key.
    case existing(MessageRecord)
}

package struct ClaimRequest: Sendable {
    /// Who holds the claim: one worker of one run of one replica.
    package var holder: String
    package var transport: String
    package var server: String
    /// The replica's clock: the attempt's start, and which messages are due.
    package var now: Int64
    /// How long the claim holds, in milliseconds, unless renewed.
    package var lease: Int64
}

/// What a finished attempt does to its message.
package struct FinishPlan: Sendable {
    package var state: MessageStateValue
    package var reason: String
    package var nextAttemptAt: Int64?
    package var now: Int64
    /// The address goes on the suppression list (a refused mailbox).
    package var suppress: Suppression?
}

package struct Suppression: Sendable {
    package var address: String
    package var normalized: String
    package var reason: String
    package var messageID: String
    package var at: Int64
}

package struct SuppressionRemoval: Sendable {
    package var why: String
    package var actor: ActorInfo
    package var at: Int64
}

package struct PositionedSuppression: Sendable {
    package var position: Int64
    package var record: SuppressionRecord
}

package enum MessageFilter: Sendable {
    case address(String)
    case user(String)
}

package struct AttemptFigures: Sendable {
    package var lastAcceptedAt: Int64 = 0
    package var lastAttemptAt: Int64 = 0
    package var byDomain: [(domain: String, outcome: AttemptOutcomeValue, count: Int)] = []
    /// Per hour: the hour's index from `hourly.first`.
    package var byHour: [(bucket: Int, outcome: AttemptOutcomeValue, count: Int)] = []
}

/// What a bounce or complaint does: the report always goes on the message's timeline.
package struct ReportEffect: Sendable {
    package var report: ReportRecord
    /// The message's new state and reason, when the report changes it.
    package var newState: (state: MessageStateValue, reason: String)?
    package var suppress: Suppression?
}

// MARK: - SQLite

/// The embedded backend: one SQLite file written by one process, whose workers' claims the
/// process releases when it starts again.
package struct SQLiteOutboxRepository: OutboxRepository {
    package let database: SQLiteDatabase

    package init(database: SQLiteDatabase) {
        self.database = database
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
        SQLiteMigration(version: 4, name: "claims are leases", sql: """
            ALTER TABLE messages ADD COLUMN lease_until INTEGER;
            """),
    ]

    // MARK: Enqueue

    package func enqueue(_ message: NewOutboxMessage, suppressedReason: @escaping @Sendable (String) -> String) async throws -> StoredMessage {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                if let seq = try connection.queryFirst("SELECT seq FROM messages WHERE idempotency_key = ?", .text(message.idempotencyKey))?.int("seq") {
                    return .existing(try Self.message(seq: seq, in: connection))
                }
                if let listReason = try connection.queryFirst("SELECT reason FROM suppressions WHERE normalized = ?", .text(message.toNormalized))?.string("reason") {
                    let seq = try Self.insert(message, state: .suppressed, reason: suppressedReason(listReason), in: connection)
                    return .suppressed(try Self.message(seq: seq, in: connection), listReason: listReason)
                }
                return .queued(try Self.message(seq: try Self.insert(message, state: .queued, reason: "", in: connection), in: connection))
            }
        }
    }

    private static func insert(_ message: NewOutboxMessage, state: MessageStateValue, reason: String, in connection: SQLiteConnection) throws -> Int64 {
        let queued = state == .queued
        guard let seq = try connection.query(
            """
            INSERT INTO messages (id, idempotency_key, template, locale, to_address, to_normalized, to_domain, to_name, user_id, token_id,
                actor_id, actor_address, state, message_id_header, subject, content, created_at, updated_at, next_attempt_at, reason)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq
            """,
            [
                .text(message.id), .text(message.idempotencyKey), .text(message.template), .text(message.locale), .text(message.toAddress),
                .text(message.toNormalized), .text(message.toDomain), .text(message.toName), .text(message.userID), .text(message.tokenID),
                .text(message.requestedBy.userID), .text(message.requestedBy.clientAddress), .integer(state.rawValue),
                .text(queued ? message.messageIDHeader : ""), .text(message.subject), queued ? .blob(message.content) : .null,
                .integer(message.now), .integer(message.now), queued ? .integer(message.now) : .null, .text(reason),
            ]
        ).first?.int("seq") else {
            throw NotifierError.failedPrecondition("the message could not be stored")
        }
        return seq
    }

    // MARK: Delivery

    package func recoverInterruptedAttempts(now: Int64) async throws -> Int {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                let count = try connection.run(
                    "UPDATE attempts SET outcome = ?, finished_at = ?, error = 'the service stopped during this attempt' WHERE outcome IS NULL",
                    .integer(AttemptOutcomeValue.interrupted.rawValue), .integer(now)
                )
                try connection.run("UPDATE messages SET claimed_by = NULL, lease_until = NULL WHERE claimed_by IS NOT NULL")
                return count
            }
        }
    }

    package func claimNext(_ request: ClaimRequest) async throws -> OutboxStore.Claimed? {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                let now = request.now
                guard let row = try connection.queryFirst(
                    """
                    SELECT seq, id, to_address, to_domain, content, created_at, claimed_by FROM messages
                    WHERE state IN (1, 2) AND next_attempt_at <= ? AND (claimed_by IS NULL OR lease_until < ?)
                    ORDER BY next_attempt_at LIMIT 1
                    """,
                    .integer(now), .integer(now)
                ), let seq = row.int("seq") else { return nil }
                let takenOver = row.string("claimed_by") != nil
                if takenOver {
                    try connection.run(
                        "UPDATE attempts SET outcome = ?, finished_at = ?, error = ? WHERE message_seq = ? AND outcome IS NULL",
                        .integer(AttemptOutcomeValue.interrupted.rawValue), .integer(now), .text(OutboxStore.leaseExpired), .integer(seq)
                    )
                }
                try connection.run(
                    "UPDATE messages SET claimed_by = ?, lease_until = ? WHERE seq = ?", .text(request.holder), .integer(now + request.lease), .integer(seq)
                )
                guard let attemptID = try connection.queryFirst(
                    "INSERT INTO attempts (message_seq, to_domain, started_at, transport, server) VALUES (?, ?, ?, ?, ?) RETURNING id",
                    .integer(seq), .text(row.string("to_domain") ?? ""), .integer(now), .text(request.transport), .text(request.server)
                )?.int("id") else { return nil }
                let failures = try connection.queryFirst(
                    // Earlier failures move the schedule on: temporary ones, and refusals by the
                    // relay (the only permanent ones after which a message is tried again).
                    "SELECT count(*) AS n FROM attempts WHERE message_seq = ? AND outcome IN (?, ?)",
                    .integer(seq), .integer(AttemptOutcomeValue.temporaryFailure.rawValue), .integer(AttemptOutcomeValue.permanentFailure.rawValue)
                )?.int("n") ?? 0
                return OutboxStore.Claimed(
                    seq: seq, id: row.string("id") ?? "", toAddress: row.string("to_address") ?? "", content: row.blob("content") ?? [],
                    attemptID: attemptID, createdAt: row.int("created_at") ?? now, failures: Int(failures), holder: request.holder, tookOver: takenOver
                )
            }
        }
    }

    package func renewLease(_ claimed: OutboxStore.Claimed, now: Int64, lease: Int64) async throws -> Bool {
        try await self.database.withConnection { connection in
            try connection.run(
                "UPDATE messages SET lease_until = ? WHERE seq = ? AND claimed_by = ?", .integer(now + lease), .integer(claimed.seq), .text(claimed.holder)
            ) == 1
        }
    }

    package func finish(_ claimed: OutboxStore.Claimed, result: DeliveryResult, plan: FinishPlan) async throws -> Bool {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                try connection.run(
                    """
                    UPDATE attempts SET finished_at = ?, outcome = ?, stage = ?, reply_code = ?, enhanced_status = ?, reply_text = ?,
                        remote_queue_id = ?, error = ? WHERE id = ?
                    """,
                    .integer(plan.now), .integer(result.outcome.rawValue), .text(result.stage), .integer(Int64(result.replyCode)),
                    .text(result.enhancedStatus), .text(result.replyText), .text(result.remoteQueueID), .text(result.error), .integer(claimed.attemptID)
                )
                let held = try connection.run(
                    """
                    UPDATE messages SET state = ?, reason = ?, next_attempt_at = ?, updated_at = ?, claimed_by = NULL, lease_until = NULL,
                        content = CASE WHEN ? THEN NULL ELSE content END
                    WHERE seq = ? AND claimed_by = ?
                    """,
                    .integer(plan.state.rawValue), .text(plan.reason), plan.nextAttemptAt.map { .integer($0) } ?? .null, .integer(plan.now),
                    .integer(plan.state.isFinal ? 1 : 0), .integer(claimed.seq), .text(claimed.holder)
                ) == 1
                if held, let suppression = plan.suppress {
                    try Self.suppress(suppression, in: connection)
                }
                return held
            }
        }
    }

    private static func suppress(_ suppression: Suppression, in connection: SQLiteConnection) throws {
        try connection.run(
            """
            INSERT INTO suppressions (normalized, address, reason, created_at, message_id) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (normalized) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, message_id = excluded.message_id
            """,
            .text(suppression.normalized), .text(suppression.address), .text(suppression.reason), .integer(suppression.at), .text(suppression.messageID)
        )
    }

    // MARK: History

    package func message(id: String) async throws -> MessageRecord? {
        try await self.database.withConnection { connection in
            guard let seq = try connection.queryFirst("SELECT seq FROM messages WHERE id = ?", .text(id))?.int("seq") else { return nil }
            return try Self.message(seq: seq, in: connection)
        }
    }

    static func message(seq: Int64, in connection: SQLiteConnection) throws -> MessageRecord {
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
        let reports = try connection.query("SELECT * FROM reports WHERE message_seq = ? ORDER BY id", .integer(seq)).map { row in
            ReportRecord(
                receivedAt: row.int("received_at") ?? 0, kind: row.string("kind") ?? "", action: row.string("action") ?? "",
                status: row.string("status") ?? "", diagnostic: row.string("diagnostic") ?? "", remoteMTA: row.string("remote_mta") ?? "",
                recipient: row.string("recipient") ?? "", feedbackType: row.string("feedback_type") ?? "", reporter: row.string("reporter") ?? ""
            )
        }
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

    package func messages(_ filter: MessageFilter, before: Int64, since: Int64, limit: Int) async throws -> [MessageRecord] {
        try await self.database.withConnection { connection in
            let (column, value) = switch filter {
            case .address(let address): ("to_normalized", address)
            case .user(let userID): ("user_id", userID)
            }
            return try connection.query(
                "SELECT seq FROM messages WHERE \(column) = ? AND seq < ? AND created_at >= ? ORDER BY seq DESC LIMIT ?",
                .text(value), .integer(before), .integer(since), .integer(Int64(limit))
            ).compactMap { $0.int("seq") }.map { try Self.message(seq: $0, in: connection) }
        }
    }

    // MARK: Suppressions

    package func suppressions(normalized: String?, after: Int64, limit: Int) async throws -> [PositionedSuppression] {
        try await self.database.withConnection { connection in
            let rows = if let normalized {
                try connection.query("SELECT rowid AS r, * FROM suppressions WHERE normalized = ?", .text(normalized))
            } else {
                try connection.query("SELECT rowid AS r, * FROM suppressions WHERE rowid > ? ORDER BY rowid LIMIT ?", .integer(after), .integer(Int64(limit)))
            }
            return rows.map { PositionedSuppression(position: $0.int("r") ?? 0, record: Self.suppression($0)) }
        }
    }

    package func removeSuppression(normalized: String, removal: SuppressionRemoval) async throws -> SuppressionRecord? {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                guard let row = try connection.queryFirst("SELECT * FROM suppressions WHERE normalized = ?", .text(normalized)) else { return nil }
                let record = Self.suppression(row)
                try connection.run("DELETE FROM suppressions WHERE normalized = ?", .text(normalized))
                try connection.run(
                    "INSERT INTO suppression_removals (normalized, address, reason, removed_at, actor_id, actor_address, removal_reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    .text(normalized), .text(record.address), .text(record.reason), .integer(removal.at),
                    .text(removal.actor.userID), .text(removal.actor.clientAddress), .text(removal.why)
                )
                return record
            }
        }
    }

    private static func suppression(_ row: SQLiteRow) -> SuppressionRecord {
        SuppressionRecord(
            address: row.string("address") ?? "", reason: row.string("reason") ?? "", createdAt: row.int("created_at") ?? 0,
            messageID: row.string("message_id") ?? ""
        )
    }

    // MARK: Statistics

    package func queue() async throws -> (depth: Int, oldestCreatedAt: Int64?) {
        try await self.database.withConnection { connection in
            let row = try connection.queryFirst("SELECT count(*) AS n, min(created_at) AS oldest FROM messages WHERE state IN (1, 2)")
            return (Int(row?.int("n") ?? 0), row?.int("oldest"))
        }
    }

    package func attemptFigures(since: Int64, hourly: (first: Int64, hour: Int64)?) async throws -> AttemptFigures {
        try await self.database.withConnection { connection in
            var figures = AttemptFigures()
            figures.lastAcceptedAt = try connection.queryFirst(
                "SELECT max(finished_at) AS at FROM attempts WHERE outcome = ?", .integer(AttemptOutcomeValue.accepted.rawValue)
            )?.int("at") ?? 0
            figures.lastAttemptAt = try connection.queryFirst("SELECT max(started_at) AS at FROM attempts")?.int("at") ?? 0
            for row in try connection.query(
                "SELECT to_domain, outcome, count(*) AS n FROM attempts WHERE started_at >= ? AND outcome IS NOT NULL GROUP BY to_domain, outcome",
                .integer(since)
            ) {
                guard let outcome = row.int("outcome").flatMap(AttemptOutcomeValue.init(rawValue:)) else { continue }
                figures.byDomain.append((row.string("to_domain") ?? "", outcome, Int(row.int("n") ?? 0)))
            }
            if let hourly {
                for row in try connection.query(
                    "SELECT (started_at - ?) / ? AS bucket, outcome, count(*) AS n FROM attempts WHERE started_at >= ? AND outcome IS NOT NULL GROUP BY bucket, outcome",
                    .integer(hourly.first), .integer(hourly.hour), .integer(hourly.first)
                ) {
                    guard let bucket = row.int("bucket"), let outcome = row.int("outcome").flatMap(AttemptOutcomeValue.init(rawValue:)) else { continue }
                    figures.byHour.append((Int(bucket), outcome, Int(row.int("n") ?? 0)))
                }
            }
            return figures
        }
    }

    // MARK: Reports

    package func recordReport(
        messageIDs: [String], messageIDHeader: String?, decide: @escaping @Sendable (MessageRecord) -> ReportEffect
    ) async throws -> (message: MessageRecord, effect: ReportEffect)? {
        try await self.database.withConnection { connection in
            try connection.transaction { connection in
                var seq: Int64? = nil
                for id in messageIDs {
                    if let found = try connection.queryFirst("SELECT seq FROM messages WHERE id = ?", .text(id))?.int("seq") {
                        seq = found
                        break
                    }
                }
                if seq == nil, let header = messageIDHeader, !header.isEmpty {
                    seq = try connection.queryFirst("SELECT seq FROM messages WHERE message_id_header = ?", .text(header))?.int("seq")
                }
                guard let seq else { return nil }
                let message = try Self.message(seq: seq, in: connection)
                let effect = decide(message)
                let report = effect.report
                try connection.run(
                    """
                    INSERT INTO reports (message_seq, received_at, kind, action, status, diagnostic, remote_mta, recipient, feedback_type, reporter)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    .integer(seq), .integer(report.receivedAt), .text(report.kind), .text(report.action), .text(report.status), .text(report.diagnostic),
                    .text(report.remoteMTA), .text(report.recipient), .text(report.feedbackType), .text(report.reporter)
                )
                if let (state, reason) = effect.newState {
                    try connection.run(
                        "UPDATE messages SET state = ?, reason = ?, updated_at = ?, content = NULL WHERE seq = ?",
                        .integer(state.rawValue), .text(reason), .integer(report.receivedAt), .integer(seq)
                    )
                }
                if let suppression = effect.suppress {
                    try Self.suppress(suppression, in: connection)
                }
                return (message, effect)
            }
        }
    }
}
