import RekeyAdminModel
import RekeyDirectoryAPI
import RekeyNotifierAPI
import RekeyTokensAPI
import Testing

@testable import RekeyGateway

/// The diagnosis verdict as a pure function: evidence built by hand, a fixed "now", one test per
/// finding code of docs/diagnose.md. (The end-to-end scenarios are `DiagnoseTests`.)
@Suite("Diagnosis verdict rules")
struct VerdictTests {
    static let now: Int64 = 1_800_000_000_000
    static let hour: Int64 = 3_600_000

    static func user(state: Rekey_Directory_V1_UserState = .active, hasPassword: Bool = true, secondary: Bool = false) -> Rekey_Directory_V1_User {
        var user = Rekey_Directory_V1_User()
        user.id = "u_1"
        user.name = "Jane Doe"
        user.role = "customer"
        user.state = state
        user.hasPassword = hasPassword
        var primary = Rekey_Directory_V1_EmailIdentity()
        primary.id = "e_1"
        primary.address = "jane@example.com"
        primary.primary = true
        primary.verified = true
        user.emails = [primary]
        if secondary {
            var other = Rekey_Directory_V1_EmailIdentity()
            other.id = "e_2"
            other.address = "jane@old.example"
            user.emails.append(other)
        }
        return user
    }

    static func evidence(_ user: Rekey_Directory_V1_User? = Self.user(), input: String = "jane@example.com") -> DiagnosisEvidence {
        var evidence = DiagnosisEvidence(input: input, since: Self.now - 7 * 24 * Self.hour, canSeeAddresses: true)
        evidence.user = user
        evidence.matched = user?.emails.first { $0.address == input }
        return evidence
    }

    static func issued(at: Int64 = now - hour) -> Rekey_Tokens_V1_TokenEvent {
        var event = Rekey_Tokens_V1_TokenEvent()
        event.kind = .issued
        event.purpose = .passwordReset
        event.atUnixMs = at
        event.tokenID = "t_1"
        return event
    }

    static func message(_ state: Rekey_Notifier_V1_MessageState, reason: String = "", transport: String = "smtp", reply: UInt32 = 250) -> Rekey_Notifier_V1_Message {
        var message = Rekey_Notifier_V1_Message()
        message.id = "m_1"
        message.templateName = "password_reset"
        message.toAddress = "jane@example.com"
        message.state = state
        message.reason = reason
        message.createdAtUnixMs = now - hour
        message.subject = "Reset your password"
        var attempt = Rekey_Notifier_V1_Attempt()
        attempt.transport = transport
        attempt.server = "relay.example:587"
        attempt.replyCode = reply
        attempt.startedAtUnixMs = now - hour
        attempt.finishedAtUnixMs = now - hour
        message.attempts = [attempt]
        return message
    }

    static func codes(_ evidence: DiagnosisEvidence) -> [String] {
        Verdict.findings(evidence, now: Self.now).map(\.code)
    }

    @Test("platform_service_unreachable comes first and names the service")
    func unreachable() {
        var evidence = Self.evidence()
        evidence.unreachable = ["notifier"]
        let findings = Verdict.findings(evidence, now: Self.now)
        #expect(findings.first?.code == "platform_service_unreachable")
        #expect(findings.first?.nextStep.contains("rekey-notifier") == true)
    }

    @Test("platform_mail_stalled: mail waiting over five minutes; placed before the deferred message it explains")
    func stalled() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        evidence.messages = [Self.message(.deferred, reply: 421)]
        var queue = Rekey_Notifier_V1_QueueStats()
        queue.depth = 4
        queue.oldestQueuedAgeMs = 10 * 60_000
        evidence.queue = queue
        let codes = Self.codes(evidence)
        #expect(codes.contains("platform_mail_stalled"))
        #expect(codes.firstIndex(of: "platform_mail_stalled")! < codes.firstIndex(of: "deferred")!)
        var healthy = queue
        healthy.oldestQueuedAgeMs = 60_000
        evidence.queue = healthy
        #expect(!Self.codes(evidence).contains("platform_mail_stalled"), "a minute in the queue is normal")
    }

    @Test("ambiguous: a name matching several users lists them")
    func ambiguous() {
        var evidence = Self.evidence(nil, input: "jane")
        evidence.candidates = ["u_1  Jane Doe  <jane@example.com>", "u_2  Jane Roe  <roe@example.com>"]
        let findings = Verdict.findings(evidence, now: Self.now)
        #expect(findings.map(\.code) == ["ambiguous"])
        #expect(findings[0].evidence.count == 2)
    }

    @Test("unknown_address: nobody has the address")
    func unknown() {
        #expect(Self.codes(Self.evidence(nil, input: "nobody@example.com")) == ["unknown_address"])
    }

    @Test("account_disabled, and no never_requested for a disabled account")
    func disabled() {
        let codes = Self.codes(Self.evidence(Self.user(state: .disabled)))
        #expect(codes.contains("account_disabled"))
        #expect(!codes.contains("never_requested"))
    }

    @Test("secondary_address: the typed address is not where reset mail goes")
    func secondary() {
        let findings = Verdict.findings(Self.evidence(Self.user(secondary: true), input: "jane@old.example"), now: Self.now)
        let finding = try? #require(findings.first { $0.code == "secondary_address" })
        #expect(finding?.summary.contains("jane@example.com") == true)
    }

    @Test("suppressed: the primary address is on the suppression list")
    func suppressed() {
        var evidence = Self.evidence()
        var suppression = Rekey_Notifier_V1_Suppression()
        suppression.address = "jane@example.com"
        suppression.reason = "550 5.1.1 no such user"
        suppression.createdAtUnixMs = Self.now - 24 * Self.hour
        evidence.suppression = suppression
        #expect(Self.codes(evidence).contains("suppressed"))
    }

    @Test("hard_bounce and failed: the last message failed for good")
    func failures() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        evidence.messages = [Self.message(.failed, reason: "hard bounce: 550 5.1.1 no such user", reply: 550)]
        #expect(Self.codes(evidence).first == "hard_bounce")
        evidence.messages = [Self.message(.failed, reason: "gave up after 24 hours", reply: 451)]
        #expect(Self.codes(evidence).first == "failed")
    }

    @Test("platform_relay_refuses: a 5xx about us (kept and retried, or given up) is the relay's problem, not the mailbox, and goes in the escalation")
    func relayRefuses() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        var kept = Self.message(.deferred, reason: "the relay refuses our mail (its policy or our setup, not the mailbox; nothing suppressed): RCPT: 554 5.7.1 Relay access denied", reply: 554)
        kept.attempts[0].outcome = .permanentFailure
        kept.attempts[0].stage = "RCPT"
        kept.attempts[0].enhancedStatus = "5.7.1"
        kept.attempts[0].replyText = "Relay access denied"
        kept.nextAttemptAtUnixMs = Self.now + 300_000
        evidence.messages = [kept]
        let findings = Verdict.findings(evidence, now: Self.now)
        #expect(findings.map(\.code) == ["platform_relay_refuses"])
        #expect(findings[0].summary.contains("554 5.7.1 Relay access denied") && findings[0].summary.contains("nothing was suppressed"))
        #expect(findings[0].nextStep.contains("relay.example:587") && findings[0].nextStep.contains("next attempt"))
        #expect(findings[0].nextStep.contains("does not relay for this host"), "\(findings[0].nextStep)")
        for (stage, code, enhanced, text, hint) in [
            ("AUTH", 535, "5.7.8", "Error: authentication failed", "smtp_password"), ("MAIL", 530, "5.7.0", "Must issue a STARTTLS command first", "TLS first"),
            ("RCPT", 504, "5.5.2", "<vm>: Helo command rejected: need fully-qualified hostname", "smtp_helo"),
            ("RCPT", 553, "5.6.7", "Must declare SMTPUTF8", "SMTPUTF8"), ("RCPT", 553, "5.1.8", "Sender address rejected: Domain not found", "from_address"),
        ] {
            var attempt = kept.attempts[0]
            (attempt.stage, attempt.replyCode, attempt.enhancedStatus, attempt.replyText) = (stage, UInt32(code), enhanced, text)
            #expect(Verdict.relayHint(attempt).contains(hint), "\(text): \(Verdict.relayHint(attempt))")
        }
        var gaveUp = kept
        gaveUp.state = .failed
        gaveUp.reason = "the relay refuses our mail (its policy or our setup, not the mailbox; nothing suppressed) still after 24h: RCPT: 554 5.7.1 Relay access denied"
        evidence.messages = [gaveUp]
        let failed = Verdict.findings(evidence, now: Self.now)
        #expect(failed.map(\.code) == ["platform_relay_refuses"])
        #expect(failed[0].nextStep.contains("rekey reset send"))
        // A plain 4xx deferral stays `deferred`.
        evidence.messages = [Self.message(.deferred, reply: 451)]
        #expect(Self.codes(evidence) == ["deferred"])
    }

    @Test("deferred, queued and delivered follow the last message's state; delivered to a maildir says so")
    func messageStates() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        evidence.messages = [Self.message(.deferred, reply: 421)]
        #expect(Self.codes(evidence) == ["deferred"])
        evidence.messages = [Self.message(.queued)]
        #expect(Self.codes(evidence) == ["queued"])
        evidence.messages = [Self.message(.accepted)]
        let delivered = Verdict.findings(evidence, now: Self.now)
        #expect(delivered.map(\.code) == ["delivered"])
        #expect(delivered[0].nextStep.contains("spam"))
        evidence.messages = [Self.message(.accepted, transport: "maildir")]
        #expect(Verdict.findings(evidence, now: Self.now)[0].summary.contains("local mail folder"))
    }

    @Test("likely_spam_unauthenticated: delivered mail from a domain without DKIM, SPF for the relay or DMARC alignment; in the escalation, with the fixes")
    func unauthenticated() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        evidence.messages = [Self.message(.accepted)]
        var check = Rekey_Notifier_V1_CheckDomainResponse()
        check.fromDomain = "example.com"
        func finding(_ name: String, _ status: Rekey_Notifier_V1_FindingStatus, fix: String = "") -> Rekey_Notifier_V1_DomainFinding {
            var finding = Rekey_Notifier_V1_DomainFinding()
            finding.check = name
            finding.status = status
            finding.summary = "\(name) summary"
            finding.fix = fix
            return finding
        }
        check.findings = [finding("spf", .ok), finding("dkim", .ok), finding("dmarc", .ok), finding("mx", .problem)]
        evidence.domainCheck = check
        #expect(Self.codes(evidence) == ["delivered"], "MX alone does not make mail spam")
        check.findings = [finding("spf", .problem, fix: "publish TXT at example.com: \"v=spf1 ip4:192.0.2.1 -all\""), finding("dkim", .problem), finding("dmarc", .warning)]
        evidence.domainCheck = check
        let findings = Verdict.findings(evidence, now: Self.now)
        #expect(findings.map(\.code) == ["delivered", "likely_spam_unauthenticated"])
        #expect(findings[1].summary.contains("(SPF, DKIM)"))
        #expect(findings[1].evidence.first?.contains("fix: publish TXT at example.com") == true)
        evidence.messages = [Self.message(.accepted, transport: "maildir")]
        #expect(Self.codes(evidence) == ["delivered"], "nothing left the machine")
    }

    static func opened(_ token: String, at: Int64, method: String = "GET", cookies: Bool = false, agent: String, state: String = "live") -> Rekey_Tokens_V1_TokenEvent {
        var event = Rekey_Tokens_V1_TokenEvent()
        event.kind = .opened
        event.purpose = .passwordReset
        event.tokenID = token
        event.atUnixMs = at
        event.clientAddress = "192.0.2.1"
        event.method = method
        event.hadCookies = cookies
        event.userAgentClass = agent
        event.tokenState = state
        return event
    }

    static func token(_ id: String, issued: Int64, state: Rekey_Tokens_V1_TokenState) -> Rekey_Tokens_V1_TokenInfo {
        var token = Rekey_Tokens_V1_TokenInfo()
        token.tokenID = id
        token.purpose = .passwordReset
        token.issuedAtUnixMs = issued
        token.expiresAtUnixMs = issued + Self.hour
        token.state = state
        return token
    }

    @Test("User-Agent classes: named scanners, headless browsers, programs, nothing, and browsers")
    func agentClasses() {
        let cases: [(String?, String)] = [
            ("Mozilla/5.0 (compatible; Mimecast URL Protect)", "scanner"),
            ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "scanner"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b", "scanner"),
            ("Proofpoint URL Defense", "scanner"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", "headless"),
            ("curl/8.5.0", "tool"),
            ("python-requests/2.31.0", "tool"),
            (nil, "empty"),
            ("   ", "empty"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "browser"),
        ]
        for (agent, expected) in cases {
            #expect(Flows.LinkOpening.agentClass(agent) == expected, "\(agent ?? "nil")")
        }
    }

    @Test("opened_by_scanner, opened_not_finished and superseded_link from the link's openings")
    func linkOpenings() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        var message = Self.message(.accepted)
        message.tokenID = "t_new"
        message.attempts[message.attempts.count - 1].finishedAtUnixMs = Self.now - 600_000
        message.attempts[message.attempts.count - 1].outcome = .accepted
        evidence.messages = [message]
        evidence.tokens = [Self.token("t_new", issued: Self.now - 601_000, state: .live)]
        evidence.events.insert(Self.opened("t_new", at: Self.now - 597_000, method: "HEAD", agent: "scanner"), at: 0)
        let scanned = Verdict.findings(evidence, now: Self.now)
        #expect(scanned.map(\.code) == ["delivered", "opened_by_scanner"])
        #expect(scanned[1].summary.contains("opened 3 s after delivery by a link scanner (HEAD, no cookies), not by the user"), "\(scanned[1].summary)")
        // A GET from a browser without cookies counts as the user; a headless browser does not.
        evidence.events.insert(Self.opened("t_new", at: Self.now - 500_000, agent: "headless"), at: 0)
        #expect(Self.codes(evidence) == ["delivered", "opened_by_scanner"])
        evidence.events.insert(Self.opened("t_new", at: Self.now - 300_000, agent: "browser"), at: 0)
        let person = Verdict.findings(evidence, now: Self.now)
        #expect(person.map(\.code) == ["delivered", "opened_not_finished"])
        #expect(person[1].summary.contains("5 min after delivery from a browser (GET, no cookies)"), "\(person[1].summary)")
        #expect(person[1].evidence.count == 3)

        // An older link, revoked by then, opened after the newer was sent.
        evidence.tokens.append(Self.token("t_old", issued: Self.now - 2 * Self.hour, state: .revoked))
        evidence.events.insert(Self.opened("t_old", at: Self.now - 60_000, agent: "browser", state: "revoked"), at: 0)
        let superseded = Verdict.findings(evidence, now: Self.now)
        #expect(superseded.map(\.code).contains("superseded_link"))
        // Opened before the newer one existed: nothing to say.
        evidence.events[0].atUnixMs = Self.now - Self.hour - 1
        #expect(!Self.codes(evidence).contains("superseded_link"))
    }

    @Test("rate_limited: when the next request is allowed, relative to now")
    func rateLimited() {
        var evidence = Self.evidence()
        var limited = Rekey_Tokens_V1_TokenEvent()
        limited.kind = .rateLimited
        limited.atUnixMs = Self.now - 60_000
        limited.detail = "5 per hour per user"
        evidence.events = [limited]
        var limit = Rekey_Tokens_V1_RateLimit()
        limit.nextAllowedAtUnixMs = Self.now + 30 * 60_000
        evidence.limits = [limit]
        let finding = Verdict.findings(evidence, now: Self.now).first { $0.code == "rate_limited" }
        #expect(finding?.nextStep.contains("next request is allowed at") == true)
        let later = Verdict.findings(evidence, now: Self.now + Self.hour).first { $0.code == "rate_limited" }
        #expect(later?.nextStep.contains("allowed again now") == true, "the same evidence an hour later: the clock is the verdict's input")
    }

    @Test("token_used, token_used_elsewhere and token_expired")
    func tokens() {
        var evidence = Self.evidence()
        evidence.events = [Self.issued()]
        var token = Rekey_Tokens_V1_TokenInfo()
        token.tokenID = "t_1"
        token.purpose = .passwordReset
        token.state = .used
        token.clientAddress = "192.0.2.1"
        token.issuedAtUnixMs = Self.now - Self.hour
        token.usedAtUnixMs = Self.now - Self.hour / 2
        evidence.tokens = [token]
        #expect(Self.codes(evidence).contains("token_used"))
        var redeemed = Rekey_Tokens_V1_TokenEvent()
        redeemed.kind = .redeemed
        redeemed.tokenID = "t_1"
        redeemed.clientAddress = "198.51.100.9"
        evidence.events.append(redeemed)
        #expect(Self.codes(evidence).contains("token_used_elsewhere"))
        token.state = .expired
        evidence.tokens = [token]
        #expect(Self.codes(evidence).contains("token_expired"))
    }

    @Test("never_requested and no_password")
    func nothingAsked() {
        #expect(Self.codes(Self.evidence()) == ["never_requested"])
        #expect(Self.codes(Self.evidence(Self.user(hasPassword: false))) == ["never_requested", "no_password"])
    }

    @Test("the report: escalation only when the platform is at fault; addresses masked for readers without users.manage")
    func report() {
        var evidence = Self.evidence()
        evidence.canSeeAddresses = false
        let plain = DiagnosisReport.make(evidence, now: Self.now, reportID: "dg_1")
        #expect(plain.escalation == nil)
        #expect(plain.who?.primaryAddress == "j***@example.com")
        evidence.unreachable = ["reset-token"]
        let escalated = DiagnosisReport.make(evidence, now: Self.now, reportID: "dg_2")
        #expect(escalated.escalation?.contains("Unreachable: reset-token") == true)
        #expect(escalated.generatedAt == "2027-01-15T08:00:00Z")
    }
}
