import Foundation
import RekeyClock
import RekeyNotifierService
import RekeySQLite
import RekeyTesting
import Testing

/// The outbox's rules on a fresh database each, with a clock the test moves.
struct OutboxStoreTests {
    let folder: TemporaryFolder
    let database: SQLiteDatabase
    let clock = ManualClock()
    let store: OutboxStore

    init() throws {
        self.folder = try TemporaryFolder()
        self.database = try SQLiteDatabase(path: self.folder.path + "/notifier.sqlite", migrations: OutboxStore.migrations)
        self.store = OutboxStore(
            configuration: .init(fromAddress: "no-reply@rekey.example", messageIDDomain: "rekey.example", maxAge: .seconds(3600)),
            templates: try MailTemplates(),
            clock: self.clock
        )
    }

    func run<R: Sendable>(_ body: @escaping @Sendable (OutboxStore, SQLiteConnection) throws -> R) async throws -> R {
        let store = self.store
        return try await self.database.withConnection { try body(store, $0) }
    }

    static func reset(to address: String = "jane@example.com", key: String = UUID().uuidString) -> OutboxStore.NewMessage {
        var new = OutboxStore.NewMessage(template: "password_reset", toAddress: address, idempotencyKey: key)
        new.toName = "Jane Doe"
        new.variables = ["link": "https://rekey.example/password/reset?token=abc_DEF-123", "expires_in": "30 minutes"]
        new.userID = "u_1"
        return new
    }

    func enqueue(_ new: OutboxStore.NewMessage) async throws -> OutboxStore.EnqueueOutcome {
        try await self.run { store, c in try store.enqueue(new, in: c) }
    }

    func queuedID(_ outcome: OutboxStore.EnqueueOutcome) throws -> String {
        guard case .queued(let message) = outcome else {
            Issue.record("expected queued, got \(outcome)")
            throw CancellationError()
        }
        return message.id
    }

    func claim() async throws -> OutboxStore.Claimed? {
        try await self.run { store, c in try store.claimNext(worker: "run_test", transport: "smtp", server: "mx.example:25", in: c) }
    }

    static func reply(_ outcome: AttemptOutcomeValue, stage: String, code: Int, text: String) -> DeliveryResult {
        var result = DeliveryResult(outcome: outcome, stage: stage)
        result.replyCode = code
        result.replyText = text
        return result
    }

    @Test("the same idempotency key answers with the first message instead of queueing another; the key reused for another recipient is refused")
    func idempotency() async throws {
        let first = try self.queuedID(try await self.enqueue(Self.reset(key: "k1")))
        guard case .duplicate(let again) = try await self.enqueue(Self.reset(to: "JANE@example.com", key: "k1")) else {
            Issue.record("expected a duplicate")
            return
        }
        #expect(again.id == first)
        #expect(again.toAddress == "jane@example.com")
        await #expect(throws: NotifierError.self) { try await self.enqueue(Self.reset(to: "other@example.com", key: "k1")) }
        let count = try await self.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM messages")?.int("n") }
        #expect(count == 1)
    }

    @Test("bad input is refused with a message that says what is wrong", arguments: [
        ("template", "unknown template"), ("address", "is not an email address"), ("injected", "to_address contains a line break"), ("name", "line break"),
        ("link", "must be an http or https URL"), ("missing", "needs the variable `expires_in`"), ("key", "idempotency_key is required"),
    ])
    func badInput(_ field: String, _ expected: String) async throws {
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
            try await self.enqueue(new)
        } throws: { error in
            guard case .invalidArgument(let message) = error as? NotifierError else { return false }
            return message.contains(expected)
        }
    }

    @Test("temporary failures are retried on the schedule, then fail once the message is too old")
    func retries() async throws {
        let id = try self.queuedID(try await self.enqueue(Self.reset()))
        for (index, delay) in [60, 300, 900, 3600].prefix(3).enumerated() {
            let claimed = try #require(try await self.claim())
            #expect(claimed.failures == index)
            #expect(try await self.claim() == nil, "a claimed message is not handed out twice")
            let state = try await self.run { store, c in
                try store.finish(claimed, result: Self.reply(.temporaryFailure, stage: "RCPT", code: 451, text: "try again later"), in: c)
            }
            #expect(state == .deferred)
            #expect(try await self.claim() == nil, "not due yet")
            let message = try await self.run { store, c in try store.message(id: id, in: c) }
            #expect(message.nextAttemptAt == self.clock.nowMilliseconds() + Int64(delay) * 1000)
            self.clock.advance(by: .seconds(delay))
        }
        // 60 + 300 + 900 s have passed; one more failure would retry after 3600 s, beyond the hour.
        let claimed = try #require(try await self.claim())
        let state = try await self.run { store, c in
            try store.finish(claimed, result: Self.reply(.temporaryFailure, stage: "CONNECT", code: 0, text: ""), in: c)
        }
        #expect(state == .failed)
        let message = try await self.run { store, c in try store.message(id: id, in: c) }
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

    @Test("a relay refusing us (554 5.7.1 at RCPT) suppresses nothing: the message is kept, retried on the schedule, and fails only at max_age")
    func relayRefusal() async throws {
        let id = try self.queuedID(try await self.enqueue(Self.reset()))
        for (index, delay) in [60, 300, 900].enumerated() {
            let claimed = try #require(try await self.claim())
            #expect(claimed.failures == index, "each refusal moves the schedule on")
            let state = try await self.run { store, c in
                try store.finish(claimed, result: Self.refusal("RCPT", 554, "5.7.1", "<jane@example.com>: Relay access denied"), in: c)
            }
            #expect(state == .deferred)
            let message = try await self.run { store, c in try store.message(id: id, in: c) }
            #expect(message.reason == OutboxStore.relayRefusal + ": RCPT: 554 5.7.1 <jane@example.com>: Relay access denied")
            #expect(message.nextAttemptAt == self.clock.nowMilliseconds() + Int64(delay) * 1000)
            self.clock.advance(by: .seconds(delay))
        }
        let listed = try await self.run { store, c in try store.suppressions(address: "", pageSize: 10, pageToken: "", in: c) }
        #expect(listed.suppressions.isEmpty, "a refusal about us never suppresses the recipient")
        // Once the relay is fixed the kept message goes out.
        let claimed = try #require(try await self.claim())
        #expect(try await self.run { store, c in try store.finish(claimed, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"), in: c) } == .accepted)

        // Still refused an hour on: failed, with the reason, still not suppressed.
        let second = try self.queuedID(try await self.enqueue(Self.reset(to: "john@example.com")))
        for delay in [60, 300, 900, 3600] {
            guard let claimed = try await self.claim() else { break }
            _ = try await self.run { store, c in try store.finish(claimed, result: Self.refusal("MAIL", 530, "5.7.0", "Must issue a STARTTLS command first"), in: c) }
            self.clock.advance(by: .seconds(delay))
        }
        let failed = try await self.run { store, c in try store.message(id: second, in: c) }
        #expect(failed.state == .failed)
        #expect(failed.reason.hasPrefix(OutboxStore.relayRefusal + " still after 1h"), "\(failed.reason)")
        #expect(try await self.run { store, c in try store.suppressions(address: "", pageSize: 10, pageToken: "", in: c) }.suppressions.isEmpty)
    }

    @Test("a refused recipient fails at once and is suppressed; the next message to it is not queued; removal is recorded")
    func hardBounce() async throws {
        let id = try self.queuedID(try await self.enqueue(Self.reset(to: "Gone@Example.com")))
        let claimed = try #require(try await self.claim())
        try await self.run { store, c in
            try store.finish(claimed, result: Self.reply(.permanentFailure, stage: "RCPT", code: 550, text: "5.1.1 user unknown"), in: c)
        }
        let message = try await self.run { store, c in try store.message(id: id, in: c) }
        #expect(message.state == .failed)
        #expect(message.reason.contains("hard bounce"))
        guard case .suppressed(let second, let reason) = try await self.enqueue(Self.reset(to: "gone@example.COM")) else {
            Issue.record("expected suppressed")
            return
        }
        #expect(reason == "RCPT: 550 5.1.1 user unknown")
        #expect(second.state == .suppressed)
        #expect(try await self.claim() == nil)

        let listed = try await self.run { store, c in try store.suppressions(address: "", pageSize: 10, pageToken: "", in: c) }
        #expect(listed.suppressions.map(\.address) == ["Gone@Example.com"])
        #expect(listed.suppressions.first?.messageID == id)
        await #expect(throws: NotifierError.self, "a reason over 200 characters") {
            try await self.run { store, c in
                try store.removeSuppression(address: "GONE@example.com", why: String(repeating: "x", count: 201), actor: ActorInfo(userID: "u_admin"), in: c)
            }
        }
        _ = try await self.run { store, c in
            try store.removeSuppression(address: "GONE@example.com", why: "mailbox fixed (ticket 4711)", actor: ActorInfo(userID: "u_admin"), in: c)
        }
        let removals = try await self.run { _, c in
            try c.query("SELECT actor_id, removal_reason FROM suppression_removals").map { "\($0.string("actor_id") ?? ""): \($0.string("removal_reason") ?? "")" }
        }
        #expect(removals == ["u_admin: mailbox fixed (ticket 4711)"])
        _ = try self.queuedID(try await self.enqueue(Self.reset(to: "gone@example.com")))
        await #expect(throws: NotifierError.self) {
            try await self.run { store, c in try store.removeSuppression(address: "gone@example.com", actor: ActorInfo(), in: c) }
        }
    }

    @Test("an attempt left open by a crash is recorded as interrupted and the message is due again")
    func interrupted() async throws {
        let id = try self.queuedID(try await self.enqueue(Self.reset()))
        _ = try #require(try await self.claim())
        #expect(try await self.run { store, c in try store.recoverInterruptedAttempts(in: c) } == 1)
        let again = try #require(try await self.claim())
        #expect(again.id == id)
        #expect(!again.content.isEmpty)
        try await self.run { store, c in
            try store.finish(again, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"), in: c)
        }
        let message = try await self.run { store, c in try store.message(id: id, in: c) }
        #expect(message.state == .accepted)
        #expect(message.attempts.map(\.outcome) == [.interrupted, .accepted])
        let content = try await self.run { _, c in try c.queryFirst("SELECT content FROM messages WHERE id = ?", .text(id))?.blob("content") }
        #expect(content == nil, "the body, with its reset link, is dropped once the message is final")
    }

    @Test("history by address or user, newest first, in pages; queue statistics")
    func historyAndStats() async throws {
        var ids: [String] = []
        for _ in 0..<3 {
            ids.append(try self.queuedID(try await self.enqueue(Self.reset())))
            self.clock.advance(by: .seconds(1))
        }
        let first = try await self.run { store, c in try store.messages(toAddress: "JANE@example.com", userID: "", since: 0, pageSize: 2, pageToken: "", in: c) }
        #expect(first.messages.map(\.id) == [ids[2], ids[1]])
        let rest = try await self.run { store, c in try store.messages(toAddress: "", userID: "u_1", since: 0, pageSize: 2, pageToken: first.next, in: c) }
        #expect(rest.messages.map(\.id) == [ids[0]])
        #expect(rest.next.isEmpty)

        let claimed = try #require(try await self.claim())
        try await self.run { store, c in try store.finish(claimed, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"), in: c) }
        let stats = try await self.run { store, c in try store.stats(window: .seconds(3600), in: c) }
        #expect(stats.depth == 2)
        #expect(stats.oldestQueuedAge == 2000)
        #expect(stats.recent[.accepted] == 1)
        #expect(stats.byDomain.first?.domain == "example.com")
    }

    @Test("attempts per hour for the last N hours, oldest first, the running hour last; each attempt counted in its hour by outcome")
    func hourly() async throws {
        // The clock starts at 1,800,000,000,000 ms: 08:00:00 UTC, on the hour.
        var ids: [String] = []
        for _ in 0..<3 {
            ids.append(try self.queuedID(try await self.enqueue(Self.reset(to: "u\(ids.count)@example.com"))))
        }
        let first = try #require(try await self.claim())
        try await self.run { store, c in try store.finish(first, result: Self.reply(.accepted, stage: "END", code: 250, text: "ok"), in: c) }
        self.clock.advance(by: .seconds(2 * 3600 + 60))
        let second = try #require(try await self.claim())
        try await self.run { store, c in try store.finish(second, result: Self.reply(.temporaryFailure, stage: "RCPT", code: 451, text: "later"), in: c) }
        let third = try #require(try await self.claim())
        try await self.run { store, c in try store.finish(third, result: Self.reply(.permanentFailure, stage: "RCPT", code: 550, text: "no"), in: c) }
        let stats = try await self.run { store, c in try store.stats(window: .seconds(3600), hours: 24, in: c) }
        #expect(stats.hourly.count == 24)
        let last = try #require(stats.hourly.last)
        let runningHour: Int64 = 1_800_000_000_000 + 2 * 3_600_000
        #expect(last.start == runningHour, "the running hour last")
        #expect(last.accepted == 0 && last.temporary == 1 && last.permanent == 1)
        #expect(stats.hourly[21].accepted == 1, "two hours before")
        #expect(stats.hourly.dropLast().dropLast(3).allSatisfy { $0.accepted + $0.temporary + $0.permanent == 0 })
        #expect(try await self.run { store, c in try store.stats(window: .seconds(3600), in: c) }.hourly.isEmpty, "none unless asked")
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
