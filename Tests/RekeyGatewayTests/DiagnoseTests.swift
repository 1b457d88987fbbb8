import Foundation
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Testing

/// `rekey diagnose`, each scenario produced for real: the four executables, a real SMTP server
/// (aiosmtpd) that accepts, answers 4xx or 550 5.1.1, or is not there at all.
@Suite("rekey diagnose", .serialized, .processSlots)
struct DiagnoseTests {
    let api: Browser
    let auth: [String: String]

    init(_ system: RekeySystem) {
        self.api = Browser(base: system.base)
        self.auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
    }

    init() {
        self.api = Browser(base: "")
        self.auth = [:]
    }

    func call(_ method: String, _ path: String, _ body: String? = nil) async throws -> [String: Any] {
        let page = try await self.api.send(method, "/api/admin/v1" + path, headers: self.auth, body: body.map { Data($0.utf8) })
        try #require((200..<300).contains(page.status), "\(method) \(path): \(page.status) \(page.body)")
        return try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any] ?? [:]
    }

    func createUser(_ name: String, _ email: String, role: String = "customer") async throws -> String {
        try #require(try await self.call("POST", "/users", #"{"name": "\#(name)", "email": "\#(email)", "role": "\#(role)"}"#)["id"] as? String)
    }

    func diagnose(_ input: String) async throws -> (codes: [String], report: [String: Any]) {
        let report = try await self.call("GET", "/diagnosis?user=\(input.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")&since=1d")
        let codes = (report["findings"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
        return (codes, report)
    }

    func finding(_ report: [String: Any], _ code: String) -> [String: Any]? {
        (report["findings"] as? [[String: Any]] ?? []).first { $0["code"] as? String == code }
    }

    /// Waits until the user's newest message is in `state`.
    /// Waits for the user's newest message to reach `state`. The bound is for a loaded machine:
    /// with the relay down, messages are tried one probe at a time, after pauses that double.
    func waitForMessage(_ userID: String, state: String, count: Int = 1) async throws {
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline {
            let messages = try await self.call("GET", "/users/\(userID)/messages")["messages"] as? [[String: Any]] ?? []
            if messages.count >= count, messages.first?["state"] as? String == state { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the message of \(userID) never reached \(state)")
    }

    func forgot(_ browser: Browser, _ email: String, from address: String = "198.51.100.7") async throws -> Browser.Page {
        let page = try await browser.send("GET", "/password/forgot")
        return try await browser.send("POST", "/password/forgot", form: ["email": email, "csrf": Browser.csrf(in: page)], headers: ["X-Forwarded-For": address])
    }

    @Test("delivered, never requested, secondary address, unknown address, disabled, rate-limited, deferred, hard bounce, the relay refusing us, token used from elsewhere")
    func withAWorkingRelay() async throws {
        let folder = try TemporaryFolder()
        let smtp = try await SMTPTestServer.start(folder: folder.path, options: [
            "--reject", "bounce@example.com", "--defer", "slow@example.com:1000",
            "--refuse", "policy@example.com=554 5.7.1 <policy@example.com>: Relay access denied",
        ])
        let system = try await RekeySystem.start(
            notifier: ["--transport", "smtp", "--smtp-server", "127.0.0.1:\(smtp.port)", "--retry-schedule", "1h"],
            tokens: ["--limit-per-user", "2"],
            gateway: ["--trusted-proxies", "127.0.0.1"]
        )
        defer { system.stopInBackground() }
        let test = DiagnoseTests(system)
        let browser = Browser(base: system.base)

        // Delivered: the server's reply and queue id are the evidence.
        let jane = try await test.createUser("Jane Doe", "jane@example.com")
        _ = try await test.call("POST", "/users/\(jane)/password-reset")
        try await test.waitForMessage(jane, state: "accepted")
        var (codes, report) = try await test.diagnose("jane@example.com")
        #expect(codes.first == "delivered", "\(codes)")
        let delivered = try #require(test.finding(report, "delivered"))
        #expect((delivered["summary"] as? String)?.contains("250 2.0.0 Ok: queued as T00001Q") == true, "\(delivered)")
        #expect((delivered["next_step"] as? String)?.contains("spam") == true)
        #expect(!String(describing: report).contains("token="), "never a token or a link")
        // example.test publishes SPF "-all" and DMARC, and the notifier does not sign: likely spam.
        #expect(codes.contains("likely_spam_unauthenticated"), "\(codes)")
        let spam = try #require(test.finding(report, "likely_spam_unauthenticated"))
        #expect((spam["summary"] as? String)?.contains("from example.test is not properly authenticated (SPF, DKIM, DMARC)") == true, "\(spam)")
        #expect((spam["evidence"] as? [String])?.contains { $0.contains("fix: add ip4:127.0.0.1") } == true, "\(spam)")

        // Never requested.
        let nora = try await test.createUser("Nora Never", "nora@example.com")
        (codes, _) = try await test.diagnose(nora)
        #expect(codes.contains("never_requested"), "\(codes)")

        // The typed address is a secondary one: mail went to the primary.
        let sam = try await test.createUser("Sam Second", "sam@example.com")
        _ = try await test.call("POST", "/users/\(sam)/emails", #"{"address": "sam.home@example.org"}"#)
        _ = try await test.forgot(browser, "sam.home@example.org")
        try await test.waitForMessage(sam, state: "accepted")
        (codes, report) = try await test.diagnose("sam.home@example.org")
        #expect(codes.contains("secondary_address"), "\(codes)")
        #expect((test.finding(report, "secondary_address")?["summary"] as? String)?.contains("primary address sam@example.com") == true)
        #expect(codes.contains("delivered"))

        // Unknown address.
        (codes, _) = try await test.diagnose("ghost@example.com")
        #expect(codes == ["unknown_address"], "\(codes)")

        // Disabled account.
        let dan = try await test.createUser("Dan Disabled", "dan@example.com")
        _ = try await test.call("POST", "/users/\(dan)/disable")
        _ = try await test.forgot(browser, "dan@example.com")
        (codes, _) = try await test.diagnose("dan@example.com")
        #expect(codes.first == "account_disabled", "\(codes)")

        // Rate-limited: the third request within the window is refused.
        let rita = try await test.createUser("Rita Rate", "rita@example.com")
        for _ in 0..<3 { _ = try await test.forgot(browser, "rita@example.com") }
        (codes, report) = try await test.diagnose("rita@example.com")
        #expect(codes.contains("rate_limited"), "\(codes)")
        #expect((test.finding(report, "rate_limited")?["next_step"] as? String)?.contains("next request is allowed at") == true)
        _ = rita

        // Deferred: the server answers 451; the next attempt is scheduled.
        let slow = try await test.createUser("Sly Slow", "slow@example.com")
        _ = try await test.call("POST", "/users/\(slow)/password-reset")
        try await test.waitForMessage(slow, state: "deferred")
        (codes, report) = try await test.diagnose(slow)
        #expect(codes.first == "deferred", "\(codes)")
        #expect((test.finding(report, "deferred")?["summary"] as? String)?.contains("451 4.3.0") == true)

        // Hard bounce, then suppressed.
        let bounce = try await test.createUser("Bo Bounce", "bounce@example.com")
        _ = try await test.call("POST", "/users/\(bounce)/password-reset")
        try await test.waitForMessage(bounce, state: "failed")
        (codes, report) = try await test.diagnose("bounce@example.com")
        #expect(codes.contains("suppressed") && codes.contains("hard_bounce"), "\(codes)")
        #expect((test.finding(report, "suppressed")?["next_step"] as? String)?.contains("rekey suppressions remove bounce@example.com") == true)

        // A 5xx about us, not the mailbox (the relay's policy): kept for a retry, nothing suppressed.
        let pat = try await test.createUser("Pat Policy", "policy@example.com")
        _ = try await test.call("POST", "/users/\(pat)/password-reset")
        try await test.waitForMessage(pat, state: "deferred")
        (codes, report) = try await test.diagnose("policy@example.com")
        #expect(codes.first == "platform_relay_refuses" && !codes.contains("suppressed") && !codes.contains("hard_bounce"), "\(codes)")
        #expect((test.finding(report, "platform_relay_refuses")?["summary"] as? String)?.contains("554 5.7.1") == true)
        #expect((report["escalation"] as? String)?.contains("Relay access denied") == true, "\(report["escalation"] ?? "")")
        let suppressions = try await test.call("GET", "/suppressions")
        #expect(!String(describing: suppressions).contains("policy@example.com"), "\(suppressions)")

        // The link was used from another address than the one that asked for it.
        let uma = try await test.createUser("Uma Used", "uma@example.com")
        _ = try await test.forgot(browser, "uma@example.com", from: "198.51.100.7")
        try await test.waitForMessage(uma, state: "accepted")
        let mail = try #require(smtp.messages().last)
        let text = try String(contentsOfFile: mail, encoding: .utf8)
        let link = try #require(text.link("/password/reset"))
        let token = String(link.split(separator: "=").last!)
        let form = try await browser.send("GET", String(link.dropFirst("https://sso.example.test".count)))
        let reset = try await browser.send(
            "POST", "/password/reset", form: ["token": token, "password": "a brand new passphrase", "confirm": "a brand new passphrase", "csrf": Browser.csrf(in: form)],
            headers: ["X-Forwarded-For": "203.0.113.9"]
        )
        #expect(reset.status == 303)
        (codes, report) = try await test.diagnose("uma@example.com")
        #expect(codes.contains("token_used_elsewhere"), "\(codes)")
        #expect((test.finding(report, "token_used_elsewhere")?["summary"] as? String)?.contains("from 203.0.113.9, not from 198.51.100.7") == true)
    }

    /// The newest mail's link to `path` in the maildir, as the user would click it (without the host).
    static func newestLink(_ system: RekeySystem, _ path: String = "/password/reset") throws -> String {
        let files = try FileManager.default.contentsOfDirectory(atPath: system.mailDir).sorted { a, b in
            let date = { (name: String) in (try? FileManager.default.attributesOfItem(atPath: system.mailDir + "/" + name)[.modificationDate] as? Date) ?? .distantPast }
            return (date(a), a) < (date(b), b)
        }
        let text = try String(contentsOfFile: system.mailDir + "/" + (try #require(files.last)), encoding: .utf8)
        return String(try #require(text.link(path)).dropFirst("https://sso.example.test".count))
    }

    @Test("who opened the link: a scanner's HEAD, then the user's browser that did not finish, then an older link opened after a newer one was used")
    func linkOpenings() async throws {
        let system = try await RekeySystem.start(gateway: ["--trusted-proxies", "127.0.0.1"])
        defer { system.stopInBackground() }
        let test = DiagnoseTests(system)
        let lou = try await test.createUser("Lou Links", "lou@example.com")
        _ = try await test.call("POST", "/users/\(lou)/password-reset")
        try await test.waitForMessage(lou, state: "accepted")
        let first = try Self.newestLink(system)

        // Mimecast looks at it seconds after delivery: HEAD, no cookies. The link still works.
        let scanner = Browser(base: system.base)
        let head = try await scanner.send("HEAD", first, headers: ["User-Agent": "Mozilla/5.0 (compatible; Mimecast URL Protect)", "X-Forwarded-For": "192.0.2.50"])
        #expect(head.status == 200 && head.body.isEmpty)
        var (codes, report) = try await test.diagnose("lou@example.com")
        #expect(codes.contains("opened_by_scanner") && !codes.contains("opened_not_finished"), "\(codes)")
        let scanned = try #require(test.finding(report, "opened_by_scanner"))
        #expect((scanned["summary"] as? String)?.contains("after delivery by a link scanner (HEAD, no cookies), not by the user") == true, "\(scanned)")
        let requests = report["requests"] as? [[String: Any]] ?? []
        #expect(requests.contains { $0["kind"] as? String == "opened" && ($0["detail"] as? String)?.contains("by a link scanner (HEAD, no cookies)") == true }, "\(requests)")
        #expect(!String(describing: report).contains("token="), "never the token")

        // The user's own browser, which was here before (the forgot page set its cookie).
        let user = Browser(base: system.base)
        _ = try await user.send("GET", "/password/forgot")
        let firefox = ["User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "X-Forwarded-For": "198.51.100.20"]
        let opened = try await user.send("GET", first, headers: firefox)
        #expect(opened.status == 200)
        (codes, report) = try await test.diagnose("lou@example.com")
        #expect(codes.contains("opened_not_finished") && !codes.contains("opened_by_scanner"), "\(codes)")
        #expect((test.finding(report, "opened_not_finished")?["summary"] as? String)?.contains("from a browser (GET, with this site's cookies)") == true)

        // A second email; its link is used; then the user clicks the first email's link.
        _ = try await test.call("POST", "/users/\(lou)/password-reset")
        try await test.waitForMessage(lou, state: "accepted", count: 2)
        let second = try Self.newestLink(system)
        #expect(second != first)
        let form = try await user.send("GET", second, headers: firefox)
        let changed = try await user.send(
            "POST", "/password/reset", form: ["token": String(second.split(separator: "=").last!), "password": "a brand new passphrase", "confirm": "a brand new passphrase", "csrf": Browser.csrf(in: form)],
            headers: firefox
        )
        #expect(changed.status == 303)
        let old = try await user.send("GET", first, headers: firefox)
        #expect(old.status == 410)
        (codes, report) = try await test.diagnose("lou@example.com")
        #expect(codes.contains("superseded_link"), "\(codes)")
        #expect((test.finding(report, "superseded_link")?["summary"] as? String)?.contains("revoked by then") == true, "\(String(describing: test.finding(report, "superseded_link")))")
    }

    @Test("a bounce that comes later, through a real Postfix: the next hop refuses the recipient after Postfix took the message; Postfix's own DSN reaches the notifier's bounce listener; bounced_later with the remote reply, the address suppressed")
    func bouncedLater() async throws {
        let sinkFolder = try TemporaryFolder()
        // Starting Postfix blocks for a while: off the concurrency pool, which the in-process tests share.
        let (sink, bouncePort, postfix) = try await offPool {
            let sink = try SMTPTestServer(folder: sinkFolder.path, options: ["--reject", "gone@example.com"])
            let bouncePort = try SMTPTestServer.freePort()
            return (sink, bouncePort, try PostfixRelay(nextHop: "[127.0.0.1]:\(sink.port)", transports: ["bounces.rekey.example": "[127.0.0.1]:\(bouncePort)"]))
        }
        let system = try await RekeySystem.start(notifier: [
            "--transport", "smtp", "--smtp-server", "127.0.0.1:\(postfix.port)", "--smtp-tls", "off",
            "--bounce-domain", "bounces.rekey.example", "--bounce-listen", "127.0.0.1:\(bouncePort)",
        ])
        defer { system.stopInBackground() }
        let test = DiagnoseTests(system)
        let gus = try await test.createUser("Gus Gone", "gone@example.com")
        _ = try await test.call("POST", "/users/\(gus)/password-reset")
        let deadline = ContinuousClock.now + .seconds(30)
        var state = ""
        while ContinuousClock.now < deadline {
            state = (try await test.call("GET", "/users/\(gus)/messages")["messages"] as? [[String: Any]])?.first?["state"] as? String ?? ""
            if state == "bounced" { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(state == "bounced", "Postfix's log:\n\(postfix.log)")
        let (codes, report) = try await test.diagnose("gone@example.com")
        #expect(codes.contains("bounced_later") && codes.contains("suppressed"), "\(codes)")
        let finding = try #require(test.finding(report, "bounced_later"))
        #expect((finding["summary"] as? String)?.contains("5.1.1") == true, "\(finding)")
        #expect((finding["summary"] as? String)?.contains("the address is now suppressed") == true, "\(finding)")
        #expect((finding["evidence"] as? [String])?.contains { $0.contains("dsn report") && $0.contains("relay.rekey.test") } == true, "\(finding)")
        #expect(sink.messages().isEmpty, "the next hop took nothing")
    }

    @Test("a reset link that expired unused")
    func expiredToken() async throws {
        let system = try await RekeySystem.start(tokens: ["--reset-lifetime", "1s"])
        defer { system.stopInBackground() }
        let test = DiagnoseTests(system)
        let eve = try await test.createUser("Eve Expired", "eve@example.com")
        _ = try await test.call("POST", "/users/\(eve)/password-reset")
        var (codes, report) = try await test.diagnose("eve@example.com")
        try await RekeySystem.eventually {
            (codes, report) = try await test.diagnose("eve@example.com")
            return codes.contains("token_expired")
        }
        #expect(codes.contains("token_expired"), "\(codes)")
        #expect((test.finding(report, "token_expired")?["next_step"] as? String)?.contains("rekey reset send") == true)
    }

    @Test("the relay down with a growing queue, then a service unreachable: platform problems to escalate")
    func platformProblems() async throws {
        // Held, not listening, for the whole test: connections are refused and no other test
        // can take the port.
        let dead = try PortReservation()
        let deadPort = dead.port
        defer { dead.release() }
        let system = try await RekeySystem.start(notifier: ["--transport", "smtp", "--smtp-server", "127.0.0.1:\(deadPort)", "--retry-schedule", "100ms", "--smtp-timeout", "1s"])
        defer { system.stopInBackground() }
        let test = DiagnoseTests(system)
        let ann = try await test.createUser("Ann Waiting", "ann@example.com")
        for index in 0..<3 {
            let other = try await test.createUser("Other \(index)", "other\(index)@example.com")
            _ = try await test.call("POST", "/users/\(other)/password-reset")
        }
        _ = try await test.call("POST", "/users/\(ann)/password-reset")
        try await test.waitForMessage(ann, state: "deferred")
        var (codes, report) = try await test.diagnose("ann@example.com")
        try await RekeySystem.eventually {
            (codes, report) = try await test.diagnose("ann@example.com")
            return codes.first == "platform_mail_stalled"
        }
        #expect(codes.first == "platform_mail_stalled", "\(codes)")
        #expect(codes.contains("deferred"))
        let escalation = try #require(report["escalation"] as? String)
        #expect(escalation.contains("Rekey diagnosis dg_"))
        #expect(escalation.contains("127.0.0.1:\(deadPort)"))

        await system.tokens.stop()
        (codes, report) = try await test.diagnose("ann@example.com")
        #expect(codes.first == "platform_service_unreachable", "\(codes)")
        #expect((report["platform"] as? [String: Any])?["unreachable"] as? [String] == ["reset-token"])
        #expect(report["escalation"] as? String != nil)

        // The CLI prints the same, in words.
        let cli = try await RekeyCLI.run(["diagnose", "ann@example.com"], system: system)
        #expect(cli.status == 0, "\(cli.output)")
        #expect(cli.output.contains("NOT ANSWERING: reset-token"))
        #expect(cli.output.contains("Paste into the ticket:"))
    }
}
