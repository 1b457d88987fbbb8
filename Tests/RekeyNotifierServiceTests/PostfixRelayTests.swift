import Foundation
import RekeyNotifierAPI
@testable import RekeyNotifierService
import RekeyTestTraits
import RekeyTesting
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The notifier against the relay as sites really run it: a throw-away Postfix 3.7 on loopback
/// (`RekeyTesting.PostfixRelay`) with the policies of a production relay (HELO and recipient
/// checks, Cyrus SASL, TLS required, a size limit), relaying to an aiosmtpd that keeps what
/// arrives.
@Suite("rekey-notifier through a real Postfix relay", .serialized, .processSlots)
struct PostfixRelayTests {
    let base = NotifierExecutableTests()

    /// Postfix's recipient checks: an unknown mailbox, and a policy refusal of one address.
    static let recipientChecks = """
        /^gone[0-9]*@example\\.org$/ 550 5.1.1 User unknown in virtual mailbox table
        /^blocked@example\\.org$/ 554 5.7.1 Access denied
        """

    /// Starts a notifier relaying through `relay`, off the concurrency pool (starting blocks).
    static func start(_ name: String, in folder: TemporaryFolder, relay: PostfixRelay, _ extra: [String] = []) async throws -> ServiceProcess {
        // TLS off by default: each test turns on what it exercises.
        // A generous timeout: Postfix starting an smtpd with TLS and SASL on a loaded machine can
        // take seconds to greet, and a first attempt lost to that would be retried only in an hour.
        let arguments = ["--transport", "smtp", "--smtp-server", "127.0.0.1:\(relay.port)", "--retry-schedule", "1h", "--smtp-timeout", "60s"]
            + (extra.contains("--smtp-tls") ? [] : ["--smtp-tls", "off"]) + extra
        return try await NotifierExecutableTests.start(dataDir: folder.path + "/" + name, arguments)
    }

    static func stop(_ process: ServiceProcess) async throws {
        await process.stop()
    }

    /// Messages that reached the next hop, by Message-ID (duplicates show as counts above 1).
    static func arrived(_ sink: SMTPTestServer) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for file in sink.messages() {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            let line = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("message-id:") } ?? ""
            counts[String(line.dropFirst("message-id:".count)).trimmingCharacters(in: .whitespaces), default: 0] += 1
        }
        return counts
    }

    static func wait(seconds: Int = 60, until done: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while try !done(), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func metric(_ process: ServiceProcess, _ line: String) async throws -> Bool {
        let port = try await offPool { try process.metricsPort() }
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        return String(decoding: data, as: UTF8.self).split(separator: "\n").contains { $0 == line }
    }

    @Test("Postfix's policy refusals at RCPT (504 5.5.2 for a short HELO, 554 5.7.1) keep the message and suppress nobody; its 550 5.1.1 suppresses; after 44 refusals 200 good messages all arrive, once each, and no session reaches Postfix's error limit")
    func policyRefusals() async throws {
        let folder = try TemporaryFolder()
        let (sink, relay) = try await offPool {
            let sink = try SMTPTestServer(folder: folder.path + "/sink")
            let relay = try PostfixRelay(
                nextHop: "[127.0.0.1]:\(sink.port)",
                extraSettings: [
                    "smtpd_helo_required = yes", "smtpd_helo_restrictions = reject_non_fqdn_helo_hostname",
                    "smtpd_recipient_restrictions = check_recipient_access regexp:$config_directory/recipients, permit_mynetworks, reject",
                ],
                files: ["recipients": Self.recipientChecks]
            )
            return (sink, relay)
        }

        // A short EHLO name: Postfix says so at RCPT, for every recipient.
        let short = try await Self.start("short", in: folder, relay: relay, ["--smtp-helo", "vm"])
        #expect(short.log.contains("the EHLO name is not fully qualified"), "\(short.log)")
        try await self.base.withNotifier(short) { notifier in
            let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.org"))
            let message = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state != .queued }
            #expect(message.state == .deferred, "\(message.attempts)")
            let attempt = try #require(message.attempts.first)
            #expect(attempt.stage == "RCPT" && attempt.replyCode == 504 && attempt.enhancedStatus == "5.5.2", "\(attempt)")
            #expect(attempt.replyText.contains("Helo command rejected: need fully-qualified hostname"), "\(attempt)")
            #expect(message.reason.hasPrefix(OutboxStore.relayRefusal), "\(message.reason)")
            #expect(try await notifier.listSuppressions(.init()).suppressions.isEmpty)
        }
        #expect(try await Self.metric(short, #"rekey_notifier_relay_refusals_total{stage="RCPT"} 1"#))
        try await Self.stop(short)

        // The default EHLO name is fully qualified: Postfix takes it.
        let process = try await Self.start("main", in: folder, relay: relay)
        #expect(!process.log.contains("the EHLO name is not fully qualified"), "\(process.log)")
        try await self.base.withNotifier(process) { notifier in
            let blocked = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "blocked@example.org"))
            let kept = try await self.base.waitFor(blocked.messageID, in: notifier) { $0.state != .queued }
            #expect(kept.state == .deferred && kept.attempts.first?.replyCode == 554 && kept.attempts.first?.enhancedStatus == "5.7.1", "\(kept.attempts)")
            #expect(try await notifier.listSuppressions(.init()).suppressions.isEmpty, "a policy refusal is not the mailbox's fault")

            let gone = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "gone@example.org"))
            let bounced = try await self.base.waitFor(gone.messageID, in: notifier) { $0.state != .queued }
            #expect(bounced.state == .failed && bounced.attempts.first?.enhancedStatus == "5.1.1", "\(bounced.attempts)")
            #expect(try await notifier.listSuppressions(.init()).suppressions.map(\.address) == ["gone@example.org"])

            // 44 refused recipients first, then 200 good ones, over the kept connections.
            var refused: [String] = []
            for index in 1...44 {
                refused.append(try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "gone\(index)@example.org")).messageID)
            }
            var good: [String] = []
            for index in 1...200 {
                good.append(try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "user\(index)@example.org")).messageID)
            }
            for id in refused {
                #expect(try await self.base.waitFor(id, in: notifier) { $0.state == .failed }.state == .failed)
            }
            for id in good {
                let message = try await self.base.waitFor(id, in: notifier) { $0.state == .accepted || $0.state == .failed }
                #expect(message.state == .accepted, "\(message.attempts)")
            }
            #expect(try await notifier.listSuppressions(.init()).suppressions.count == 45)
        }
        try await Self.stop(process)

        // Postfix relayed each good message once.
        try await Self.wait { try Self.arrived(sink).values.reduce(0, +) >= 200 }
        let arrived = try Self.arrived(sink)
        #expect(arrived.count == 200 && arrived.values.allSatisfy { $0 == 1 }, "\(arrived.count) messages, \(arrived.values.filter { $0 > 1 }.count) twice")

        // Every session ended before Postfix starts delaying its replies (smtpd_soft_error_limit,
        // 10 errors) or hangs up (smtpd_hard_error_limit, 20).
        let log = relay.log
        #expect(!log.contains("too many errors"), "\(log)")
        let sessions = log.split(separator: "\n").filter { $0.contains("postfix/smtpd") && $0.contains("disconnect from") }
        #expect(sessions.count > 5)
        for session in sessions {
            // "disconnect from localhost[127.0.0.1] ehlo=1 mail=12 rcpt=9/12 data=9 rset=3 quit=1 commands=…"
            guard let rcpt = session.split(separator: " ").first(where: { $0.hasPrefix("rcpt=") }) else { continue }
            let counts = rcpt.dropFirst(5).split(separator: "/").compactMap { Int($0) }
            if counts.count == 2 {
                #expect(counts[1] - counts[0] < 10, "\(session)")
            }
        }
    }

    @Test("AUTH and TLS against Postfix's own: STARTTLS with its self-signed certificate and SASL deliver; a wrong password (535 5.7.8), no AUTH (554 5.7.1, not allowed to relay) and no STARTTLS (530 5.7.0) keep every message as the relay's setup, suppressing nobody")
    func authenticationAndTLS() async throws {
        let folder = try TemporaryFolder()
        let certificates = folder.path + "/tls"
        let (sink, relay) = try await offPool {
            let make = Process()
            make.executableURL = URL(fileURLWithPath: SMTPTestServer.python)
            make.arguments = [SMTPTestServer.root.appendingPathComponent("Tests/Interop/make_cert.py").path, certificates]
            try make.run()
            waitForExit(make)
            let sink = try SMTPTestServer(folder: folder.path + "/sink")
            let relay = try PostfixRelay(
                nextHop: "[127.0.0.1]:\(sink.port)",
                extraSettings: [
                    // As a submission relay runs: TLS before anything, AUTH before relaying.
                    "smtpd_tls_security_level = encrypt", "smtpd_tls_auth_only = yes",
                    "smtpd_tls_cert_file = \(certificates)/cert.pem", "smtpd_tls_key_file = \(certificates)/key.pem",
                    "smtpd_relay_restrictions = permit_sasl_authenticated, reject", "smtpd_tls_loglevel = 1",
                ],
                saslUsers: ["rekey": "relay-password-1"]
            )
            return (sink, relay)
        }

        // Opportunistic TLS (the default) takes the self-signed certificate; AUTH PLAIN goes over it.
        let good = try await Self.start(
            "good", in: folder, relay: relay, ["--smtp-tls", "opportunistic", "--smtp-username", "rekey", "--smtp-password", "relay-password-1"]
        )
        try await self.base.withNotifier(good) { notifier in
            let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.org"))
            let message = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state != .queued }
            #expect(message.state == .accepted, "\(message.attempts)")
        }
        try await Self.stop(good)
        try await Self.wait { sink.messages().count == 1 }
        #expect(sink.messages().count == 1)
        #expect(relay.log.contains("TLS connection established from localhost"), "\(relay.log)")
        #expect(relay.log.contains("sasl_method=PLAIN, sasl_username=rekey"), "\(relay.log)")

        // Each of these would refuse every message: kept for the retry, nobody suppressed.
        let cases: [(String, [String], stage: String, code: UInt32, status: String, text: String)] = [
            ("rotated", ["--smtp-tls", "opportunistic", "--smtp-username", "rekey", "--smtp-password", "old-password"], "AUTH", 535, "5.7.8", "authentication failed"),
            ("anonymous", ["--smtp-tls", "opportunistic"], "RCPT", 554, "5.7.1", "Recipient address rejected: Access denied"),
            ("cleartext", ["--smtp-tls", "off"], "MAIL", 530, "5.7.0", "Must issue a STARTTLS command first"),
        ]
        for (name, arguments, stage, code, status, text) in cases {
            let process = try await Self.start(name, in: folder, relay: relay, arguments)
            try await self.base.withNotifier(process) { notifier in
                let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.org"))
                let message = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state != .queued }
                #expect(message.state == .deferred, "\(name): \(message.attempts)")
                let attempt = try #require(message.attempts.first)
                #expect(attempt.stage == stage && attempt.replyCode == code && attempt.enhancedStatus == status, "\(name): \(attempt)")
                #expect(attempt.replyText.contains(text), "\(name): \(attempt)")
                #expect(message.reason.hasPrefix(OutboxStore.relayRefusal), "\(name): \(message.reason)")
                #expect(try await notifier.listSuppressions(.init()).suppressions.isEmpty, "\(name)")
            }
            #expect(try await Self.metric(process, #"rekey_notifier_relay_refusals_total{stage="\#(stage)"} 1"#), "\(name)")
            try await Self.stop(process)
        }
        #expect(sink.messages().count == 1)
    }

    @Test("SIZE and SMTPUTF8 through Postfix: too large fails before DATA and suppresses nobody; a non-ASCII local part goes with SMTPUTF8, a non-ASCII domain in Punycode")
    func envelopeExtensions() async throws {
        let folder = try TemporaryFolder()
        let (sink, small, relay) = try await offPool {
            let sink = try SMTPTestServer(folder: folder.path + "/sink")
            let small = try PostfixRelay(nextHop: "[127.0.0.1]:\(sink.port)", extraSettings: ["message_size_limit = 2000"])
            let relay = try PostfixRelay(nextHop: "[127.0.0.1]:\(sink.port)", extraSettings: ["smtputf8_enable = yes"])
            return (sink, small, relay)
        }

        let tooSmall = try await Self.start("small", in: folder, relay: small)
        try await self.base.withNotifier(tooSmall) { notifier in
            let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.org"))
            let message = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state != .queued }
            #expect(message.state == .failed, "\(message.attempts)")
            #expect(message.attempts.first?.error.contains("more than the 2000 the relay takes") == true, "\(message.attempts)")
            #expect(try await notifier.listSuppressions(.init()).suppressions.isEmpty)
        }
        try await Self.stop(tooSmall)
        #expect(!small.log.contains("message-id="), "nothing was queued by the small relay: \(small.log)")

        let process = try await Self.start("utf8", in: folder, relay: relay)
        try await self.base.withNotifier(process) { notifier in
            for address in ["zoë@example.org", "jane@exämple.org"] {
                let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: address))
                let message = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state != .queued }
                #expect(message.state == .accepted, "\(address): \(message.attempts)")
            }
        }
        try await Self.stop(process)
        try await Self.wait { sink.messages().count == 2 }
        let recipients = try sink.messages().map { file in
            try String(contentsOfFile: file.replacingOccurrences(of: ".eml", with: ".envelope"), encoding: .utf8).split(separator: "\n").dropFirst()
        }.flatMap { $0 }
        #expect(Set(recipients) == ["zoë@example.org", "jane@xn--exmple-cua.org"], "\(recipients)")
    }
}
