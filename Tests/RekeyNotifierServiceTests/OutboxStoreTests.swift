import Foundation
import RekeyClock
import RekeyNotifierService
import RekeyPostgres
import PostgresNIO
import RekeySQLite
import RekeyTesting
import Testing

enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { self.rawValue }
}

/// A fresh outbox on `backend`: a new SQLite file, or a new database on the test cluster, with the
/// migrations applied and a clock that only moves when told to.
final class OutboxFixture: Sendable {
    let clock = ManualClock()
    let store: OutboxStore
    private let folder: TemporaryFolder?
    private let sqlite: SQLiteDatabase?
    private let postgres: PostgresServiceDatabase?

    init(_ backend: Backend, maxAge: Duration = .seconds(3600), bounceDomain: String? = nil) async throws {
        let repository: any OutboxRepository
        switch backend {
        case .sqlite:
            let folder = try TemporaryFolder()
            let database = try SQLiteDatabase(path: folder.path + "/notifier.sqlite", migrations: SQLiteOutboxRepository.migrations)
            (self.folder, self.sqlite, self.postgres) = (folder, database, nil)
            repository = SQLiteOutboxRepository(database: database)
        case .postgres:
            let url = try await PostgresCluster.shared().makeDatabase()
            let database = try PostgresServiceDatabase(url: try PostgresURL(url), schema: PostgresOutboxRepository.schema, maximumConnections: 12, logger: .init(label: "rekey.test"))
            try await database.migrate(PostgresOutboxRepository.migrations)
            (self.folder, self.sqlite, self.postgres) = (nil, nil, database)
            repository = PostgresOutboxRepository(database: database)
        }
        var configuration = OutboxStore.Configuration(fromAddress: "no-reply@rekey.example", messageIDDomain: "rekey.example", maxAge: maxAge)
        configuration.bounceDomain = bounceDomain
        self.store = OutboxStore(
            configuration: configuration,
            templates: try MailTemplates(),
            clock: self.clock,
            repository: repository
        )
    }

    deinit {
        self.postgres?.close()
    }

    func enqueue(_ new: OutboxStore.NewMessage) async throws -> OutboxStore.EnqueueOutcome {
        try await self.store.enqueue(new)
    }

    func queuedID(_ outcome: OutboxStore.EnqueueOutcome) throws -> String {
        guard case .queued(let message) = outcome else {
            Issue.record("expected queued, got \(outcome)")
            throw CancellationError()
        }
        return message.id
    }

    func claim(_ holder: String = "run_test/0", lease: Duration = .seconds(60)) async throws -> OutboxStore.Claimed? {
        try await self.store.claimNext(holder: holder, transport: "smtp", server: "mx.example:25", lease: lease)
    }

    /// Lets `duration` pass for the outbox: the replicas' clock (``clock``) moves on, and on
    /// PostgreSQL, whose leases run on the server's clock, every lease is that much nearer its end.
    func pass(_ duration: Duration) async throws {
        self.clock.advance(by: duration)
        if let postgres {
            let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
            try await postgres.withConnection { c in
                _ = try await c.query("UPDATE messages SET lease_until = lease_until - \(milliseconds) WHERE lease_until IS NOT NULL", logger: .init(label: "rekey.test"))
            }
        }
    }

    /// One text column of every row `sql` selects, read straight from the database.
    func column(_ sql: String) async throws -> [String?] {
        if let sqlite {
            return try await sqlite.withConnection { c in
                try c.query(sql).map { row -> String? in
                    switch row.values.first {
                    case .text(let text): text
                    case .integer(let value): "\(value)"
                    default: nil
                    }
                }
            }
        }
        return try await self.postgres!.withConnection { c in
            var values: [String?] = []
            for try await value in try await c.query(PostgresQuery(unsafeSQL: sql), logger: .init(label: "rekey.test")).decode(String?.self) {
                values.append(value)
            }
            return values
        }
    }
}

/// The outbox's rules, each test on a fresh database of each backend.
struct OutboxStoreTests {
    static func reset(to address: String = "jane@example.com", key: String = UUID().uuidString) -> OutboxStore.NewMessage {
        var new = OutboxStore.NewMessage(template: "password_reset", toAddress: address, idempotencyKey: key)
        new.toName = "Jane Doe"
        new.variables = ["link": "https://rekey.example/password/reset?token=abc_DEF-123", "expires_in": "30 minutes"]
        new.userID = "u_1"
        return new
    }

    static func reply(_ outcome: AttemptOutcomeValue, stage: String, code: Int, text: String) -> DeliveryResult {
        var result = DeliveryResult(outcome: outcome, stage: stage)
        result.replyCode = code
        result.replyText = text
        return result
    }

    @Test("the same idempotency key answers with the first message instead of queueing another; the key reused for another recipient is refused", arguments: Backend.allCases)
    func idempotency(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        let first = try f.queuedID(try await f.enqueue(Self.reset(key: "k1")))
        guard case .duplicate(let again) = try await f.enqueue(Self.reset(to: "JANE@example.com", key: "k1")) else {
            Issue.record("expected a duplicate")
            return
        }
        #expect(again.id == first)
        #expect(again.toAddress == "jane@example.com")
        await #expect(throws: NotifierError.self) { try await f.enqueue(Self.reset(to: "other@example.com", key: "k1")) }
        #expect(try await f.column("SELECT CAST(count(*) AS TEXT) FROM messages") == ["1"])
    }

    @Test("bad input is refused with a message that says what is wrong", arguments: [
        ("template", "unknown template"), ("address", "is not an email address"), ("injected", "to_address contains a line break"), ("name", "line break"),
        ("link", "must be an http or https URL"), ("missing", "needs the variable `expires_in`"), ("key", "idempotency_key is required"),
    ])
    func badInput(_ field: String, _ expected: String) async throws {
        let f = try await OutboxFixture(.sqlite)
        var new = Self.reset()
        switch field {
        case "template": new.template = "newsletter"
        case "address": new.toAddress = "jane at example.com"
        case "injected": new.toAddress = "jane@example.com\r\nBcc: everyone@example.com"
        case "name": new.toName = "Jane\r\nBcc: everyone@example.com"
        case "link": new.variables["link"] = "javascript:alert(1)"
        case "missing": new.variables["expires_in"] = nil
        default: new.idempotencyKey = ""
        }
        await #expect {
            try await f.enqueue(new)
        } throws: { error in
            guard case .invalidArgument(let message) = error as? NotifierError else { return false }
            return message.contains(expected)
        }
    }

    @Test("temporary failures are retried on the schedule, then fail once the message is too old", arguments: Backend.allCases)
    func retries(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        let id = try f.queuedID(try await f.enqueue(Self.reset()))
        for (index, delay) in [60, 300, 900, 3600].prefix(3).enumerated() {
            let claimed = try #require(try await f.claim())
            #expect(claimed.failures == index)
            #expect(try await f.claim() == nil, "a claimed message is not handed out twice")
            let state = try await f.store.finish(claimed, result: Self.reply(.temporaryFailure, stage: "RCPT", code: 451, text: "try again later"))
            #expect(state == .deferred)
            #expect(try await f.claim() == nil, "not due yet")
            let message = try await f.store.message(id: id)
            #expect(message.nextAttemptAt == f.clock.nowMilliseconds() + Int64(delay) * 1000)
            f.clock.advance(by: .seconds(delay))
        }
        // 60 + 300 + 900 s have passed; one more failure would retry after 3600 s, beyond the hour.
        let claimed = try #require(try await f.claim())
        let state = try await f.store.finish(claimed, result: Self.reply(.temporaryFailure, stage: "CONNECT", code: 0, text: ""))
        #expect(state == .failed)
        let message = try await f.store.message(id: id)
        #expect(message.reason.hasPrefix("still failing after 1h"))
        #expect(message.attempts.count == 4)
        #expect(message.attempts.allSatisfy { $0.outcome == .temporaryFailure && $0.server == "mx.example:25" })
    }

    static func refusal(_ stage: String, _ code: Int, _ enhanced: String, _ text: String = "refused") -> DeliveryResult {
        var result = Self.reply(.permanentFailure, stage: stage, code: code, text: text)
        result.enhancedStatus = enhanced
        return result
    }

    @Test("a 5xx is read by stage and enhanced status: the mailbox (suppress), the relay's policy or our setup (keep), the message (fail)")
    func refusalSubjects() {
        let mailbox: [DeliveryResult] = [
            Self.refusal("RCPT", 550, "5.1.1", "<gone@example.com>: Recipient address rejected: User unknown"),
            Self.refusal("RCPT", 550, "5.1.2", "Host or domain name not found"), Self.refusal("RCPT", 550, "5.1.10", "null MX"),
            Self.refusal("RCPT", 550, "5.2.1", "mailbox disabled"), Self.refusal("RCPT", 552, "5.2.2", "mailbox full"),
            Self.refusal("RCPT", 550, "", "no such user"), Self.refusal("RCPT", 553, "", "mailbox name not allowed"),
        ]
        let relay: [DeliveryResult] = [
            // Postfix reports client, HELO and sender restrictions at RCPT.
            Self.refusal("RCPT", 504, "5.5.2", "<vm>: Helo command rejected: need fully-qualified hostname"),
            Self.refusal("RCPT", 554, "5.7.1", "<jane@example.com>: Relay access denied"), Self.refusal("RCPT", 554, "5.7.1", "Access denied"),
            Self.refusal("RCPT", 553, "5.6.7", "Must declare SMTPUTF8"), Self.refusal("RCPT", 501, "5.1.3", "Bad recipient address syntax"),
            Self.refusal("RCPT", 553, "5.1.8", "Sender address rejected: Domain not found"), Self.refusal("RCPT", 554, "", "go away"),
            Self.refusal("AUTH", 535, "5.7.8", "Error: authentication failed"), Self.refusal("MAIL", 530, "5.7.0", "Must issue a STARTTLS command first"),
            Self.refusal("EHLO", 550, "", "no"), Self.refusal("GREETING", 554, "5.7.1", "you are not welcome"),
        ]
        let message: [DeliveryResult] = [Self.refusal("END", 552, "5.3.4", "Message size exceeds fixed limit"), Self.refusal("END", 550, "5.7.1", "spam")]
        for result in mailbox { #expect(result.refusal == .mailbox, "\(result.summary)") }
        for result in relay { #expect(result.refusal == .relaySetup, "\(result.summary)") }
        for result in message { #expect(result.refusal == .message, "\(result.summary)") }
    }

    @Test("a relay refusing us (554 5.7.1 at RCPT) suppresses nothing: the message is kept, retried on the schedule, and fails only at max_age", arguments: Backend.allCases)
    func relayRefusal(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        let id = try f.queuedID(try await f.enqueue(Self.reset()))
        for (index, delay) in [60, 300, 900].enumerated() {
            let claimed = try #require(try await f.claim())
            #expect(claimed.failures == index, "each refusal moves the schedule on")
            let state = try await f.store.finish(claimed, result: Self.refusal("RCPT", 554, "5.7.1", "<jane@example.com>: Relay access denied"))
            #expect(state == .deferred)
            let message = try await f.store.message(id: id)
            #expect(message.reason == OutboxStore.relayRefusal + ": RCPT: 554 5.7.1 <jane@example.com>: Relay access denied")
            #expect(message.nextAttemptAt == f.clock.nowMilliseconds() + Int64(delay) * 1000)
            f.clock.advance(by: .seconds(delay))
        }
        let listed = try await f.store.suppressions(address: "", pageSize: 10, pageToken: "")
        #expect(listed.suppressions.isEmpty, "a refusal about us never suppresses the recipient")
        // Once the relay is fixed the kept message goes out.
        let claimed = try #require(try await f.claim())
        #expect(try await f.store.finish(claimed, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok")) == .accepted)

        // Still refused an hour on: failed, with the reason, still not suppressed.
        let second = try f.queuedID(try await f.enqueue(Self.reset(to: "john@example.com")))
        for delay in [60, 300, 900, 3600] {
            guard let claimed = try await f.claim() else { break }
            _ = try await f.store.finish(claimed, result: Self.refusal("MAIL", 530, "5.7.0", "Must issue a STARTTLS command first"))
            f.clock.advance(by: .seconds(delay))
        }
        let failed = try await f.store.message(id: second)
        #expect(failed.state == .failed)
        #expect(failed.reason.hasPrefix(OutboxStore.relayRefusal + " still after 1h"), "\(failed.reason)")
        #expect(try await f.store.suppressions(address: "", pageSize: 10, pageToken: "").suppressions.isEmpty)
    }

    @Test("a refused recipient fails at once and is suppressed; the next message to it is not queued; removal is recorded", arguments: Backend.allCases)
    func hardBounce(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        let id = try f.queuedID(try await f.enqueue(Self.reset(to: "Gone@Example.com")))
        let claimed = try #require(try await f.claim())
        try await f.store.finish(claimed, result: Self.reply(.permanentFailure, stage: "RCPT", code: 550, text: "5.1.1 user unknown"))
        let message = try await f.store.message(id: id)
        #expect(message.state == .failed)
        #expect(message.reason.contains("hard bounce"))
        guard case .suppressed(let second, let reason) = try await f.enqueue(Self.reset(to: "gone@example.COM")) else {
            Issue.record("expected suppressed")
            return
        }
        #expect(reason == "RCPT: 550 5.1.1 user unknown")
        #expect(second.state == .suppressed)
        #expect(try await f.claim() == nil)

        let listed = try await f.store.suppressions(address: "", pageSize: 10, pageToken: "")
        #expect(listed.suppressions.map(\.address) == ["Gone@Example.com"])
        #expect(listed.suppressions.first?.messageID == id)
        await #expect(throws: NotifierError.self, "a reason over 200 characters") {
            try await f.store.removeSuppression(address: "GONE@example.com", why: String(repeating: "x", count: 201), actor: ActorInfo(userID: "u_admin"))
        }
        _ = try await f.store.removeSuppression(address: "GONE@example.com", why: "mailbox fixed (ticket 4711)", actor: ActorInfo(userID: "u_admin"))
        #expect(try await f.column("SELECT actor_id || ': ' || removal_reason FROM suppression_removals") == ["u_admin: mailbox fixed (ticket 4711)"])
        _ = try f.queuedID(try await f.enqueue(Self.reset(to: "gone@example.com")))
        await #expect(throws: NotifierError.self) {
            try await f.store.removeSuppression(address: "gone@example.com", actor: ActorInfo())
        }
    }

    @Test("SQLite: an attempt left open by a crash is recorded as interrupted at the next start and the message is due again")
    func interrupted() async throws {
        let f = try await OutboxFixture(.sqlite)
        let id = try f.queuedID(try await f.enqueue(Self.reset()))
        _ = try #require(try await f.claim())
        #expect(try await f.store.recoverInterruptedAttempts() == 1)
        let again = try #require(try await f.claim())
        #expect(again.id == id)
        #expect(!again.content.isEmpty)
        try await f.store.finish(again, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"))
        let message = try await f.store.message(id: id)
        #expect(message.state == .accepted)
        #expect(message.attempts.map(\.outcome) == [.interrupted, .accepted])
        let content = try await f.column("SELECT CASE WHEN content IS NULL THEN 'dropped' ELSE 'kept' END FROM messages WHERE id = '\(id)'")
        #expect(content == ["dropped"], "the body, with its reset link, is dropped once the message is final")
    }

    @Test("a claim is a lease: renewed it holds; run out, another worker takes the message, the first attempt is recorded as interrupted and its end no longer moves the message", arguments: Backend.allCases)
    func leases(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        let id = try f.queuedID(try await f.enqueue(Self.reset()))
        #expect(try await f.store.recoverInterruptedAttempts() == 0, "nothing open yet")
        let first = try #require(try await f.claim("replica-a/0", lease: .seconds(30)))
        #expect(!first.tookOver)
        try await f.pass(.seconds(20))
        #expect(try await f.store.renewLease(first, lease: .seconds(30)))
        try await f.pass(.seconds(20))
        #expect(try await f.claim("replica-b/0") == nil, "renewed, the claim still holds 40 s after it was made")
        try await f.pass(.seconds(11))
        let second = try #require(try await f.claim("replica-b/0"))
        #expect(second.id == id && second.tookOver && !second.content.isEmpty)
        #expect(second.failures == 0, "an interrupted attempt does not move the schedule on")
        let taken = try await f.store.message(id: id)
        #expect(taken.attempts.map(\.outcome) == [.interrupted, nil])
        #expect(taken.attempts.first?.error == OutboxStore.leaseExpired)
        #expect(try await f.store.renewLease(first, lease: .seconds(30)) == false, "the first holder learns it lost the claim")
        // The first attempt still ends (late): what really happened is recorded, but the message
        // is the new holder's.
        #expect(try await f.store.finish(first, result: Self.reply(.temporaryFailure, stage: "RCPT", code: 451, text: "later")) == nil)
        #expect(try await f.store.message(id: id).state == .queued)
        #expect(try await f.store.finish(second, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok")) == .accepted)
        let message = try await f.store.message(id: id)
        #expect(message.state == .accepted)
        #expect(message.attempts.map(\.outcome) == [.temporaryFailure, .accepted])
    }

    @Test("on PostgreSQL, leases run on the server's clock: a replica whose clock is an hour ahead takes no live lease, and renews its own for the full lease")
    func leaseClock() async throws {
        let f = try await OutboxFixture(.postgres)
        let id = try f.queuedID(try await f.enqueue(Self.reset()))
        let first = try #require(try await f.claim("replica-a/0", lease: .seconds(30)))
        // Replica B's clock runs an hour ahead of A's (and of the server's).
        f.clock.advance(by: .seconds(3600))
        #expect(try await f.claim("replica-b/0") == nil, "A's lease is live on the server's clock")
        #expect(try await f.store.renewLease(first, lease: .seconds(30)))
        let left = try await f.column(
            "SELECT CAST(lease_until - \(PostgresOutboxRepository.databaseNow) AS TEXT) FROM messages WHERE id = '\(id)'"
        ).first.flatMap { $0.flatMap { Int($0) } }
        #expect(left.map { (25_000...30_000).contains($0) } == true, "the lease ends 30 s from the server's now, whatever the replica's clock says: \(left.map(String.init) ?? "none")")
        try await f.pass(.seconds(31))
        let second = try #require(try await f.claim("replica-b/0"), "once the lease has run out on the server's clock, it is taken over")
        #expect(second.id == id && second.tookOver)
    }

    @Test("eight workers claiming at once take each of 40 messages exactly once", arguments: Backend.allCases)
    func concurrentClaims(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        for index in 0..<40 {
            _ = try f.queuedID(try await f.enqueue(Self.reset(to: "u\(index)@example.com")))
        }
        let claimed = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var ids: [String] = []
                    while let claimed = try await f.claim("run/\(worker)") {
                        ids.append(claimed.id)
                        try await f.store.finish(claimed, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"))
                    }
                    return ids
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claimed.count == 40)
        #expect(Set(claimed).count == 40)
        #expect(try await f.store.queue().depth == 0)
    }

    @Test("one idempotency key enqueued ten times at once: one message, every caller answered with it", arguments: Backend.allCases)
    func concurrentIdempotency(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        let outcomes = try await withThrowingTaskGroup(of: OutboxStore.EnqueueOutcome.self) { group in
            for _ in 0..<10 {
                group.addTask { try await f.enqueue(Self.reset(key: "same-key")) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let ids = outcomes.map { outcome -> String in
            switch outcome {
            case .queued(let message), .duplicate(let message), .suppressed(let message, _): message.id
            }
        }
        #expect(Set(ids).count == 1)
        #expect(outcomes.filter { if case .queued = $0 { true } else { false } }.count == 1)
        #expect(try await f.column("SELECT CAST(count(*) AS TEXT) FROM messages") == ["1"])
    }

    @Test("history by address or user, newest first, in pages; queue statistics", arguments: Backend.allCases)
    func historyAndStats(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        var ids: [String] = []
        for _ in 0..<3 {
            ids.append(try f.queuedID(try await f.enqueue(Self.reset())))
            f.clock.advance(by: .seconds(1))
        }
        let first = try await f.store.messages(toAddress: "JANE@example.com", userID: "", since: 0, pageSize: 2, pageToken: "")
        #expect(first.messages.map(\.id) == [ids[2], ids[1]])
        let rest = try await f.store.messages(toAddress: "", userID: "u_1", since: 0, pageSize: 2, pageToken: first.next)
        #expect(rest.messages.map(\.id) == [ids[0]])
        #expect(rest.next.isEmpty)

        let claimed = try #require(try await f.claim())
        try await f.store.finish(claimed, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"))
        let stats = try await f.store.stats(window: .seconds(3600))
        #expect(stats.depth == 2)
        #expect(stats.oldestQueuedAge == 2000)
        #expect(stats.recent[.accepted] == 1)
        #expect(stats.byDomain.first?.domain == "example.com")
    }

    @Test("attempts per hour for the last N hours, oldest first, the running hour last; each attempt counted in its hour by outcome", arguments: Backend.allCases)
    func hourly(backend: Backend) async throws {
        let f = try await OutboxFixture(backend)
        // The clock starts at 1,800,000,000,000 ms: 08:00:00 UTC, on the hour.
        var ids: [String] = []
        for _ in 0..<3 {
            ids.append(try f.queuedID(try await f.enqueue(Self.reset(to: "u\(ids.count)@example.com"))))
        }
        let first = try #require(try await f.claim())
        try await f.store.finish(first, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"))
        f.clock.advance(by: .seconds(2 * 3600 + 60))
        let second = try #require(try await f.claim())
        try await f.store.finish(second, result: Self.reply(.temporaryFailure, stage: "RCPT", code: 451, text: "later"))
        let third = try #require(try await f.claim())
        try await f.store.finish(third, result: Self.reply(.permanentFailure, stage: "RCPT", code: 550, text: "no"))
        let stats = try await f.store.stats(window: .seconds(3600), hours: 24)
        #expect(stats.hourly.count == 24)
        let last = try #require(stats.hourly.last)
        let runningHour: Int64 = 1_800_000_000_000 + 2 * 3_600_000
        #expect(last.start == runningHour, "the running hour last")
        #expect(last.accepted == 0 && last.temporary == 1 && last.permanent == 1)
        #expect(stats.hourly[21].accepted == 1, "two hours before")
        #expect(stats.hourly.dropLast().dropLast(3).allSatisfy { $0.accepted + $0.temporary + $0.permanent == 0 })
        #expect(try await f.store.stats(window: .seconds(3600)).hourly.isEmpty, "none unless asked")
    }

    @Test("the HTML part is a branded document: the product name in its colour, the button in the accent colour")
    func branded() throws {
        let templates = try MailTemplates()
        let part = templates.render(.passwordReset, .html, locale: "en", variables: ["link": "https://x.example/r", "expires_in": "1 hour", "brand_color": "#aa3300"]).text
        #expect(part.contains("background:#aa3300"), "the button in the accent colour")
        let document = MailTemplates.branded(part, name: "Acme <SSO>", color: "#aa3300", locale: "de")
        #expect(document.hasPrefix("<!doctype html>") && document.contains("<html lang=\"de\">"))
        #expect(document.contains("Acme &lt;SSO&gt;"), "the name, escaped")
        #expect(document.contains("color:#aa3300"))
        #expect(MailTemplates.branded("<!doctype html><p>mine</p>", name: "X", color: "#000000", locale: "en") == "<!doctype html><p>mine</p>")
        #expect(MailTemplates.branded("<p>x</p>", name: "X", color: "red;}", locale: "en").contains("color:#2f5fd0"), "a colour that is not #rrggbb is not written")
    }
}

/// The shared relay gate, step by step with the instants given (nothing sleeps).
struct RelayGateTests {
    @Test("an unreachable relay: workers wait, one probe at a time after a doubling pause, everyone resumes when a probe gets through")
    func probes() {
        let gate = RelayGate(firstPause: .seconds(1), maxPause: .seconds(4))
        let t0 = ContinuousClock.now
        #expect(gate.admit(now: t0) == .go(probe: false))
        #expect(gate.report(unreachable: true, probe: false, now: t0) == .wentDown(nextProbeIn: .seconds(1)))
        #expect(gate.report(unreachable: true, probe: false, now: t0) == .unchanged, "attempts under way when it went down change nothing")
        #expect(gate.admit(now: t0 + .milliseconds(400)) == .wait(.milliseconds(600)))
        #expect(gate.admit(now: t0 + .seconds(1)) == .go(probe: true))
        #expect(gate.admit(now: t0 + .seconds(1)) == .wait(.milliseconds(100)), "one probe at a time")
        #expect(gate.report(unreachable: true, probe: true, now: t0 + .seconds(1)) == .unchanged)
        #expect(gate.admit(now: t0 + .seconds(2)) == .wait(.seconds(1)), "the pause doubled")
        #expect(gate.admit(now: t0 + .seconds(3)) == .go(probe: true))
        gate.withdrawProbe()
        #expect(gate.admit(now: t0 + .seconds(3)) == .go(probe: true), "a probe with nothing to send lets another probe")
        #expect(gate.report(unreachable: true, probe: true, now: t0 + .seconds(3)) == .unchanged)
        #expect(gate.admit(now: t0 + .seconds(7)) == .go(probe: true), "the pause stops at maxPause")
        #expect(gate.report(unreachable: true, probe: true, now: t0 + .seconds(7)) == .unchanged)
        #expect(gate.admit(now: t0 + .seconds(11)) == .go(probe: true))
        #expect(gate.report(unreachable: false, probe: true, now: t0 + .seconds(11)) == .cameBack)
        #expect(gate.admit(now: t0 + .seconds(11)) == .go(probe: false))
        #expect(gate.report(unreachable: true, probe: false, now: t0 + .seconds(12)) == .wentDown(nextProbeIn: .seconds(1)), "the pause starts again")
    }

    @Test("unreachable means no connection, no greeting, or 421 in place of one; a refusal or a 4xx later on is not")
    func unreachable() {
        func result(_ stage: String, _ code: Int, _ outcome: AttemptOutcomeValue = .temporaryFailure) -> DeliveryResult {
            var result = DeliveryResult(outcome: outcome, stage: stage)
            result.replyCode = code
            return result
        }
        #expect(result("CONNECT", 0).relayUnreachable && result("GREETING", 0).relayUnreachable && result("GREETING", 421).relayUnreachable)
        #expect(!result("RCPT", 451).relayUnreachable && !result("MAIL", 421).relayUnreachable && !result("END", 250, .accepted).relayUnreachable)
        #expect(!result("GREETING", 554, .permanentFailure).relayUnreachable)
    }
}
