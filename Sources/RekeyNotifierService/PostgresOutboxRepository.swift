import Logging
import Metrics
import NIOCore
import PostgresNIO
import RekeyPostgres
import ServiceLifecycle

/// The notifier on PostgreSQL, in the schema `rekey_notifier`: any number of replicas share one
/// outbox.
///
/// What keeps replicas honest:
/// - a worker claims a message with `SELECT … FOR UPDATE SKIP LOCKED` (two replicas never take
///   the same message, and neither waits for the other) and holds it under a lease
///   (`claimed_by`, `lease_until`) that it renews while it sends; the claim, the end of a
///   previous holder's attempt and the start of the new attempt are one statement;
/// - a message whose holder's lease ran out (the replica died, or lost the database) is due
///   again, and its open attempt is recorded as interrupted when another worker takes it;
/// - an attempt's end moves the message on only while its worker still holds the claim;
/// - an idempotency key is unique in the table: two replicas enqueueing one request at once
///   store one message (`ON CONFLICT DO NOTHING`), and both answer with it;
/// - a queued message sends `NOTIFY rekey_notifier_outbox` on commit, which wakes every
///   replica's idle workers (``PostgresOutboxListener``); polling remains the fallback.
///
/// Leases are on the database server's clock (``databaseNow``): a replica whose clock runs ahead
/// cannot take over a live lease, so skew between replicas never sends a message twice. Which
/// messages are due (the retry schedule) is still read on each replica's clock; skew there moves
/// a retry by as much, nothing more.
package struct PostgresOutboxRepository: OutboxRepository {
    package static let schema = "rekey_notifier"
    /// The channel a queued message is announced on.
    package static let channel = "rekey_notifier_outbox"
    /// The database server's time, in milliseconds since 1970, as the statement started.
    package static let databaseNow = "(extract(epoch FROM statement_timestamp()) * 1000)::bigint"

    package static let migrations = [
        PostgresMigration(version: 1, name: "outbox", statements: [
            """
            CREATE TABLE messages (
                seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
                state BIGINT NOT NULL,
                message_id_header TEXT NOT NULL,
                subject TEXT NOT NULL,
                content BYTEA,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                next_attempt_at BIGINT,
                claimed_by TEXT,
                lease_until BIGINT,
                reason TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX messages_due ON messages (next_attempt_at) WHERE state IN (1, 2)",
            "CREATE INDEX messages_by_address ON messages (to_normalized, seq)",
            "CREATE INDEX messages_by_user ON messages (user_id, seq)",
            "CREATE INDEX messages_by_header ON messages (message_id_header) WHERE message_id_header <> ''",
            """
            CREATE TABLE attempts (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_seq BIGINT NOT NULL REFERENCES messages (seq),
                to_domain TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                finished_at BIGINT,
                transport TEXT NOT NULL,
                server TEXT NOT NULL,
                outcome BIGINT,
                stage TEXT NOT NULL DEFAULT '',
                reply_code BIGINT NOT NULL DEFAULT 0,
                enhanced_status TEXT NOT NULL DEFAULT '',
                reply_text TEXT NOT NULL DEFAULT '',
                remote_queue_id TEXT NOT NULL DEFAULT '',
                error TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX attempts_by_message ON attempts (message_seq, id)",
            "CREATE INDEX attempts_by_time ON attempts (started_at)",
            "CREATE INDEX attempts_accepted ON attempts (finished_at) WHERE outcome = 1",
            """
            CREATE TABLE suppressions (
                normalized TEXT PRIMARY KEY,
                position BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
                address TEXT NOT NULL,
                reason TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                message_id TEXT NOT NULL
            )
            """,
            """
            CREATE TABLE suppression_removals (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                normalized TEXT NOT NULL,
                address TEXT NOT NULL,
                reason TEXT NOT NULL,
                removed_at BIGINT NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                removal_reason TEXT NOT NULL DEFAULT ''
            )
            """,
            """
            CREATE TABLE reports (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                message_seq BIGINT NOT NULL REFERENCES messages (seq),
                received_at BIGINT NOT NULL,
                kind TEXT NOT NULL,
                action TEXT NOT NULL DEFAULT '',
                status TEXT NOT NULL DEFAULT '',
                diagnostic TEXT NOT NULL DEFAULT '',
                remote_mta TEXT NOT NULL DEFAULT '',
                recipient TEXT NOT NULL DEFAULT '',
                feedback_type TEXT NOT NULL DEFAULT '',
                reporter TEXT NOT NULL DEFAULT ''
            )
            """,
            "CREATE INDEX reports_by_message ON reports (message_seq, id)",
        ]),
    ]

    package let database: PostgresServiceDatabase
    private let logger: Logger

    package init(database: PostgresServiceDatabase, logger: Logger = Logger(label: "rekey.notifier.postgres")) {
        self.database = database
        self.logger = logger
    }

    // MARK: Enqueue

    package func enqueue(_ message: NewOutboxMessage, suppressedReason: @escaping @Sendable (String) -> String) async throws -> StoredMessage {
        try await self.database.withConnection { connection in
            // Two statements, no transaction: the key's uniqueness settles a race between
            // replicas (the loser finds the winner's message), and a suppression made between
            // the two is no different from one made just after.
            var existing: Int64? = nil
            var listReason: String? = nil
            for try await (seq, reason) in try await connection.query(
                """
                SELECT (SELECT seq FROM messages WHERE idempotency_key = \(message.idempotencyKey)),
                       (SELECT reason FROM suppressions WHERE normalized = \(message.toNormalized))
                """,
                logger: self.logger
            ).decode((Int64?, String?).self) {
                (existing, listReason) = (seq, reason)
            }
            if let existing, let record = try await Self.records(where: "seq = \(existing)", connection: connection, logger: self.logger).first {
                return .existing(record)
            }
            let state: MessageStateValue = listReason == nil ? .queued : .suppressed
            let reason = listReason.map(suppressedReason) ?? ""
            let queued = state == .queued
            var inserted: Int64? = nil
            for try await seq in try await connection.query(
                """
                WITH inserted AS (
                    INSERT INTO messages (id, idempotency_key, template, locale, to_address, to_normalized, to_domain, to_name, user_id, token_id,
                        actor_id, actor_address, state, message_id_header, subject, content, created_at, updated_at, next_attempt_at, reason)
                    VALUES (\(message.id), \(message.idempotencyKey), \(message.template), \(message.locale), \(message.toAddress),
                        \(message.toNormalized), \(message.toDomain), \(message.toName), \(message.userID), \(message.tokenID),
                        \(message.requestedBy.userID), \(message.requestedBy.clientAddress), \(state.rawValue),
                        \(queued ? message.messageIDHeader : ""), \(message.subject), \(queued ? ByteBuffer(bytes: message.content) : nil),
                        \(message.now), \(message.now), \(queued ? message.now : nil), \(reason))
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING seq
                )
                SELECT seq FROM inserted, LATERAL (SELECT CASE WHEN \(queued) THEN pg_notify(\(Self.channel), '') END) AS bell
                """,
                logger: self.logger
            ).decode(Int64.self) {
                inserted = seq
            }
            guard let seq = inserted else {
                // Another replica stored the same key between our two statements.
                guard let winner = try await Self.records(where: "idempotency_key = \(message.idempotencyKey)", connection: connection, logger: self.logger).first else {
                    throw NotifierError.failedPrecondition("the message could not be stored")
                }
                return .existing(winner)
            }
            let record = MessageRecord(
                seq: seq, id: message.id, template: message.template, toAddress: message.toAddress, toName: message.toName, locale: message.locale,
                userID: message.userID, tokenID: message.tokenID, state: state, messageIDHeader: queued ? message.messageIDHeader : "",
                subject: message.subject, createdAt: message.now, updatedAt: message.now, nextAttemptAt: queued ? message.now : nil, reason: reason,
                requestedBy: message.requestedBy, attempts: []
            )
            return listReason.map { .suppressed(record, listReason: $0) } ?? .queued(record)
        }
    }

    // MARK: Delivery

    /// Replicas share the outbox: a starting replica cannot tell an attempt left open by a dead
    /// replica from one under way elsewhere. Leases recover both kinds in time.
    package func recoverInterruptedAttempts(now: Int64) async throws -> Int { 0 }

    package func claimNext(_ request: ClaimRequest) async throws -> OutboxStore.Claimed? {
        try await self.database.withConnection { connection in
            // One statement, so one round trip and atomic without a transaction. Every part sees
            // the same snapshot: the failure count does not see the attempt this claim opens, nor
            // the previous holder's attempt it closes (whose outcome was still empty).
            let rows = try await connection.query(
                """
                WITH next AS (
                    SELECT seq, claimed_by AS previous FROM messages
                    WHERE state IN (1, 2) AND next_attempt_at <= \(request.now) AND (claimed_by IS NULL OR lease_until < \(unescaped: Self.databaseNow))
                    ORDER BY next_attempt_at LIMIT 1
                    FOR UPDATE SKIP LOCKED
                ), claimed AS (
                    UPDATE messages m SET claimed_by = \(request.holder), lease_until = \(unescaped: Self.databaseNow) + \(request.lease)
                    FROM next WHERE m.seq = next.seq
                    RETURNING m.seq, m.id, m.to_address, m.to_domain, m.content, m.created_at, next.previous
                ), interrupted AS (
                    UPDATE attempts a SET outcome = \(AttemptOutcomeValue.interrupted.rawValue), finished_at = \(request.now), error = \(OutboxStore.leaseExpired)
                    FROM claimed WHERE claimed.previous IS NOT NULL AND a.message_seq = claimed.seq AND a.outcome IS NULL
                ), attempt AS (
                    INSERT INTO attempts (message_seq, to_domain, started_at, transport, server)
                    SELECT seq, to_domain, \(request.now), \(request.transport), \(request.server) FROM claimed
                    RETURNING id
                )
                SELECT claimed.seq, claimed.id, claimed.to_address, claimed.content, claimed.created_at, claimed.previous IS NOT NULL, attempt.id,
                    (SELECT count(*) FROM attempts f WHERE f.message_seq = claimed.seq
                        AND f.outcome IN (\(AttemptOutcomeValue.temporaryFailure.rawValue), \(AttemptOutcomeValue.permanentFailure.rawValue)))
                FROM claimed, attempt
                """,
                logger: self.logger
            )
            for try await (seq, id, toAddress, content, createdAt, tookOver, attemptID, failures) in rows.decode(
                (Int64, String, String, ByteBuffer?, Int64, Bool, Int64, Int64).self
            ) {
                return OutboxStore.Claimed(
                    seq: seq, id: id, toAddress: toAddress, content: content.map { Array($0.readableBytesView) } ?? [], attemptID: attemptID,
                    createdAt: createdAt, failures: Int(failures), holder: request.holder, tookOver: tookOver
                )
            }
            return nil
        }
    }

    package func renewLease(_ claimed: OutboxStore.Claimed, now: Int64, lease: Int64) async throws -> Bool {
        try await self.database.withConnection { connection in
            try await Self.count(connection.query(
                """
                UPDATE messages SET lease_until = \(unescaped: Self.databaseNow) + \(lease)
                WHERE seq = \(claimed.seq) AND claimed_by = \(claimed.holder) RETURNING 1
                """,
                logger: self.logger
            )) == 1
        }
    }

    package func finish(_ claimed: OutboxStore.Claimed, result: DeliveryResult, plan: FinishPlan) async throws -> Bool {
        try await self.database.withConnection { connection in
            // One statement: the attempt's end always, the message (and a suppression) only while
            // this worker still holds the claim.
            let suppression = plan.suppress
            let query: PostgresQuery = """
                WITH attempt AS (
                    UPDATE attempts SET finished_at = \(plan.now), outcome = \(result.outcome.rawValue), stage = \(result.stage),
                        reply_code = \(Int64(result.replyCode)), enhanced_status = \(result.enhancedStatus), reply_text = \(result.replyText),
                        remote_queue_id = \(result.remoteQueueID), error = \(result.error)
                    WHERE id = \(claimed.attemptID)
                ), moved AS (
                    UPDATE messages SET state = \(plan.state.rawValue), reason = \(plan.reason), next_attempt_at = \(plan.nextAttemptAt),
                        updated_at = \(plan.now), claimed_by = NULL, lease_until = NULL,
                        content = CASE WHEN \(plan.state.isFinal) THEN NULL ELSE content END
                    WHERE seq = \(claimed.seq) AND claimed_by = \(claimed.holder)
                    RETURNING seq
                ), suppressed AS (
                    INSERT INTO suppressions (normalized, address, reason, created_at, message_id)
                    SELECT \(suppression?.normalized ?? ""), \(suppression?.address ?? ""), \(suppression?.reason ?? ""), \(suppression?.at ?? 0),
                        \(suppression?.messageID ?? "") FROM moved WHERE \(suppression != nil)
                    ON CONFLICT (normalized) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, message_id = excluded.message_id
                )
                SELECT count(*) FROM moved
                """
            var moved: Int64 = 0
            for try await count in try await connection.query(query, logger: self.logger).decode(Int64.self) {
                moved = count
            }
            return moved == 1
        }
    }

    // MARK: History

    package func message(id: String) async throws -> MessageRecord? {
        try await self.database.withConnection { connection in
            try await Self.records(where: "id = \(id)", connection: connection, logger: self.logger).first
        }
    }

    package func messages(_ filter: MessageFilter, before: Int64, since: Int64, limit: Int) async throws -> [MessageRecord] {
        try await self.database.withConnection { connection in
            switch filter {
            case .address(let address):
                return try await Self.records(
                    where: "to_normalized = \(address) AND seq < \(before) AND created_at >= \(since) ORDER BY seq DESC LIMIT \(Int64(limit))",
                    connection: connection, logger: self.logger
                )
            case .user(let userID):
                return try await Self.records(
                    where: "user_id = \(userID) AND seq < \(before) AND created_at >= \(since) ORDER BY seq DESC LIMIT \(Int64(limit))",
                    connection: connection, logger: self.logger
                )
            }
        }
    }

    /// The messages a condition selects, with their attempts and reports: three statements
    /// whatever their number.
    private static func records(where condition: PostgresQuery, connection: PostgresConnection, logger: Logger) async throws -> [MessageRecord] {
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT seq, id, template, to_address, to_name, locale, user_id, token_id, state, message_id_header, subject,
                    created_at, updated_at, next_attempt_at, reason, actor_id, actor_address FROM messages WHERE \(condition.sql)
                """,
            binds: condition.binds
        )
        var messages: [MessageRecord] = []
        for try await row in try await connection.query(query, logger: logger) {
            let row = row.makeRandomAccess()
            messages.append(MessageRecord(
                seq: try row["seq"].decode(Int64.self), id: try row["id"].decode(String.self), template: try row["template"].decode(String.self),
                toAddress: try row["to_address"].decode(String.self), toName: try row["to_name"].decode(String.self),
                locale: try row["locale"].decode(String.self), userID: try row["user_id"].decode(String.self),
                tokenID: try row["token_id"].decode(String.self),
                state: MessageStateValue(rawValue: try row["state"].decode(Int64.self)) ?? .queued,
                messageIDHeader: try row["message_id_header"].decode(String.self), subject: try row["subject"].decode(String.self),
                createdAt: try row["created_at"].decode(Int64.self), updatedAt: try row["updated_at"].decode(Int64.self),
                nextAttemptAt: try row["next_attempt_at"].decode(Int64?.self), reason: try row["reason"].decode(String.self),
                requestedBy: ActorInfo(userID: try row["actor_id"].decode(String.self), clientAddress: try row["actor_address"].decode(String.self)),
                attempts: []
            ))
        }
        guard !messages.isEmpty else { return [] }
        var position: [Int64: Int] = [:]
        for (index, message) in messages.enumerated() {
            position[message.seq] = index
        }
        let seqs = messages.map(\.seq)
        for try await row in try await connection.query(
            """
            SELECT message_seq, started_at, finished_at, transport, server, outcome, stage, reply_code, enhanced_status, reply_text, remote_queue_id, error
            FROM attempts WHERE message_seq = ANY(\(seqs)) ORDER BY id
            """,
            logger: logger
        ) {
            let row = row.makeRandomAccess()
            guard let index = position[try row["message_seq"].decode(Int64.self)] else { continue }
            messages[index].attempts.append(AttemptRecord(
                startedAt: try row["started_at"].decode(Int64.self), finishedAt: try row["finished_at"].decode(Int64?.self),
                transport: try row["transport"].decode(String.self), server: try row["server"].decode(String.self),
                outcome: try row["outcome"].decode(Int64?.self).flatMap(AttemptOutcomeValue.init(rawValue:)),
                stage: try row["stage"].decode(String.self), replyCode: Int(try row["reply_code"].decode(Int64.self)),
                enhancedStatus: try row["enhanced_status"].decode(String.self), replyText: try row["reply_text"].decode(String.self),
                remoteQueueID: try row["remote_queue_id"].decode(String.self), error: try row["error"].decode(String.self)
            ))
        }
        for try await row in try await connection.query(
            """
            SELECT message_seq, received_at, kind, action, status, diagnostic, remote_mta, recipient, feedback_type, reporter
            FROM reports WHERE message_seq = ANY(\(seqs)) ORDER BY id
            """,
            logger: logger
        ) {
            let row = row.makeRandomAccess()
            guard let index = position[try row["message_seq"].decode(Int64.self)] else { continue }
            messages[index].reports.append(ReportRecord(
                receivedAt: try row["received_at"].decode(Int64.self), kind: try row["kind"].decode(String.self),
                action: try row["action"].decode(String.self), status: try row["status"].decode(String.self),
                diagnostic: try row["diagnostic"].decode(String.self), remoteMTA: try row["remote_mta"].decode(String.self),
                recipient: try row["recipient"].decode(String.self), feedbackType: try row["feedback_type"].decode(String.self),
                reporter: try row["reporter"].decode(String.self)
            ))
        }
        return messages
    }

    // MARK: Suppressions

    package func suppressions(normalized: String?, after: Int64, limit: Int) async throws -> [PositionedSuppression] {
        try await self.database.withConnection { connection in
            let rows = if let normalized {
                try await connection.query(
                    "SELECT position, address, reason, created_at, message_id FROM suppressions WHERE normalized = \(normalized)", logger: self.logger
                )
            } else {
                try await connection.query(
                    "SELECT position, address, reason, created_at, message_id FROM suppressions WHERE position > \(after) ORDER BY position LIMIT \(Int64(limit))",
                    logger: self.logger
                )
            }
            var found: [PositionedSuppression] = []
            for try await (position, address, reason, createdAt, messageID) in rows.decode((Int64, String, String, Int64, String).self) {
                found.append(PositionedSuppression(
                    position: position, record: SuppressionRecord(address: address, reason: reason, createdAt: createdAt, messageID: messageID)
                ))
            }
            return found
        }
    }

    package func removeSuppression(normalized: String, removal: SuppressionRemoval) async throws -> SuppressionRecord? {
        try await self.database.withConnection { connection in
            for try await (address, reason, createdAt, messageID) in try await connection.query(
                """
                WITH gone AS (
                    DELETE FROM suppressions WHERE normalized = \(normalized) RETURNING normalized, address, reason, created_at, message_id
                ), kept AS (
                    INSERT INTO suppression_removals (normalized, address, reason, removed_at, actor_id, actor_address, removal_reason)
                    SELECT normalized, address, reason, \(removal.at), \(removal.actor.userID), \(removal.actor.clientAddress), \(removal.why) FROM gone
                )
                SELECT address, reason, created_at, message_id FROM gone
                """,
                logger: self.logger
            ).decode((String, String, Int64, String).self) {
                return SuppressionRecord(address: address, reason: reason, createdAt: createdAt, messageID: messageID)
            }
            return nil
        }
    }

    // MARK: Statistics

    package func queue() async throws -> (depth: Int, oldestCreatedAt: Int64?) {
        try await self.database.withConnection { connection in
            for try await (depth, oldest) in try await connection.query(
                "SELECT count(*), min(created_at) FROM messages WHERE state IN (1, 2)", logger: self.logger
            ).decode((Int64, Int64?).self) {
                return (Int(depth), oldest)
            }
            return (0, nil)
        }
    }

    package func attemptFigures(since: Int64, hourly: (first: Int64, hour: Int64)?) async throws -> AttemptFigures {
        try await self.database.withConnection { connection in
            var figures = AttemptFigures()
            for try await (accepted, attempted) in try await connection.query(
                """
                SELECT (SELECT max(finished_at) FROM attempts WHERE outcome = \(AttemptOutcomeValue.accepted.rawValue)),
                       (SELECT max(started_at) FROM attempts)
                """,
                logger: self.logger
            ).decode((Int64?, Int64?).self) {
                (figures.lastAcceptedAt, figures.lastAttemptAt) = (accepted ?? 0, attempted ?? 0)
            }
            for try await (domain, outcome, count) in try await connection.query(
                "SELECT to_domain, outcome, count(*) FROM attempts WHERE started_at >= \(since) AND outcome IS NOT NULL GROUP BY to_domain, outcome",
                logger: self.logger
            ).decode((String, Int64, Int64).self) {
                guard let outcome = AttemptOutcomeValue(rawValue: outcome) else { continue }
                figures.byDomain.append((domain, outcome, Int(count)))
            }
            if let hourly {
                for try await (bucket, outcome, count) in try await connection.query(
                    """
                    SELECT (started_at - \(hourly.first)) / \(hourly.hour) AS bucket, outcome, count(*) FROM attempts
                    WHERE started_at >= \(hourly.first) AND outcome IS NOT NULL GROUP BY bucket, outcome
                    """,
                    logger: self.logger
                ).decode((Int64, Int64, Int64).self) {
                    guard let outcome = AttemptOutcomeValue(rawValue: outcome) else { continue }
                    figures.byHour.append((Int(bucket), outcome, Int(count)))
                }
            }
            return figures
        }
    }

    // MARK: Reports

    package func recordReport(
        messageIDs: [String], messageIDHeader: String?, decide: @escaping @Sendable (MessageRecord) -> ReportEffect
    ) async throws -> (message: MessageRecord, effect: ReportEffect)? {
        try await self.database.transaction { connection in
            // The message's row locked first: two reports about one message are recorded one
            // after the other.
            var seq: Int64? = nil
            for try await found in try await connection.query(
                "SELECT seq FROM messages WHERE id = ANY(\(messageIDs)) ORDER BY array_position(\(messageIDs), id) LIMIT 1 FOR UPDATE",
                logger: self.logger
            ).decode(Int64.self) {
                seq = found
            }
            if seq == nil, let header = messageIDHeader, !header.isEmpty {
                for try await found in try await connection.query(
                    "SELECT seq FROM messages WHERE message_id_header = \(header) LIMIT 1 FOR UPDATE", logger: self.logger
                ).decode(Int64.self) {
                    seq = found
                }
            }
            guard let seq, let message = try await Self.records(where: "seq = \(seq)", connection: connection, logger: self.logger).first else {
                return nil
            }
            let effect = decide(message)
            let report = effect.report
            try await connection.query(
                """
                INSERT INTO reports (message_seq, received_at, kind, action, status, diagnostic, remote_mta, recipient, feedback_type, reporter)
                VALUES (\(seq), \(report.receivedAt), \(report.kind), \(report.action), \(report.status), \(report.diagnostic),
                    \(report.remoteMTA), \(report.recipient), \(report.feedbackType), \(report.reporter))
                """,
                logger: self.logger
            )
            if let (state, reason) = effect.newState {
                try await connection.query(
                    "UPDATE messages SET state = \(state.rawValue), reason = \(reason), updated_at = \(report.receivedAt), content = NULL WHERE seq = \(seq)",
                    logger: self.logger
                )
            }
            if let suppression = effect.suppress {
                try await connection.query(
                    """
                    INSERT INTO suppressions (normalized, address, reason, created_at, message_id)
                    VALUES (\(suppression.normalized), \(suppression.address), \(suppression.reason), \(suppression.at), \(suppression.messageID))
                    ON CONFLICT (normalized) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at, message_id = excluded.message_id
                    """,
                    logger: self.logger
                )
            }
            return (message, effect)
        }
    }

    private static func count(_ rows: PostgresRowSequence) async throws -> Int {
        var count = 0
        for try await _ in rows {
            count += 1
        }
        return count
    }
}

/// Wakes this replica's idle delivery workers when any replica queues a message: listens for
/// ``PostgresOutboxRepository/channel`` on a connection of its own and rings the ``Doorbell``.
/// When the connection fails it tries again after a pause (one log line per outage); meanwhile
/// the workers' polling finds new messages anyway, a little later.
///
/// Metric: `rekey_notifier_outbox_notifications_total` (notifications received).
package struct PostgresOutboxListener: Service {
    package let database: PostgresServiceDatabase
    package let doorbell: Doorbell
    package let logger: Logger

    package init(database: PostgresServiceDatabase, doorbell: Doorbell, logger: Logger) {
        self.database = database
        self.doorbell = doorbell
        self.logger = logger
    }

    package func run() async throws {
        let doorbell = self.doorbell
        let notifications = Counter(label: "rekey_notifier_outbox_notifications_total")
        try? await cancelWhenGracefulShutdown {
            var failing = false
            while !Task.isCancelled {
                let started = ContinuousClock.now
                do {
                    try await self.database.listen(
                        on: PostgresOutboxRepository.channel,
                        started: { self.logger.info("listening for new messages on the database", metadata: ["db.channel": "\(PostgresOutboxRepository.channel)"]) },
                        notified: {
                            notifications.increment()
                            doorbell.ring()
                        }
                    )
                } catch {
                    // A connection that lasted a while ended one outage; this is a new one.
                    if ContinuousClock.now - started > .seconds(10) { failing = false }
                    if !failing {
                        self.logger.warning(
                            "cannot listen for new messages on the database: workers find them by polling until it works again",
                            metadata: ["error": "\(PostgresServiceDatabase.describe(error))"]
                        )
                    }
                    failing = true
                }
                // The connection failed or ended: a pause before the next one.
                try await Task.sleep(for: .seconds(2))
            }
        }
    }
}
