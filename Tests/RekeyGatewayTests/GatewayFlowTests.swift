import Foundation
import RekeyGateway
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("The gateway and the flows, with every service running", .serialized, .processSlots)
struct GatewayFlowTests {
    func json(_ page: Browser.Page) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any] ?? [:]
    }

    @Test("forgot password → email to the primary address with a link from the public URL → new password → sign in")
    func forgotAndReset() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let admin = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let created = try await admin.send("POST", "/api/admin/v1/users", headers: auth,
                                           body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200, "\(created.body)")

        let browser = Browser(base: system.base)
        #expect(try await browser.send("GET", "/healthz").status == 200)
        #expect(try await browser.send("GET", "/readyz").status == 200)
        let home = try await browser.send("GET", "/")
        #expect(home.body.contains("href=\"/password/forgot\""))
        #expect(home.headers["x-frame-options"] == "DENY")
        let forgotPage = try await browser.send("GET", "/password/forgot")
        let csrf = Browser.csrf(in: forgotPage)
        #expect(!csrf.isEmpty)

        let refused = try await browser.send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": "forged"])
        #expect(refused.status == 403, "a form without the right CSRF token is refused")

        let unknown = try await browser.send("POST", "/password/forgot", form: ["email": "nobody@example.com", "csrf": csrf])
        let known = try await browser.send("POST", "/password/forgot", form: ["email": "JANE@example.com", "csrf": csrf], headers: ["Host": "evil.example"])
        #expect(known.status == 200)
        #expect(unknown.status == known.status)
        #expect(unknown.body == known.body, "the answer does not tell whether the account exists")

        let mails = try await system.waitForMail(count: 1)
        #expect(mails.count == 1)
        let mail = try #require(mails.first)
        #expect(mail.contains("To: \"Jane Doe\" <jane@example.com>"))
        let link = try #require(mail.link("/password/reset"), "the link is built from the public URL, not the Host header")
        let path = String(link.dropFirst("https://sso.example.test".count))

        let form = try await browser.send("GET", path)
        #expect(form.status == 200)
        #expect(form.headers["referrer-policy"] == "no-referrer")
        #expect(form.headers["cache-control"] == "no-store")
        let token = String(path.split(separator: "=").last!)
        let weak = try await browser.send("POST", "/password/reset", form: ["token": token, "password": "1QAZ2wsx3edc", "confirm": "1QAZ2wsx3edc", "csrf": csrf])
        #expect(weak.status == 422)
        #expect(weak.body.contains("most common"))
        #expect(try await browser.send("GET", path).status == 200, "a refused password does not spend the token")

        let changed = try await browser.send("POST", "/password/reset", form: ["token": token, "password": "a long and new passphrase", "confirm": "a long and new passphrase", "csrf": csrf])
        #expect(changed.status == 303)
        #expect(changed.headers["location"] == "/?done=changed")
        #expect(try await browser.send("GET", path).status == 410, "the link works once")
        let notice = try await system.waitForMail(count: 2)
        #expect(notice.last?.contains("Your password was changed") == true)

        let wrong = try await browser.send("POST", "/signin", form: ["email": "jane@example.com", "password": "not the password at all", "csrf": csrf])
        #expect(wrong.status == 401)
        let signedIn = try await browser.send("POST", "/signin", form: ["email": "jane@example.com", "password": "a long and new passphrase", "csrf": csrf])
        #expect(signedIn.status == 303)
        let welcome = try await browser.send("GET", "/")
        #expect(welcome.body.contains("signed in as <strong>Jane Doe</strong>"))
    }

    @Test("an admin sends a reset and a verification email; the API checks the key and the permission")
    func adminSends() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        #expect(try await api.send("GET", "/api/admin/v1/users/search?q=ol").status == 401)
        let bad = try await api.send("GET", "/api/admin/v1/users/search?q=ol", headers: ["Authorization": "Bearer rk_nope"])
        #expect(bad.status == 401)
        #expect(try self.json(bad)["error"] as? [String: String] == ["code": "unauthenticated", "message": "the API key is unknown, revoked or expired"])

        let user = try self.json(try await api.send("POST", "/api/admin/v1/users", headers: auth,
                                                    body: Data(#"{"name": "Sam Smith", "email": "sam@example.com", "role": "customer"}"#.utf8)))
        let id = try #require(user["id"] as? String)
        let staff = try self.json(try await api.send("GET", "/api/admin/v1/users/search?q=ol", headers: auth))
        #expect((staff["users"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["Olive Owner"])
        let everyone = try self.json(try await api.send("GET", "/api/admin/v1/users/search?q=s&scope=all", headers: auth))
        #expect((everyone["users"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["Sam Smith"])

        let sent = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
        #expect(sent.status == 200, "\(sent.body)")
        let answer = try self.json(sent)
        #expect(answer["sent_to"] as? String == "s***@example.com")
        #expect((answer["message_id"] as? String)?.hasPrefix("m_") == true)
        let verification = try self.json(try await api.send("POST", "/api/admin/v1/users/\(id)/verification", headers: auth))
        #expect(verification["status"] as? String == "queued")
        let mails = try await system.waitForMail(count: 2)
        let link = try #require(mails.compactMap { $0.link("/email/verify") }.first)
        let browser = Browser(base: system.base)
        let confirm = try await browser.send("GET", String(link.dropFirst("https://sso.example.test".count)))
        #expect(confirm.status == 200)
        let token = String(link.split(separator: "=").last!)
        let done = try await browser.send("POST", "/email/verify", form: ["token": token, "csrf": Browser.csrf(in: confirm)])
        #expect(done.status == 200)
        let shown = try self.json(try await api.send("GET", "/api/admin/v1/users/\(id)", headers: auth))
        #expect((shown["emails"] as? [[String: Any]])?.first?["verified"] as? Bool == true)

        let history = try self.json(try await api.send("GET", "/api/admin/v1/users/\(id)/messages", headers: auth))
        let messages = try #require(history["messages"] as? [[String: Any]])
        #expect(messages.count == 2)
        #expect(messages.allSatisfy { $0["state"] as? String == "accepted" && $0["requested_by"] as? String != "" })

        // A service that is down: a clear 503, never a hang.
        await system.tokens.stop()
        let down = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
        #expect(down.status == 503)
        #expect(try await api.send("GET", "/readyz").status == 503)
        let forgot = try await browser.send("POST", "/password/forgot", form: ["email": "sam@example.com", "csrf": Browser.csrf(in: confirm)])
        #expect(forgot.status == 503)
        #expect(forgot.body.contains("Temporarily unavailable"))
    }
}

@Suite("The rekey CLI, against the running system", .serialized, .processSlots)
struct CLITests {
    @Test("create, search, send a reset by email address, follow the message; errors say what is wrong")
    func adminSession() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let created = try await RekeyCLI.run(["users", "create", "--name", "Jane Doe", "--email", "jane@example.com", "--role", "agent"], system: system)
        #expect(created.status == 0, "\(created.output)")
        let search = try await RekeyCLI.run(["users", "search", "ja"], system: system)
        #expect(search.output.contains("Jane Doe  <jane@example.com>  agent"), "\(search.output)")
        let sent = try await RekeyCLI.run(["reset", "send", "JANE@example.com"], system: system)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(sent.output.contains("Password reset email queued for j***@example.com"))
        var messages = (status: Int32(0), output: "")
        let accepted = try await RekeySystem.eventually {
            messages = try await RekeyCLI.run(["messages", "jane@example.com"], system: system)
            return messages.output.contains("password_reset  to jane@example.com  accepted")
        }
        #expect(accepted, "\(messages.output)")
        let show = try await RekeyCLI.run(["users", "show", "jane@example.com", "--json"], system: system)
        #expect(show.output.contains("\"role\" : \"agent\""), "\(show.output)")

        let unknown = try await RekeyCLI.run(["reset", "send", "nobody@example.com"], system: system)
        #expect(unknown.status == 1)
        #expect(unknown.output.contains("no user has that email address (not_found, HTTP 404)"), "\(unknown.output)")
        let badKey = try await RekeyCLI.run(["users", "search"], system: system, key: "rk_wrong")
        #expect(badKey.status == 1)
        #expect(badKey.output.contains("the API key is unknown, revoked or expired"))
    }
}

@Suite("rekey login, names and organizations", .serialized, .processSlots)
struct CLILoginTests {
    @Test("login checks and stores the key (0600); later commands use it; search text naming several users lists them and does nothing")
    func login() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let environment = ["XDG_CONFIG_HOME": system.folder.path + "/config", "HOME": system.folder.path]
        let bad = try await RekeyCLI.run(["login", "--gateway", system.base], system: system, environment: environment, input: "rk_not-a-key\n")
        #expect(bad.status == 1)
        #expect(bad.output.contains("log in again with `rekey login --gateway URL`"), "\(bad.output)")
        let good = try await RekeyCLI.run(["login", "--gateway", system.base], system: system, environment: environment, input: system.apiKey + "\n")
        #expect(good.status == 0, "\(good.output)")
        let stored = system.folder.path + "/config/rekey/login.json"
        let mode = try FileManager.default.attributesOfItem(atPath: stored)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        for (name, email) in [("Pat Jones", "pat.jones@example.com"), ("Pat Smith", "pat.smith@example.com")] {
            let created = try await RekeyCLI.run(["users", "create", "--name", name, "--email", email], system: system, environment: environment)
            #expect(created.status == 0, "\(created.output)")
        }
        let ambiguous = try await RekeyCLI.run(["reset", "send", "pat"], system: system, environment: environment)
        #expect(ambiguous.status == 1)
        #expect(ambiguous.output.contains("`pat` matches several users") && ambiguous.output.contains("Pat Jones") && ambiguous.output.contains("Pat Smith"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: system.mailDir)) ?? []).isEmpty, "nothing was sent")
        let updated = try await RekeyCLI.run(["users", "update", "pat smith", "--role", "agent"], system: system, environment: environment)
        #expect(updated.output.contains("Pat Smith  <pat.smith@example.com>  agent"), "\(updated.output)")
        let org = try await RekeyCLI.run(["orgs", "create", "--name", "Acme", "--domain", "acme.example"], system: system, environment: environment)
        #expect(org.status == 0, "\(org.output)")
        #expect(try await RekeyCLI.run(["orgs", "list"], system: system, environment: environment).output.contains("Acme  acme.example"))
        let orgID = try #require(org.output.split(separator: " ").dropFirst().first.map(String.init))
        let renamed = try await RekeyCLI.run(["orgs", "update", orgID, "--name", "Acme Corp"], system: system, environment: environment)
        #expect(renamed.output.contains("Updated \(orgID)  Acme Corp"), "\(renamed.output)")
        let member = try await RekeyCLI.run(["users", "update", "pat jones", "--organization", orgID], system: system, environment: environment)
        #expect(member.status == 0, "\(member.output)")
        let refused = try await RekeyCLI.run(["orgs", "delete", orgID], system: system, environment: environment)
        #expect(refused.status == 1)
        #expect(refused.output.contains("1 user still belong to Acme Corp"), "\(refused.output)")
        _ = try await RekeyCLI.run(["users", "update", "pat jones", "--organization", ""], system: system, environment: environment)
        #expect(try await RekeyCLI.run(["orgs", "delete", orgID], system: system, environment: environment).status == 0)
    }
}

@Suite("The gateway under refusal and failure", .serialized, .processSlots)
struct GatewayResilienceTests {
    @Test("failed sign-ins are limited per client address; past the limit even the right password waits")
    func signInLimit() async throws {
        let system = try await RekeySystem.start(directory: ["--sign-in-limit", "3"], gateway: ["--trusted-proxies", "127.0.0.1"])
        defer { system.stopInBackground() }
        let admin = Browser(base: system.base)
        _ = try await admin.send("POST", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(system.apiKey)"],
                                 body: Data(#"{"name": "Lee Limit", "email": "lee@example.com", "role": "customer"}"#.utf8))
        let browser = Browser(base: system.base)
        let csrf = Browser.csrf(in: try await browser.send("GET", "/"))
        for _ in 0..<3 {
            let wrong = try await browser.send("POST", "/signin", form: ["email": "lee@example.com", "password": "not it at all, sorry", "csrf": csrf],
                                               headers: ["X-Forwarded-For": "198.51.100.20"])
            #expect(wrong.status == 401)
        }
        let limited = try await browser.send("POST", "/signin", form: ["email": "owner@example.com", "password": "whatever it is now", "csrf": csrf],
                                             headers: ["X-Forwarded-For": "198.51.100.20"])
        #expect(limited.status == 429)
        #expect(limited.body.contains("Too many attempts"))
        #expect(limited.headers["retry-after"] != nil)
        let elsewhere = try await browser.send("POST", "/signin", form: ["email": "lee@example.com", "password": "not it at all, sorry", "csrf": csrf],
                                               headers: ["X-Forwarded-For": "203.0.113.50"])
        #expect(elsewhere.status == 401, "another address is not limited")
    }

    @Test("an agent without users.manage can search but not send a reset; nothing is sent")
    func agentRefused() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let api = Browser(base: system.base)
        let (_, key) = try await system.staff(name: "Agnes Agent", email: "agnes@example.com", role: "agent")
        _ = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Carl Customer", "email": "carl@example.com", "role": "customer"}"#.utf8))
        let mailsBefore = ((try? FileManager.default.contentsOfDirectory(atPath: system.mailDir)) ?? []).count

        let search = try await RekeyCLI.run(["users", "search", "--all", "carl"], system: system, key: key)
        #expect(search.status == 0)
        #expect(search.output.contains("Carl Customer"))
        let refused = try await RekeyCLI.run(["reset", "send", "carl@example.com"], system: system, key: key)
        #expect(refused.status == 1)
        #expect(refused.output.contains("this needs the permission users.manage"), "\(refused.output)")
        // The refusal comes before anything is queued, so there is nothing to wait for.
        let mails = try await system.waitForMail(count: mailsBefore)
        #expect(!mails.contains { $0.contains("carl@example.com") }, "nothing was sent to Carl")
    }

    @Test("each service stopped in turn: pages answer 503 at once, the CLI names the service; started again, all works without restarting the gateway")
    func servicesStoppedInTurn() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let user = try JSONSerialization.jsonObject(with: Data(try await api.send("POST", "/api/admin/v1/users", headers: auth,
            body: Data(#"{"name": "Tess Turn", "email": "tess@example.com", "role": "customer"}"#.utf8)).body.utf8)) as? [String: Any]
        let id = try #require(user?["id"] as? String)
        let browser = Browser(base: system.base)
        let csrf = Browser.csrf(in: try await browser.send("GET", "/password/forgot"))

        for (name, keyPath) in [("rekey-directory", \RekeySystem.directory), ("rekey-reset-token", \RekeySystem.tokens), ("rekey-notifier", \RekeySystem.notifier)] {
            let process = system[keyPath: keyPath]
            let port = process.port
            _ = try await offPool { process.stop() }
            let started = ContinuousClock.now
            let page = try await browser.send("POST", "/password/forgot", form: ["email": "tess@example.com", "csrf": csrf])
            #expect(page.status == 503, "\(name): \(page.status)")
            // Not after the 10 s call deadline: a refused connection is known at once (the margin
            // is for a loaded test machine).
            #expect(ContinuousClock.now - started < .seconds(9), "\(name): the page answers without waiting for the deadline")
            #expect(try await api.send("GET", "/readyz").status == 503)
            let cli = try await RekeyCLI.run(["reset", "send", id], system: system)
            #expect(cli.status == 1)
            #expect(cli.output.contains(name == "rekey-directory" ? "rekey-directory" : name), "\(name): \(cli.output)")

            let restarted = try await offPool { try system.restart(name, port: port) }
            switch name {
            case "rekey-directory": system.directory = restarted
            case "rekey-reset-token": system.tokens = restarted
            default: system.notifier = restarted
            }
            var ready = false
            for _ in 0..<100 where !ready {
                ready = try await api.send("GET", "/readyz").status == 200
                if !ready { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(ready, "\(name): ready again")
            let sent = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
            #expect(sent.status == 200, "\(name): \(sent.body)")
        }
        #expect(try await system.waitForMail(count: 3).count == 3)
    }
}

@Suite("A real browser", .serialized, .processSlots)
struct BrowserTests {
    @Test("headless Chromium: sign-on page → Forgot password → mail → new password → signed in (screenshots in .build/test-artifacts/browser)")
    func chromium() async throws {
        let port = try await SMTPTestServer.freePort()
        let system = try await RekeySystem.start(gatewayListen: "127.0.0.1:\(port)", publicURL: "http://127.0.0.1:\(port)")
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let created = try await api.send("POST", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(system.apiKey)"],
                                         body: Data(#"{"name": "Bri Browser", "email": "bri@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200)
        let shots = SMTPTestServer.root.appendingPathComponent(".build/test-artifacts/browser").path
        let (status, text) = try await Self.run(SMTPTestServer.python, [
            SMTPTestServer.root.appendingPathComponent("Tests/Interop/browser_flow.py").path,
            system.base, system.folder.path + "/mail", shots, "bri@example.com", "a browser-made passphrase",
        ])
        #expect(status == 0, "\(text)")
        for step in ["1-sign-on", "2-forgot-form", "3-check-your-email", "4-new-password-form", "5-password-changed", "6-signed-in"] {
            #expect(FileManager.default.fileExists(atPath: "\(shots)/\(step).png"), "\(step)")
        }
    }

    @Test("headless Chromium in the admin console: type 'ja', open Jane, send the reset email, watch it become delivered, diagnosis; suppression removed then resend; read-only agent refused; no page scrolls sideways or fails axe-core (screenshots at 375 and 1440 px in .build/test-artifacts/console)")
    func console() async throws {
        let port = try await SMTPTestServer.freePort()
        let system = try await RekeySystem.start(gatewayListen: "127.0.0.1:\(port)", publicURL: "http://127.0.0.1:\(port)")
        defer { system.stopInBackground() }
        try await offPool { try system.createRole("helpdesk", permissions: ["users.manage"]) }
        let api = Browser(base: system.base)
        for (name, email, role) in [
            ("Hana Helpdesk", "hana@example.com", "helpdesk"), ("Andy Agent", "andy@example.com", "agent"),
            ("Jane Doe", "jane@example.com", "collaborator"), ("Jamal Jones", "jamal@example.net", "customer"), ("Zed Zimmer", "zed@example.org", "customer"),
        ] {
            let created = try await api.send(
                "POST", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(system.apiKey)"],
                body: Data(#"{"name": "\#(name)", "email": "\#(email)", "role": "\#(role)"}"#.utf8)
            )
            #expect(created.status == 200, "\(name): \(created.body)")
        }
        let shots = SMTPTestServer.root.appendingPathComponent(".build/test-artifacts/console").path
        // Debian's Python and Selenium, with axe-core for the accessibility check (scripts/install-deps.sh).
        let python = SMTPTestServer.root.appendingPathComponent(".build/test-venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python), "the test venv is missing: run `make deps`")
        let (status, text) = try await Self.run(python, [
            SMTPTestServer.root.appendingPathComponent("Tests/Interop/console_flow.py").path,
            system.base, system.folder.path + "/mail", shots, system.folder.path + "/notifier.sqlite",
        ])
        #expect(status == 0, "\(text)")
        for page in ["directory", "search", "user-after-send", "suppressions", "users", "health", "audit", "organizations", "sign-on"] {
            for width in [375, 1440] {
                #expect(FileManager.default.fileExists(atPath: "\(shots)/\(page)-\(width).png"), "\(page) at \(width) px")
            }
        }
    }

    /// Runs a browser script to its end: its exit status and everything it printed.
    static func run(_ executable: String, _ arguments: [String]) async throws -> (Int32, String) {
        // Chromium runs for many seconds: waited for off the concurrency pool (a detached task
        // would still hold one of its threads), which the in-process tests beside it need.
        try await runProgram(executable, arguments)
    }
}
