import Foundation
import NIOSSL
import RekeyInput
import RekeyNotifierAPI
import RekeyNotifierService
import RekeyRPC
import RekeyRPCNIO
import RekeyTestTraits
import RekeyTesting
import Testing

@Suite("rekey-notifier, the executable, with a real SMTP server", .serialized, .processSlots)
struct NotifierExecutableTests {
    static let credential = "notifier-test-credential-0123456"

    static func start(dataDir: String, _ arguments: [String]) async throws -> ServiceProcess {
        try await ServiceProcess.start(
            "rekey-notifier",
            arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--poll-interval", "50ms", "--from-address", "no-reply@rekey.example"]
                + arguments,
            environment: ["REKEY_NOTIFIER_CREDENTIALS": Self.credential]
        )
    }

    static func smtp(_ server: Int, retry: String = "200ms") -> [String] {
        ["--transport", "smtp", "--smtp-server", "127.0.0.1:\(server)", "--retry-schedule", retry, "--smtp-timeout", "5s"]
    }

    func withNotifier<R>(_ process: ServiceProcess, _ body: (Rekey_Notifier_V1_Notifier.Client) async throws -> R) async throws -> R {
        try await withRPCClient(port: process.port, credential: Self.credential) { client in
            try await body(Rekey_Notifier_V1_Notifier.Client(wrapping: client))
        }
    }

    static func resetRequest(to address: String, locale: String = "en", key: String = UUID().uuidString) -> Rekey_Notifier_V1_EnqueueRequest {
        var request = Rekey_Notifier_V1_EnqueueRequest()
        request.templateName = "password_reset"
        request.toAddress = address
        request.toName = "Jürgen Doe"
        request.locale = locale
        var link = Rekey_Notifier_V1_Variable()
        link.key = "link"
        link.value = "https://rekey.example/password/reset?token=Ab_9-zZ0&x=1"
        var expires = Rekey_Notifier_V1_Variable()
        expires.key = "expires_in"
        expires.value = "30 Minuten"
        request.variables = [link, expires]
        request.userID = "u_1"
        request.idempotencyKey = key
        return request
    }

    /// Polls the message until `done` says so (or 60 s pass: a bound for a loaded machine, not a
    /// timing the test relies on).
    func waitFor(
        _ id: String, in notifier: Rekey_Notifier_V1_Notifier.Client, until done: (Rekey_Notifier_V1_Message) -> Bool
    ) async throws -> Rekey_Notifier_V1_Message {
        var request = Rekey_Notifier_V1_GetMessageRequest()
        request.messageID = id
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            let message = try #require(try await notifier.getMessage(request).message)
            if done(message) || ContinuousClock.now > deadline { return message }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test("a reset email is delivered over SMTP, and reads back right: headers, both parts, the link, the subject decoded")
    func delivered() async throws {
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp")
        let process = try await Self.start(dataDir: folder.path + "/data", Self.smtp(server.port))
        try await self.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "Jane@Example.com", locale: "de-CH"))
            #expect(queued.status == .queued)
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted)
            let attempt = try #require(message.attempts.last)
            #expect(attempt.replyCode == 250)
            #expect(attempt.enhancedStatus == "2.0.0")
            #expect(attempt.remoteQueueID == "T00001Q")
            #expect(attempt.server == "127.0.0.1:\(server.port)")
            #expect(message.subject == "Passwort zurücksetzen", "de-CH falls back to de")

            let file = try #require(server.messages().first)
            let mail = try await ParsedMail.parse(file)
            #expect(mail.defects.isEmpty, "\(mail.defects)")
            #expect(!mail.bare_lf)
            #expect(mail.headers["Subject"] == "Passwort zurücksetzen")
            #expect(mail.headers["To"] == "Jürgen Doe <Jane@Example.com>")
            #expect(mail.headers["From"] == "Rekey <no-reply@rekey.example>")
            #expect(mail.headers["Message-ID"] == "<\(queued.messageIDHeader)>")
            #expect(mail.headers["Date"] != nil)
            #expect(mail.content_type == "multipart/alternative")
            #expect(mail.parts.map(\.type) == ["text/plain", "text/html"])
            #expect(mail.parts[0].body.contains("https://rekey.example/password/reset?token=Ab_9-zZ0&x=1"))
            #expect(mail.parts[1].body.contains("href=\"https://rekey.example/password/reset?token=Ab_9-zZ0&amp;x=1\""))
            #expect(mail.parts[0].body.contains("läuft in 30 Minuten ab"))

            // The same idempotency key answers with the first message …
            var again = Self.resetRequest(to: "Jane@Example.com", key: "same")
            let first = try await notifier.enqueue(again)
            let second = try await notifier.enqueue(again)
            #expect(second.status == .duplicate)
            #expect(second.messageID == first.messageID)
            // … and refuses it for another request, naming the mistake.
            again.toAddress = "other@example.com"
            let misuse = await #expect(throws: RPCError.self) { try await notifier.enqueue(again) }
            #expect(misuse?.code == .alreadyExists)
            #expect(misuse?.message.contains("idempotency_key was already used for another request") == true)
        }
        #expect(await process.stop() == 0)
    }

    @Test("a temporary refusal is retried and then delivered; the timeline keeps both replies")
    func temporaryThenSuccess() async throws {
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp", options: ["--defer", "slow@example.com:1"])
        let process = try await Self.start(dataDir: folder.path + "/data", Self.smtp(server.port))
        try await self.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "slow@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted)
            #expect(message.attempts.map(\.outcome) == [.temporaryFailure, .accepted])
            #expect(message.attempts[0].stage == "RCPT")
            #expect(message.attempts[0].replyCode == 451)
            #expect(message.attempts[0].enhancedStatus == "4.3.0")
            #expect(server.messages().count == 1)
        }
        await process.stop()
    }

    @Test("a permanent refusal fails the message and suppresses the address; the next enqueue says SUPPRESSED")
    func hardBounce() async throws {
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp", options: ["--reject", "gone@example.com"])
        let process = try await Self.start(dataDir: folder.path + "/data", Self.smtp(server.port))
        try await self.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "gone@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .failed }
            #expect(message.state == .failed)
            #expect(message.attempts.count == 1)
            #expect(message.attempts[0].replyCode == 550)
            #expect(message.attempts[0].enhancedStatus == "5.1.1")
            let next = try await notifier.enqueue(Self.resetRequest(to: "GONE@example.com"))
            #expect(next.status == .suppressed)
            #expect(next.suppressionReason.contains("550 5.1.1"))

            // The same connection goes on serving other recipients.
            let other = try await notifier.enqueue(Self.resetRequest(to: "fine@example.com"))
            #expect(try await self.waitFor(other.messageID, in: notifier) { $0.state == .accepted }.state == .accepted)

            var remove = Rekey_Notifier_V1_RemoveSuppressionRequest()
            remove.address = "gone@example.com"
            _ = try await notifier.removeSuppression(remove)
            #expect(try await notifier.enqueue(Self.resetRequest(to: "gone@example.com")).status == .queued)
            let stats = try await notifier.getQueueStats(.init())
            #expect(stats.recentPermanentFailures >= 1)
            #expect(stats.transport == "smtp")
        }
        await process.stop()
    }

    @Test("while the server is down, attempts are retried; once it is up the message is delivered")
    func serverDown() async throws {
        let folder = try TemporaryFolder()
        // Held, not listening: connections are refused and no other test can take the port.
        let reservation = try PortReservation()
        let port = reservation.port
        let process = try await Self.start(dataDir: folder.path + "/data", Self.smtp(port))
        try await self.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let deferred = try await self.waitFor(queued.messageID, in: notifier) { message in
                message.state == .deferred && message.attempts.filter { $0.outcome != .unspecified }.count >= 2
            }
            #expect(deferred.state == .deferred)
            let finished = deferred.attempts.filter { $0.outcome != .unspecified }
            #expect(finished.count >= 2)
            #expect(finished.allSatisfy { $0.stage == "CONNECT" && $0.outcome == .temporaryFailure && !$0.error.isEmpty }, "\(finished)")
            reservation.release()
            let server = try await SMTPTestServer.start(folder: folder.path + "/smtp", port: port)
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted)
            #expect(server.messages().count == 1)
        }
        await process.stop()
    }

    @Test("kill -9 during SMTP loses nothing: after the restart the message is delivered, with the same Message-ID")
    func killDuringDelivery() async throws {
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp", options: ["--stall-first"])
        let data = folder.path + "/data"
        var process = try await Self.start(dataDir: data, Self.smtp(server.port, retry: "100ms"))
        let queued = try await self.withNotifier(process) { notifier in
            try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while !FileManager.default.fileExists(atPath: server.folder + "/stalled") && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(FileManager.default.fileExists(atPath: server.folder + "/stalled"), "the server got the message and did not answer")
        await process.kill9()

        process = try await Self.start(dataDir: data, Self.smtp(server.port, retry: "100ms"))
        try await self.withNotifier(process) { notifier in
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted)
            #expect(message.attempts.map(\.outcome) == [.interrupted, .accepted])
            let file = try #require(server.messages().first)
            #expect(try await ParsedMail.parse(file).headers["Message-ID"] == "<\(queued.messageIDHeader)>")
        }
        await process.stop()
    }

    @Test("STARTTLS: verified with the CA; opportunistic encrypts with a self-signed certificate; verify without the CA, or a server without STARTTLS when required, sends nothing")
    func startTLS() async throws {
        let folder = try TemporaryFolder()
        let certificates = folder.path + "/tls"
        let make = try await runProgram(SMTPTestServer.python, [SMTPTestServer.root.appendingPathComponent("Tests/Interop/make_cert.py").path, certificates])
        try #require(make.status == 0, "\(make.output)")
        let secure = try await SMTPTestServer.start(folder: folder.path + "/secure", options: ["--tls", "\(certificates)/cert.pem:\(certificates)/key.pem", "--require-tls"])
        let plain = try await SMTPTestServer.start(folder: folder.path + "/plain")

        let trusting = try await Self.start(
            dataDir: folder.path + "/data1",
            Self.smtp(secure.port) + ["--smtp-tls", "required", "--smtp-ca-file", "\(certificates)/cert.pem", "--smtp-tls-server-name", "localhost"]
        )
        try await self.withNotifier(trusting) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted, "\(message.attempts)")
            #expect(secure.messages().count == 1)
        }
        await trusting.stop()

        // Opportunistic (the default) encrypts with a self-signed certificate, as Postfix's `may`.
        let opportunistic = try await Self.start(dataDir: folder.path + "/data2", Self.smtp(secure.port))
        try await self.withNotifier(opportunistic) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted, "\(message.attempts)")
            #expect(secure.messages().count == 2, "delivered over TLS (the server requires it)")
        }
        await opportunistic.stop()

        // verify without the CA: refused, said for a person, nothing from the TLS library's insides.
        let untrusting = try await Self.start(dataDir: folder.path + "/data4", Self.smtp(secure.port) + ["--smtp-tls", "verify", "--smtp-tls-server-name", "localhost"])
        try await self.withNotifier(untrusting) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { !$0.attempts.isEmpty && $0.attempts[0].outcome != .unspecified }
            let error = message.attempts.first?.error ?? ""
            #expect(message.attempts.first?.stage == "STARTTLS", "\(message.attempts)")
            #expect(error.hasPrefix("cannot start TLS with localhost: the relay's certificate is not trusted"), "\(error)")
            #expect(error.contains("smtp_ca_file"), "\(error)")
            #expect(!error.contains(".cc") && !error.contains("boringssl") && !error.contains("OPENSSL"), "\(error)")
            #expect(secure.messages().count == 2, "nothing more was delivered")
        }
        await untrusting.stop()

        // The name is checked against the certificate's DNS names only: its IP address entry
        // (127.0.0.1, the relay's address) does not stand in for another configured name.
        let elsewhere = try await Self.start(
            dataDir: folder.path + "/data5",
            Self.smtp(secure.port) + ["--smtp-tls", "verify", "--smtp-ca-file", "\(certificates)/cert.pem", "--smtp-tls-server-name", "other.example"]
        )
        try await self.withNotifier(elsewhere) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { !$0.attempts.isEmpty && $0.attempts[0].outcome != .unspecified }
            let error = message.attempts.first?.error ?? ""
            #expect(error == "cannot start TLS with other.example: the relay's certificate does not carry that name (it carries localhost): set smtp_tls_server_name to a name it carries", "\(error)")
            #expect(secure.messages().count == 2, "nothing more was delivered")
        }
        await elsewhere.stop()

        // A relay reached by IP address without a configured name: the chain alone is checked,
        // so a certificate with DNS names only is accepted.
        let named = folder.path + "/tls-named"
        let makeNamed = try await runProgram(
            SMTPTestServer.python, [SMTPTestServer.root.appendingPathComponent("Tests/Interop/make_cert.py").path, named, "--dns-only", "relay.example.test"]
        )
        try #require(makeNamed.status == 0, "\(makeNamed.output)")
        let namedServer = try await SMTPTestServer.start(folder: folder.path + "/named", options: ["--tls", "\(named)/cert.pem:\(named)/key.pem", "--require-tls"])
        let chainOnly = try await Self.start(dataDir: folder.path + "/data6", Self.smtp(namedServer.port) + ["--smtp-tls", "verify", "--smtp-ca-file", "\(named)/cert.pem"])
        try await self.withNotifier(chainOnly) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted, "\(message.attempts)")
            #expect(namedServer.messages().count == 1)
        }
        await chainOnly.stop()

        let requiring = try await Self.start(dataDir: folder.path + "/data3", Self.smtp(plain.port) + ["--smtp-tls", "required"])
        try await self.withNotifier(requiring) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { !$0.attempts.isEmpty && $0.attempts[0].outcome != .unspecified }
            #expect(message.state == .deferred)
            #expect(message.attempts.first?.error.contains("does not offer STARTTLS") == true, "\(message.attempts)")
            #expect(plain.messages().isEmpty)
        }
        await requiring.stop()
    }

    @Test("the maildir transport writes files; templates are overridden from a folder; header injection is refused")
    func maildirAndTemplates() async throws {
        let folder = try TemporaryFolder()
        let templates = folder.path + "/templates"
        try FileManager.default.createDirectory(atPath: templates, withIntermediateDirectories: true)
        try "Custom reset for {{{name}}}".write(toFile: templates + "/password_reset.en.subject.mustache", atomically: true, encoding: .utf8)
        let process = try await Self.start(dataDir: folder.path + "/data", ["--templates-dir", templates])
        try await self.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.attempts.first?.transport == "maildir")
            let mailDir = folder.path + "/data/mail/new"
            let files = try FileManager.default.contentsOfDirectory(atPath: mailDir)
            #expect(files.count == 1)
            let mail = try await ParsedMail.parse(mailDir + "/" + files[0])
            #expect(mail.headers["Subject"] == "Custom reset for Jürgen Doe")
            #expect(mail.parts[0].body.contains("https://rekey.example/password/reset?token=Ab_9-zZ0&x=1"), "the English body is still the built-in one")

            var injected = Self.resetRequest(to: "jane@example.com")
            injected.toName = "Jane\r\nBcc: all@example.com"
            let refused = await #expect(throws: RPCError.self) { try await notifier.enqueue(injected) }
            #expect(refused?.code == .invalidArgument)
            #expect(refused?.message.contains("line break") == true)

            var test = Rekey_Notifier_V1_SendTestRequest()
            test.toAddress = "ops@example.com"
            let sent = try await notifier.sendTest(test)
            #expect(try await self.waitFor(sent.messageID, in: notifier) { $0.state == .accepted }.templateName == "test")
            var list = Rekey_Notifier_V1_ListMessagesRequest()
            list.toAddress = "JANE@example.com"
            #expect(try await notifier.listMessages(list).messages.map(\.id) == [queued.messageID])
        }
        await process.stop()
    }

    @Test("the EHLO name: a domain or an address literal, nothing else; fully qualified by default, from this host or the sender's domain")
    func heloNames() {
        for good in ["mail.example.com", "vm", "[192.0.2.1]", "[IPv6:2001:db8::1]", "a-b.example"] {
            #expect(SMTPConfiguration.isValidHeloName(good), "\(good)")
        }
        for bad in ["", "bad name", "mail.example.com\r\nRSET", "-vm", "a..b", "zoë.example", String(repeating: "a", count: 64) + ".example", "[]"] {
            #expect(!SMTPConfiguration.isValidHeloName(bad), "\(bad)")
        }
        #expect(SMTPConfiguration.isFullyQualified("mail.example.com") && SMTPConfiguration.isFullyQualified("[192.0.2.1]"))
        #expect(!SMTPConfiguration.isFullyQualified("vm") && !SMTPConfiguration.isFullyQualified("localhost") && !SMTPConfiguration.isFullyQualified("vm.localdomain"))
        #expect(SMTPConfiguration.defaultHeloName(hostName: "vm", canonicalName: "vm.corp.example", fromAddress: "no-reply@example.com") == "vm.corp.example")
        #expect(SMTPConfiguration.defaultHeloName(hostName: "vm", canonicalName: "vm", fromAddress: "no-reply@example.com") == "example.com",
                "a short host name gives way to the sender's domain")
        #expect(SMTPConfiguration.defaultHeloName(hostName: "vm", canonicalName: nil, fromAddress: "rekey@localhost") == "vm", "nothing better known")
    }

    struct LibraryError: Error, CustomStringConvertible {
        var description: String
    }

    @Test("TLS failures in words, with the setting to change; no paths or numbers from the TLS library")
    func tlsWords() {
        #expect(SMTPTransport.describeTLS(NIOSSLExtraError.failedToValidateHostname).contains("set smtp_tls_server_name"))
        let unknown = SMTPTransport.describeTLS(LibraryError(description:
            "handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435640 error:100000b8:SSL routines:OPENSSL_internal:NO_SHARED_CIPHER at /build/checkouts/swift-nio-ssl/Sources/CNIOBoringSSL/ssl/handshake.cc:1234]))"
        ))
        #expect(unknown == "the TLS handshake with the relay failed (NO_SHARED_CIPHER)", "\(unknown)")
        #expect(SMTPTransport.describeTLS(LibraryError(description: "error:1000042e:SSL routines:OPENSSL_internal:TLSV1_ALERT_PROTOCOL_VERSION")).contains("TLS 1.2"))
        #expect(SMTPTransport.describeTLS(LibraryError(description: "eof")) == "the TLS handshake with the relay failed")
    }

    @Test("the relay down: messages wait instead of each failing a connect; when it is back, every message goes out")
    func relayOutage() async throws {
        let folder = try TemporaryFolder()
        // Held, not listening: connections are refused and no other test can take the port.
        let reservation = try PortReservation()
        let port = reservation.port
        let notifier = try await Self.start(dataDir: folder.path + "/data", Self.smtp(port) + ["--concurrency", "4"])
        try await self.withNotifier(notifier) { client in
            var ids: [String] = []
            for index in 0..<20 {
                ids.append(try await client.enqueue(Self.resetRequest(to: "user\(index)@example.com")).messageID)
            }
            func tried() async throws -> Int {
                var count = 0
                for id in ids {
                    var request = Rekey_Notifier_V1_GetMessageRequest()
                    request.messageID = id
                    if try await client.getMessage(request).message?.attempts.isEmpty == false { count += 1 }
                }
                return count
            }
            let deadline = ContinuousClock.now + .seconds(20)
            while try await tried() == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            // Each failed connect takes a moment here: without the gate every message would be
            // tried (and retried every 200 ms) by now; with it, the ones under way when the relay
            // went away, and a probe now and then.
            try await Task.sleep(for: .seconds(2))
            let attempted = try await tried()
            #expect(attempted >= 1 && attempted <= 4 + 3, "\(attempted) of \(ids.count) messages tried: the queue waits while the relay is down")
            reservation.release()
            let server = try await SMTPTestServer.start(folder: folder.path + "/mail", options: ["--port", "\(port)"])
            for id in ids {
                let message = try await self.waitFor(id, in: client) { $0.state == .accepted }
                #expect(message.state == .accepted, "\(message.attempts)")
            }
            #expect(server.messages().count == ids.count)
        }
        await notifier.stop()
    }

    @Test("internationalised domains go out in ASCII (IDNA, Punycode of RFC 3492)")
    func idna() {
        #expect(IDNA.asciiDomain("exämple.org") == "xn--exmple-cua.org")
        #expect(IDNA.asciiDomain("Bücher.example") == "xn--bcher-kva.example", "lower-cased first")
        #expect(IDNA.asciiDomain("山田.jp") == "xn--rhtu98c.jp")
        #expect(IDNA.asciiDomain("münchen-ost.de") == "xn--mnchen-ost-9db.de")
        #expect(IDNA.asciiDomain("example.com") == "example.com")
        #expect(IDNA.asciiDomain("ä..org") == nil && IDNA.asciiDomain(String(repeating: "ä", count: 80) + ".org") == nil)
        #expect(IDNA.asciiDomainAddress("zoë@exämple.org") == "zoë@xn--exmple-cua.org", "the local part stays as it is")
    }

    @Test("SIZE, SMTPUTF8 and IDNA on a real server: too large is not sent; a non-ASCII local part needs SMTPUTF8; a non-ASCII domain needs nothing")
    func envelopeExtensions() async throws {
        let folder = try TemporaryFolder()
        let small = try await SMTPTestServer.start(folder: folder.path + "/small", options: ["--size", "2000"])
        let plain = try await SMTPTestServer.start(folder: folder.path + "/plain", options: ["--no-smtputf8"])
        let modern = try await SMTPTestServer.start(folder: folder.path + "/modern")

        let tooSmall = try await Self.start(dataDir: folder.path + "/data1", Self.smtp(small.port))
        try await self.withNotifier(tooSmall) { notifier in
            let queued = try await notifier.enqueue(Self.resetRequest(to: "jane@example.com"))
            let message = try await self.waitFor(queued.messageID, in: notifier) { $0.state == .failed }
            #expect(message.state == .failed, "\(message.attempts)")
            #expect(message.attempts.count == 1 && message.attempts[0].error.contains("more than the 2000 the relay takes"), "\(message.attempts)")
            #expect(small.messages().isEmpty)
            #expect(try await notifier.listSuppressions(.init()).suppressions.isEmpty, "too large is not the mailbox's fault")
        }
        await tooSmall.stop()

        let ascii = try await Self.start(dataDir: folder.path + "/data2", Self.smtp(plain.port))
        try await self.withNotifier(ascii) { notifier in
            let domain = try await notifier.enqueue(Self.resetRequest(to: "jane@exämple.org"))
            let sent = try await self.waitFor(domain.messageID, in: notifier) { $0.state == .accepted || $0.state == .failed }
            #expect(sent.state == .accepted, "\(sent.attempts)")
            let file = try #require(plain.messages().first)
            #expect(try String(contentsOfFile: file, encoding: .utf8).contains("<jane@xn--exmple-cua.org>"), "the To header's domain in ASCII too")
            let local = try await notifier.enqueue(Self.resetRequest(to: "zoë@example.org"))
            let refused = try await self.waitFor(local.messageID, in: notifier) { $0.state == .failed }
            #expect(refused.attempts.first?.error.contains("does not offer SMTPUTF8") == true, "\(refused.attempts)")
        }
        await ascii.stop()

        let utf8 = try await Self.start(dataDir: folder.path + "/data3", Self.smtp(modern.port))
        try await self.withNotifier(utf8) { notifier in
            let local = try await notifier.enqueue(Self.resetRequest(to: "zoë@example.org"))
            let sent = try await self.waitFor(local.messageID, in: notifier) { $0.state == .accepted || $0.state == .failed }
            #expect(sent.state == .accepted, "\(sent.attempts)")
            #expect(modern.messages().count == 1)
        }
        await utf8.stop()
    }

    @Test("certificate names: exact or one-label wildcard, case and a trailing dot ignored")
    func certificateNames() {
        #expect(SMTPTransport.certificateNames(["relay.example.com"], match: "RELAY.example.com."))
        #expect(SMTPTransport.certificateNames(["*.example.com"], match: "relay.example.com"))
        #expect(!SMTPTransport.certificateNames(["*.example.com"], match: "a.relay.example.com"), "one label only")
        #expect(!SMTPTransport.certificateNames(["*.example.com"], match: "example.com"))
        #expect(!SMTPTransport.certificateNames(["relay.example.com"], match: "relay.example.org"))
        #expect(!SMTPTransport.certificateNames([], match: "relay.example.com"))
    }

    @Test("start-up refuses bad settings with a message naming the key")
    func badSettings() async throws {
        let folder = try TemporaryFolder()
        let cases: [([String], String)] = [
            (["--transport", "pigeon"], "`transport`"),
            (["--retry-schedule", "1m,soon"], "`retry_schedule`"),
            (["--from-address", "nobody"], "`from_address`"),
            (["--templates-dir", folder.path + "/missing"], "cannot read the templates folder"),
            (["--transport", "smtp", "--smtp-helo", "mail.example.com\r\nRSET"], "`smtp_helo`"),
            (["--transport", "smtp", "--smtp-helo", "bad name"], "`smtp_helo`"),
        ]
        for (arguments, expected) in cases {
            let (status, output) = try await offPool { try ServiceProcess.run(
                "rekey-notifier", ["serve", "--data-dir", folder.path] + arguments, environment: ["REKEY_NOTIFIER_CREDENTIALS": Self.credential]
            ) }
            #expect(status != 0)
            #expect(output.contains(expected), "\(output)")
        }
    }
}
