import Foundation
import RekeyGateway
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The whole system as ops run it: the three services and the gateway as separate executables on
/// loopback, the notifier writing mail to a maildir; a browser's requests made by hand.
final class RekeySystem: @unchecked Sendable {
    // @unchecked: the processes are only touched by the test that owns this object.
    static let credential = "system-test-credential-0123456789"
    let folder: TemporaryFolder
    let apiKey: String
    var directory: ServiceProcess
    var tokens: ServiceProcess
    var notifier: ServiceProcess
    private let environment: [String: String]
    private let arguments: [String: [String]]
    let gateway: ServiceProcess
    let gatewayPort: Int

    var mailDir: String { self.folder.path + "/mail/new" }
    var base: String { "http://127.0.0.1:\(self.gatewayPort)" }

    /// Extra arguments for the notifier (by default it writes to a maildir), the reset-token
    /// service and the gateway.
    init(
        directory directoryArguments: [String] = [], notifier notifierArguments: [String] = [], tokens tokenArguments: [String] = [],
        gateway gatewayArguments: [String] = [],
        gatewayListen: String = "127.0.0.1:0",
        publicURL: String = "https://sso.example.test"
    ) throws {
        self.folder = try TemporaryFolder()
        let data = self.folder.path
        let bootstrap = Process()
        bootstrap.executableURL = ServiceProcess.productsDirectory.appendingPathComponent("rekey-directory")
        bootstrap.arguments = ["bootstrap-admin", "--data-dir", data, "--email", "owner@example.com", "--name", "Olive Owner"]
        let output = Pipe()
        bootstrap.standardOutput = output
        try bootstrap.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        bootstrap.waitUntilExit()
        self.apiKey = text.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        let environment = [
            "REKEY_DIRECTORY_CREDENTIALS": Self.credential, "REKEY_RESET_TOKEN_CREDENTIALS": Self.credential,
            "REKEY_NOTIFIER_CREDENTIALS": Self.credential, "REKEY_GATEWAY_SERVICE_CREDENTIAL": Self.credential,
        ]
        let common = ["--data-dir", data]
        self.environment = environment
        self.arguments = [
            "rekey-directory": ["serve", "--scrypt-log-n", "10"] + common + directoryArguments,
            "rekey-reset-token": ["serve"] + common + tokenArguments,
            "rekey-notifier": ["serve", "--poll-interval", "50ms", "--mail-dir", data + "/mail"] + common + notifierArguments,
        ]
        let any = ["--listen", "127.0.0.1:0"]
        self.directory = try ServiceProcess("rekey-directory", arguments: self.arguments["rekey-directory"]! + any, environment: environment)
        self.tokens = try ServiceProcess("rekey-reset-token", arguments: self.arguments["rekey-reset-token"]! + any, environment: environment)
        self.notifier = try ServiceProcess("rekey-notifier", arguments: self.arguments["rekey-notifier"]! + any, environment: environment)
        self.gateway = try ServiceProcess(
            "rekey-gateway",
            arguments: [
                "serve", "--listen", gatewayListen, "--public-url", publicURL,
                "--directory", "127.0.0.1:\(self.directory.port)", "--reset-token", "127.0.0.1:\(self.tokens.port)",
                "--notifier", "127.0.0.1:\(self.notifier.port)",
            ] + gatewayArguments,
            environment: environment,
            portPattern: #"http\.port[=":]+\d+"#,
            readyLine: "http server listening"
        )
        self.gatewayPort = self.gateway.port
    }

    /// Starts a stopped service again on the port it had, as ops would.
    func restart(_ executable: String, port: Int) throws -> ServiceProcess {
        try ServiceProcess(executable, arguments: self.arguments[executable]! + ["--listen", "127.0.0.1:\(port)"], environment: self.environment)
    }

    func stop() {
        for process in [self.gateway, self.notifier, self.tokens, self.directory] {
            process.stop()
        }
    }

    /// The newest mail in the maildir, parsed, waiting for it up to 10 s.
    func waitForMail(count: Int) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: self.mailDir)) ?? []).sorted()
            if files.count >= count {
                return try files.map { try String(contentsOfFile: self.mailDir + "/" + $0, encoding: .utf8) }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return []
    }
}

/// A browser's worth of HTTP: no redirects followed, cookies kept by hand.
final class Browser: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    struct Page {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    private lazy var session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpShouldSetCookies = false
        configuration.httpCookieStorage = nil
        return URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }()
    var cookies: [String: String] = [:]
    let base: String

    init(base: String) {
        self.base = base
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    func send(_ method: String, _ path: String, form: [String: String]? = nil, headers: [String: String] = [:], body: Data? = nil) async throws -> Page {
        var request = URLRequest(url: URL(string: self.base + path)!)
        request.httpMethod = method
        if !self.cookies.isEmpty {
            request.setValue(self.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "), forHTTPHeaderField: "Cookie")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let form {
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            request.httpBody = Data(form.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&").utf8)
        } else if let body {
            request.httpBody = body
        }
        let (data, response) = try await self.session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            headers[String(describing: key).lowercased()] = String(describing: value)
        }
        if let setCookie = headers["set-cookie"] {
            for cookie in setCookie.components(separatedBy: ", ") {
                let pair = cookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                if pair.count == 2 { self.cookies[String(pair[0])] = String(pair[1]) } else if pair.count == 1 { self.cookies[String(pair[0])] = nil }
            }
        }
        return Page(status: http.statusCode, headers: headers, body: String(decoding: data, as: UTF8.self))
    }

    /// The CSRF token the last page's form carries.
    static func csrf(in page: Page) -> String {
        guard let range = page.body.range(of: #"name="csrf" value="([^"]+)""#, options: .regularExpression) else { return "" }
        return String(page.body[range].dropFirst(#"name="csrf" value=""#.count).dropLast())
    }
}

extension String {
    /// The reset or verification link in a maildir message (quoted-printable undone).
    func link(_ path: String) -> String? {
        let unfolded = self.replacingOccurrences(of: "=\r\n", with: "").replacingOccurrences(of: "=3D", with: "=")
        guard let range = unfolded.range(of: #"https://sso\.example\.test"# + path + #"\?token=[A-Za-z0-9_-]+"#, options: .regularExpression) else { return nil }
        return String(unfolded[range])
    }
}

@Suite("The gateway and the flows, with every service running", .serialized)
struct GatewayFlowTests {
    func json(_ page: Browser.Page) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any] ?? [:]
    }

    @Test("forgot password → email to the primary address with a link from the public URL → new password → sign in")
    func forgotAndReset() async throws {
        let system = try RekeySystem()
        defer { system.stop() }
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
        let system = try RekeySystem()
        defer { system.stop() }
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
        system.tokens.stop()
        let down = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
        #expect(down.status == 503)
        #expect(try await api.send("GET", "/readyz").status == 503)
        let forgot = try await browser.send("POST", "/password/forgot", form: ["email": "sam@example.com", "csrf": Browser.csrf(in: confirm)])
        #expect(forgot.status == 503)
        #expect(forgot.body.contains("Temporarily unavailable"))
    }
}

@Suite("The rekey CLI, against the running system", .serialized)
struct CLITests {
    static func rekey(
        _ arguments: [String], system: RekeySystem, key: String? = nil, environment: [String: String]? = nil, input: String? = nil
    ) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = ServiceProcess.productsDirectory.appendingPathComponent("rekey")
        process.arguments = arguments
        process.environment = environment ?? ["REKEY_URL": system.base, "REKEY_API_KEY": key ?? system.apiKey, "HOME": system.folder.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let stdin = Pipe()
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try? stdin.fileHandleForWriting.close()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test("create, search, send a reset by email address, follow the message; errors say what is wrong")
    func adminSession() async throws {
        let system = try RekeySystem()
        defer { system.stop() }
        let created = try Self.rekey(["users", "create", "--name", "Jane Doe", "--email", "jane@example.com", "--role", "agent"], system: system)
        #expect(created.status == 0, "\(created.output)")
        let search = try Self.rekey(["users", "search", "ja"], system: system)
        #expect(search.output.contains("Jane Doe  <jane@example.com>  agent"), "\(search.output)")
        let sent = try Self.rekey(["reset", "send", "JANE@example.com"], system: system)
        #expect(sent.status == 0, "\(sent.output)")
        #expect(sent.output.contains("Password reset email queued for j***@example.com"))
        _ = try await system.waitForMail(count: 1)
        try await Task.sleep(for: .milliseconds(200))
        let messages = try Self.rekey(["messages", "jane@example.com"], system: system)
        #expect(messages.output.contains("password_reset  to jane@example.com  accepted"), "\(messages.output)")
        let show = try Self.rekey(["users", "show", "jane@example.com", "--json"], system: system)
        #expect(show.output.contains("\"role\" : \"agent\""), "\(show.output)")

        let unknown = try Self.rekey(["reset", "send", "nobody@example.com"], system: system)
        #expect(unknown.status == 1)
        #expect(unknown.output.contains("no user has that email address (not_found, HTTP 404)"), "\(unknown.output)")
        let badKey = try Self.rekey(["users", "search"], system: system, key: "rk_wrong")
        #expect(badKey.status == 1)
        #expect(badKey.output.contains("the API key is unknown, revoked or expired"))
    }
}

@Suite("rekey login, names and organizations", .serialized)
struct CLILoginTests {
    @Test("login checks and stores the key (0600); later commands use it; search text naming several users lists them and does nothing")
    func login() async throws {
        let system = try RekeySystem()
        defer { system.stop() }
        let environment = ["XDG_CONFIG_HOME": system.folder.path + "/config", "HOME": system.folder.path]
        let bad = try CLITests.rekey(["login", "--gateway", system.base], system: system, environment: environment, input: "rk_not-a-key\n")
        #expect(bad.status == 1)
        #expect(bad.output.contains("log in again with `rekey login --gateway URL`"), "\(bad.output)")
        let good = try CLITests.rekey(["login", "--gateway", system.base], system: system, environment: environment, input: system.apiKey + "\n")
        #expect(good.status == 0, "\(good.output)")
        let stored = system.folder.path + "/config/rekey/login.json"
        let mode = try FileManager.default.attributesOfItem(atPath: stored)[.posixPermissions] as? Int
        #expect(mode == 0o600)

        for (name, email) in [("Pat Jones", "pat.jones@example.com"), ("Pat Smith", "pat.smith@example.com")] {
            let created = try CLITests.rekey(["users", "create", "--name", name, "--email", email], system: system, environment: environment)
            #expect(created.status == 0, "\(created.output)")
        }
        let ambiguous = try CLITests.rekey(["reset", "send", "pat"], system: system, environment: environment)
        #expect(ambiguous.status == 1)
        #expect(ambiguous.output.contains("`pat` matches several users") && ambiguous.output.contains("Pat Jones") && ambiguous.output.contains("Pat Smith"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: system.mailDir)) ?? []).isEmpty, "nothing was sent")
        let updated = try CLITests.rekey(["users", "update", "pat smith", "--role", "agent"], system: system, environment: environment)
        #expect(updated.output.contains("Pat Smith  <pat.smith@example.com>  agent"), "\(updated.output)")
        let org = try CLITests.rekey(["orgs", "create", "--name", "Acme", "--domain", "acme.example"], system: system, environment: environment)
        #expect(org.status == 0, "\(org.output)")
        #expect(try CLITests.rekey(["orgs", "list"], system: system, environment: environment).output.contains("Acme  acme.example"))
        let orgID = try #require(org.output.split(separator: " ").dropFirst().first.map(String.init))
        let renamed = try CLITests.rekey(["orgs", "update", orgID, "--name", "Acme Corp"], system: system, environment: environment)
        #expect(renamed.output.contains("Updated \(orgID)  Acme Corp"), "\(renamed.output)")
        let member = try CLITests.rekey(["users", "update", "pat jones", "--organization", orgID], system: system, environment: environment)
        #expect(member.status == 0, "\(member.output)")
        let refused = try CLITests.rekey(["orgs", "delete", orgID], system: system, environment: environment)
        #expect(refused.status == 1)
        #expect(refused.output.contains("1 user still belong to Acme Corp"), "\(refused.output)")
        _ = try CLITests.rekey(["users", "update", "pat jones", "--organization", ""], system: system, environment: environment)
        #expect(try CLITests.rekey(["orgs", "delete", orgID], system: system, environment: environment).status == 0)
    }
}

@Suite("The gateway under refusal and failure", .serialized)
struct GatewayResilienceTests {
    @Test("failed sign-ins are limited per client address; past the limit even the right password waits")
    func signInLimit() async throws {
        let system = try RekeySystem(directory: ["--sign-in-limit", "3"], gateway: ["--trusted-proxies", "127.0.0.1"])
        defer { system.stop() }
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
        let system = try RekeySystem()
        defer { system.stop() }
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let api = Browser(base: system.base)
        let (_, key) = try await system.staff(name: "Agnes Agent", email: "agnes@example.com", role: "agent")
        _ = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Carl Customer", "email": "carl@example.com", "role": "customer"}"#.utf8))
        let mailsBefore = ((try? FileManager.default.contentsOfDirectory(atPath: system.mailDir)) ?? []).count

        let search = try CLITests.rekey(["users", "search", "--all", "carl"], system: system, key: key)
        #expect(search.status == 0)
        #expect(search.output.contains("Carl Customer"))
        let refused = try CLITests.rekey(["reset", "send", "carl@example.com"], system: system, key: key)
        #expect(refused.status == 1)
        #expect(refused.output.contains("this needs the permission users.manage"), "\(refused.output)")
        try await Task.sleep(for: .milliseconds(300))
        let mails = try await system.waitForMail(count: mailsBefore)
        #expect(!mails.contains { $0.contains("carl@example.com") }, "nothing was sent to Carl")
    }

    @Test("each service stopped in turn: pages answer 503 at once, the CLI names the service; started again, all works without restarting the gateway")
    func servicesStoppedInTurn() async throws {
        let system = try RekeySystem()
        defer { system.stop() }
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
            process.stop()
            let started = ContinuousClock.now
            let page = try await browser.send("POST", "/password/forgot", form: ["email": "tess@example.com", "csrf": csrf])
            #expect(page.status == 503, "\(name): \(page.status)")
            #expect(ContinuousClock.now - started < .seconds(5), "\(name): the page answers quickly")
            #expect(try await api.send("GET", "/readyz").status == 503)
            let cli = try CLITests.rekey(["reset", "send", id], system: system)
            #expect(cli.status == 1)
            #expect(cli.output.contains(name == "rekey-directory" ? "rekey-directory" : name), "\(name): \(cli.output)")

            let restarted = try system.restart(name, port: port)
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

@Suite("A real browser", .serialized)
struct BrowserTests {
    @Test("headless Chromium: sign-on page → Forgot password → mail → new password → signed in (screenshots in .build/test-artifacts/browser)")
    func chromium() async throws {
        let port = try SMTPTestServer.freePort()
        let system = try RekeySystem(gatewayListen: "127.0.0.1:\(port)", publicURL: "http://127.0.0.1:\(port)")
        defer { system.stop() }
        let api = Browser(base: system.base)
        let created = try await api.send("POST", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(system.apiKey)"],
                                         body: Data(#"{"name": "Bri Browser", "email": "bri@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200)
        let shots = SMTPTestServer.root.appendingPathComponent(".build/test-artifacts/browser").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: SMTPTestServer.python)
        process.arguments = [
            SMTPTestServer.root.appendingPathComponent("Tests/Interop/browser_flow.py").path,
            system.base, system.folder.path + "/mail", shots, "bri@example.com", "a browser-made passphrase",
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = try await Task.detached { String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }.value
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        for step in ["1-sign-on", "2-forgot-form", "3-check-your-email", "4-new-password-form", "5-password-changed", "6-signed-in"] {
            #expect(FileManager.default.fileExists(atPath: "\(shots)/\(step).png"), "\(step)")
        }
    }
}
