import Foundation
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

extension RekeySystem {
    static let staffPassword = "a long staff passphrase"

    /// A staff member as one comes to be: created by the owner, their password set through the
    /// reset email, and their first API key made with that password (`POST /api-keys`).
    func staff(name: String, email: String, role: String) async throws -> (id: String, key: String) {
        let api = Browser(base: self.base)
        let auth = ["Authorization": "Bearer \(self.apiKey)", "Content-Type": "application/json"]
        let body = try JSONSerialization.data(withJSONObject: ["name": name, "email": email, "role": role])
        let created = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: body)
        let id = try #require(try Self.object(created)["id"] as? String, "\(created.body)")
        let before = ((try? FileManager.default.contentsOfDirectory(atPath: self.mailDir)) ?? []).count
        let sent = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
        #expect(sent.status == 200, "\(sent.body)")
        let mails = try await self.waitForMail(count: before + 1)
        let link = try #require(mails.compactMap { $0.contains("<\(email)>") ? $0.link("/password/reset") : nil }.last)
        let path = String(link.dropFirst("https://sso.example.test".count))
        let browser = Browser(base: self.base)
        let form = try await browser.send("GET", path)
        let token = String(path.split(separator: "=").last!)
        let changed = try await browser.send("POST", "/password/reset", form: [
            "token": token, "password": Self.staffPassword, "confirm": Self.staffPassword, "csrf": Browser.csrf(in: form),
        ])
        #expect(changed.status == 303, "\(changed.body)")
        let keyBody = try JSONSerialization.data(withJSONObject: ["email": email, "password": Self.staffPassword, "name": "tests"])
        let made = try await api.send("POST", "/api/admin/v1/api-keys", headers: ["Content-Type": "application/json"], body: keyBody)
        let key = try #require(try Self.object(made)["key"] as? String, "\(made.body)")
        return (id, key)
    }

    static func object(_ page: Browser.Page) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any] ?? [:]
    }
}

@Suite("Hardening: bounded input, ranks, limits under concurrency", .serialized, .processSlots)
struct HardeningTests {
    static let attacks = ["-1", "0", "2147483648", "9223372036854775808", "1e309", "abc", ""]

    @Test("rekey diagnose --since with an absurd window: a clear error before anything is sent")
    func cliWindow() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let refused = try await RekeyCLI.run(["diagnose", "owner@example.com", "--since", "99999999999999999d"], system: system)
        #expect(refused.status != 0)
        #expect(refused.output.contains("--since must be a duration"), "\(refused.output)")
        #expect(try await Browser(base: system.base).send("GET", "/healthz").status == 200)
    }

    @Test("an admin cannot take over the owner: each attempt is a 403 saying why, audited; nothing reaches anyone")
    func takeover() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let owner = try #require(try RekeySystem.object(try await api.send("GET", "/api/admin/v1/users/lookup?email=owner@example.com", headers: ["Authorization": "Bearer \(system.apiKey)"]))["user"] as? [String: Any])
        let ownerID = try #require(owner["id"] as? String)
        let admin = try await system.staff(name: "Mallory Admin", email: "mallory@example.com", role: "admin")
        let auth = ["Authorization": "Bearer \(admin.key)", "Content-Type": "application/json"]
        let attempts: [(String, String, String, String)] = [
            ("POST", "/api/admin/v1/users/\(ownerID)/api-keys", #"{"name": "mine now"}"#, "own_keys_only"),
            ("PATCH", "/api/admin/v1/users/\(admin.id)", #"{"role": "owner"}"#, "owner_only"),
            ("POST", "/api/admin/v1/users", #"{"name": "Puppet", "email": "puppet@attacker.example", "role": "admin"}"#, "owner_only"),
            ("POST", "/api/admin/v1/users/\(ownerID)/disable", "", "outranked"),
            ("POST", "/api/admin/v1/users/\(ownerID)/emails", #"{"address": "evil@attacker.example", "verified": true}"#, "outranked"),
            ("POST", "/api/admin/v1/users/\(ownerID)/password-reset", "", "outranked"),
            ("POST", "/api/admin/v1/users/\(ownerID)/verification", "", "outranked"),
        ]
        for (method, path, body, code) in attempts {
            let answer = try await api.send(method, path, headers: auth, body: body.isEmpty ? nil : Data(body.utf8))
            #expect(answer.status == 403, "\(method) \(path) → \(answer.status) \(answer.body)")
            #expect((try RekeySystem.object(answer)["error"] as? [String: String])?["code"] == code, "\(method) \(path) → \(answer.body)")
        }
        // Below the admin, addresses they add stay unverified and cannot become primary.
        let agent = try await system.staff(name: "Agnes Agent", email: "agnes@example.com", role: "agent")
        let verified = try await api.send("POST", "/api/admin/v1/users/\(agent.id)/emails", headers: auth, body: Data(#"{"address": "agnes@attacker.example", "verified": true}"#.utf8))
        #expect(verified.status == 403)
        #expect((try RekeySystem.object(verified)["error"] as? [String: String])?["code"] == "unverified_until_confirmed")
        let added = try RekeySystem.object(try await api.send("POST", "/api/admin/v1/users/\(agent.id)/emails", headers: auth, body: Data(#"{"address": "agnes@attacker.example"}"#.utf8)))
        let emailID = try #require((added["emails"] as? [[String: Any]])?.first { $0["address"] as? String == "agnes@attacker.example" }?["id"] as? String)
        let primary = try await api.send("POST", "/api/admin/v1/users/\(agent.id)/emails/\(emailID)/primary", headers: auth)
        #expect(primary.status == 409, "\(primary.body)")
        // Once its owner confirms it, it may become primary, and the previous address hears of it.
        let before = ((try? FileManager.default.contentsOfDirectory(atPath: system.mailDir)) ?? []).count
        let verification = try await api.send("POST", "/api/admin/v1/users/\(agent.id)/verification", headers: auth, body: Data(#"{"email_id": "\#(emailID)"}"#.utf8))
        #expect(verification.status == 200, "\(verification.body)")
        let link = try #require(try await system.waitForMail(count: before + 1).compactMap { $0.contains("agnes@attacker.example") ? $0.link("/email/verify") : nil }.last)
        let confirmer = Browser(base: system.base)
        let confirmForm = try await confirmer.send("GET", String(link.dropFirst("https://sso.example.test".count)))
        let confirmed = try await confirmer.send("POST", "/email/verify", form: ["token": String(link.split(separator: "=").last!), "csrf": Browser.csrf(in: confirmForm)])
        #expect(confirmed.status == 200)
        let moved = try await api.send("POST", "/api/admin/v1/users/\(agent.id)/emails/\(emailID)/primary", headers: auth)
        #expect(moved.status == 200, "\(moved.body)")
        let notices = try await system.waitForMail(count: before + 2)
        let notice = try #require(notices.first { $0.contains("To: \"Agnes Agent\" <agnes@example.com>") && $0.contains("email address was changed") })
        #expect(notice.contains("a***@attacker.example"))
        #expect(notice.contains("Mallory Admin (admin)"))
        #expect(!notice.contains("agnes@attacker.example"), "the new address is masked")

        // Disabling revokes the agent's key for good.
        #expect(try await api.send("GET", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(agent.key)"]).status == 200)
        #expect(try await api.send("POST", "/api/admin/v1/users/\(agent.id)/disable", headers: auth).status == 200)
        #expect(try await api.send("POST", "/api/admin/v1/users/\(agent.id)/enable", headers: auth).status == 200)
        #expect(try await api.send("GET", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(agent.key)"]).status == 401)

        let trail = try RekeySystem.object(try await api.send("GET", "/api/admin/v1/audit?target=\(ownerID)", headers: auth))
        let actions = Set((trail["records"] as? [[String: Any]] ?? []).compactMap { $0["action"] as? String })
        #expect(actions.isSuperset(of: ["refused.api_key.create", "refused.user.disable", "refused.email.add", "refused.password_reset.send", "refused.verification.send"]), "\(actions)")
        // An address that looks like the owner's to a person: allowed, and the admin is told.
        let lookAlike = try await RekeyCLI.run(["users", "create", "--name", "Olive 0wner", "--email", "\u{043E}wner@example.com"], system: system)
        #expect(lookAlike.status == 0, "\(lookAlike.output)")
        #expect(lookAlike.output.contains("Warning: \u{043E}wner@example.com looks like owner@example.com, the address of Olive Owner"), "\(lookAlike.output)")
        let mails = try await system.waitForMail(count: 1)
        #expect(!mails.contains { $0.contains("owner@example.com") || $0.contains("evil@attacker.example") }, "nothing went to the owner or the attacker's address")
        let ownerNow = try RekeySystem.object(try await api.send("GET", "/api/admin/v1/users/\(ownerID)", headers: auth))
        #expect((ownerNow["emails"] as? [[String: Any]])?.count == 1)
        #expect(ownerNow["state"] as? String == "active")
    }

    @Test("100 parallel wrong sign-ins from one address: exactly the limit get a password check; 60 from 60 addresses against one account: exactly the free attempts")
    func signInBursts() async throws {
        // A share of the hashing pool as large as the burst, so that the count shows the limits alone.
        let system = try await RekeySystem.start(directory: ["--sign-in-account-delay", "1h", "--hashing-share", "100"], gateway: ["--trusted-proxies", "127.0.0.1"])
        defer { system.stopInBackground() }
        let csrfPage = try await Browser(base: system.base).send("GET", "/")
        let csrf = Browser.csrf(in: csrfPage)
        let cookie = csrfPage.headers["set-cookie"].map { String($0.split(separator: ";")[0]) } ?? ""
        func burst(_ count: Int, address: (Int) -> String, email: (Int) -> String) async throws -> [Int: Int] {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<count {
                    let (from, to) = (address(index), email(index))
                    group.addTask {
                        let browser = Browser(base: system.base)
                        return try await browser.send("POST", "/signin", form: ["email": to, "password": "not the password, sorry", "csrf": csrf],
                                                      headers: ["X-Forwarded-For": from, "Cookie": cookie]).status
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1, default: 0] += 1 }
            }
        }
        let fromOne = try await burst(100, address: { _ in "198.51.100.77" }, email: { "user\($0)@example.com" })
        #expect(fromOne == [401: 20, 429: 80], "\(fromOne)")
        let atOne = try await burst(60, address: { "203.0.113.\($0 + 1)" }, email: { _ in "owner@example.com" })
        #expect(atOne == [401: 5, 429: 55], "\(atOne)")
    }

    @Test("CSRF: a self-made cookie and field pair is refused, and so is a cross-site post even with the real pair; cookies carry __Host- on https")
    func csrf() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let page = try await Browser(base: system.base).send("GET", "/password/forgot")
        let setCookie = try #require(page.headers["set-cookie"])
        #expect(setCookie.hasPrefix("__Host-rekey_csrf="), "\(setCookie)")
        #expect(setCookie.contains("Secure") && setCookie.contains("Path=/") && !setCookie.contains("Domain"), "\(setCookie)")
        let cookie = String(setCookie.split(separator: ";")[0])
        let csrf = Browser.csrf(in: page)
        let made = String(repeating: "A", count: 43) + "." + String(repeating: "B", count: 43)
        let forged = try await Browser(base: system.base).send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": made],
                                                               headers: ["Cookie": "__Host-rekey_csrf=\(made)"])
        #expect(forged.status == 403, "a pair the server did not sign is refused")
        let plain = try await Browser(base: system.base).send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf], headers: ["Cookie": cookie])
        #expect(plain.status == 200)
        for headers in [["Origin": "https://evil.example"], ["Sec-Fetch-Site": "cross-site"], ["Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"]] {
            let crossSite = try await Browser(base: system.base).send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf],
                                                                      headers: headers.merging(["Cookie": cookie]) { $1 })
            #expect(crossSite.status == 403, "\(headers)")
        }
        let sameOrigin = try await Browser(base: system.base).send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf],
                                                                   headers: ["Cookie": cookie, "Origin": system.base, "Sec-Fetch-Site": "same-origin"])
        #expect(sameOrigin.status == 200)
        let noReferrer = try await Browser(base: system.base).send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf],
                                                                   headers: ["Cookie": cookie, "Origin": "null", "Sec-Fetch-Site": "same-origin"])
        #expect(noReferrer.status == 200, "what a browser sends from a no-referrer page")
    }

    @Test("a client sending its request headers a byte at a time is disconnected at the header timeout while others are served")
    func slowHeaders() async throws {
        let system = try await RekeySystem.start(gateway: ["--header-timeout", "500ms"])
        defer { system.stopInBackground() }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(socket >= 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(system.gatewayPort).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        func send(_ text: String) -> Bool {
            text.withCString { Glibc.send(socket, $0, strlen($0), Int32(MSG_NOSIGNAL)) } >= 0
        }
        func closedByServer() -> Bool {
            var byte: UInt8 = 0
            return recv(socket, &byte, 1, Int32(MSG_DONTWAIT)) == 0
        }
        #expect(send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
        // 200 header bytes at one per 50 ms would take 10 s.
        var sent = 0
        while sent < 200, !closedByServer(), send("X") {
            sent += 1
            #expect(try await Browser(base: system.base).send("GET", "/healthz").status == 200, "others are served meanwhile")
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(sent < 200, "the server closed the connection before the headers could finish")
    }

    @Test("the forgot-password answer never waits for the flow: with a notifier that accepts and never answers, a known account gets the same page as an unknown one, at the floor")
    func forgotNeverWaits() async throws {
        // A listening socket nobody accepts from: connections open, calls are never answered.
        let hole = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(hole) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(hole, $0, length) } }
        #expect(listen(hole, 64) == 0)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(hole, $0, &length) } }
        let holePort = Int(UInt16(bigEndian: address.sin_port))

        let system = try await RekeySystem.start(gateway: ["--notifier", "127.0.0.1:\(holePort)", "--forgot-min-duration", "200ms"])
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let created = try await api.send("POST", "/api/admin/v1/users", headers: ["Authorization": "Bearer \(system.apiKey)"],
                                         body: Data(#"{"name": "Kim Known", "email": "kim@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200)
        let browser = Browser(base: system.base)
        let csrf = Browser.csrf(in: try await browser.send("GET", "/password/forgot"))
        let known = try await browser.send("POST", "/password/forgot", form: ["email": "kim@example.com", "csrf": csrf])
        let unknown = try await browser.send("POST", "/password/forgot", form: ["email": "nobody@example.com", "csrf": csrf])
        #expect(known.status == 200, "the answer did not wait for the notifier's deadline")
        #expect(known.status == unknown.status && known.body == unknown.body)
    }

    @Test("150 parallel sign-ins from 5 addresses cannot crowd out a sixth: its correct sign-in succeeds; the excess is refused at once with 429")
    func hashingFairness() async throws {
        let system = try await RekeySystem.start(directory: ["--hashing-threads", "1", "--hashing-share", "1"], gateway: ["--trusted-proxies", "127.0.0.1"])
        defer { system.stopInBackground() }
        let staff = try await system.staff(name: "Fay Fair", email: "fay@example.com", role: "agent")
        _ = staff
        let page = try await Browser(base: system.base).send("GET", "/")
        let csrf = Browser.csrf(in: page)
        let cookie = page.headers["set-cookie"].map { String($0.split(separator: ";")[0]) } ?? ""
        let (statuses, good) = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for index in 0..<150 {
                group.addTask {
                    let status = try await Browser(base: system.base).send("POST", "/signin", form: [
                        "email": "nobody\(index)@example.com", "password": "not the password, sorry", "csrf": csrf,
                    ], headers: ["X-Forwarded-For": "198.51.100.\(index % 5 + 1)", "Cookie": cookie]).status
                    return (status, false)
                }
            }
            group.addTask {
                let status = try await Browser(base: system.base).send("POST", "/signin", form: [
                    "email": "fay@example.com", "password": RekeySystem.staffPassword, "csrf": csrf,
                ], headers: ["X-Forwarded-For": "203.0.113.99", "Cookie": cookie]).status
                return (status, true)
            }
            var statuses: [Int: Int] = [:]
            var good = 0
            for try await (status, isGood) in group {
                if isGood { good = status } else { statuses[status, default: 0] += 1 }
            }
            return (statuses, good)
        }
        #expect(good == 303, "the sixth address signs in")
        #expect(Set(statuses.keys).isSubset(of: [401, 429]), "\(statuses)")
        #expect(statuses[503] == nil)
    }

    static func csv(rows: Int, prefix: String, badLine: Int? = nil) -> Data {
        var text = "name,email,role\n"
        text.reserveCapacity(rows * 50)
        for index in 0..<rows {
            // Line numbers count the header as line 1.
            let email = index + 2 == badLine ? "not-an-address" : "\(prefix)\(index)@import.example"
            text += "Person \(index),\(email),customer\n"
        }
        return Data(text.utf8)
    }

    @Test("the CLI imports 25,000 rows, past one RPC frame, through the real executables (the import rules: AdminRouteTests.largeImports, in-process)")
    func importThroughTheCLI() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let path = system.folder.path + "/twenty-five-thousand.csv"
        let file = Self.csv(rows: 25_000, prefix: "d")
        #expect(file.count > 1 << 20, "more than one frame")
        try file.write(to: URL(fileURLWithPath: path))
        let cli = try await RekeyCLI.run(["users", "import", path], system: system)
        #expect(cli.status == 0, "\(cli.output.prefix(500))")
        #expect(cli.output.contains("Created 25000 users; 0 rows refused."), "\(cli.output.prefix(500))")
    }

    @Test("two live reset links of one user, used 100 times in parallel: exactly one password change, and it is the password that works")
    func twoLinks() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let user = try RekeySystem.object(try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Rita Race", "email": "rita@example.com", "role": "customer"}"#.utf8)))
        let id = try #require(user["id"] as? String)
        _ = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
        _ = try await api.send("POST", "/api/admin/v1/users/\(id)/password-reset", headers: auth)
        let links = try await system.waitForMail(count: 2).compactMap { $0.link("/password/reset") }
        #expect(links.count == 2)
        let tokens = links.map { String($0.split(separator: "=").last!) }
        let page = try await Browser(base: system.base).send("GET", String(links[0].dropFirst("https://sso.example.test".count)))
        let csrf = Browser.csrf(in: page)
        let cookie = page.headers["set-cookie"].map { String($0.split(separator: ";")[0]) } ?? ""
        let passwords = ["the first new passphrase", "the second new passphrase"]
        let outcomes = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for index in 0..<100 {
                let which = index % 2
                group.addTask {
                    let status = try await Browser(base: system.base).send("POST", "/password/reset", form: [
                        "token": tokens[which], "password": passwords[which], "confirm": passwords[which], "csrf": csrf,
                    ], headers: ["Cookie": cookie]).status
                    return (which, status)
                }
            }
            return try await group.reduce(into: [(Int, Int)]()) { $0.append($1) }
        }
        let winners = outcomes.filter { $0.1 == 303 }
        #expect(winners.count == 1, "\(outcomes.map(\.1))")
        let winner = try #require(winners.first).0
        let browser = Browser(base: system.base)
        let signIn = try await browser.send("POST", "/signin", form: ["email": "rita@example.com", "password": passwords[winner], "csrf": csrf], headers: ["Cookie": cookie])
        #expect(signIn.status == 303, "the password of the one success works")
    }
}
