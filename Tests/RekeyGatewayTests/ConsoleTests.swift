import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import RekeyAdminModel
import RekeyDirectoryService
import RekeyGatewayTesting
import RekeyNotifierService
import RekeySQLite
import Testing

@testable import RekeyGateway

/// The admin console's pages and forms over the in-process system, with each role: owner,
/// admin, an agent whose role has users.manage (helpdesk), an agent without it, a collaborator,
/// a customer, and nobody signed in.
@Suite("Admin console, in-process")
struct ConsoleTests {
    /// The system with one user of each role signed in, and Jane (a customer) to act on.
    struct World {
        let system: InProcessSystem
        /// Session cookie values by role name.
        let sessions: [String: String]
        let ids: [String: String]
        let jane: String

        static func make() async throws -> World {
            let system = try await InProcessSystem()
            try await system.role("helpdesk", permissions: ["users.manage"])
            var sessions = ["owner": try await system.session(system.ownerID)]
            var ids = ["owner": system.ownerID]
            for (role, name) in [("admin", "Ada Admin"), ("helpdesk", "Hal Helpdesk"), ("agent", "Andy Agent"), ("collaborator", "Cora Collaborator"), ("customer", "Carl Customer")] {
                let user = try await system.staff(name, role: role, email: "\(role)@example.com")
                sessions[role] = try await system.session(user.id)
                ids[role] = user.id
            }
            let jane = try await system.staff("Jane Doe", role: "customer", email: "jane@example.com")
            return World(system: system, sessions: sessions, ids: ids, jane: jane.id)
        }

        static let staffRoles = ["owner", "admin", "helpdesk", "agent", "collaborator"]
        static let managers: Set<String> = ["owner", "admin", "helpdesk"]
    }

    /// A browser of the console: its cookies (session and CSRF) kept between requests.
    struct Visitor {
        let client: any TestClientProtocol
        var cookies: [String: String] = [:]

        init(_ client: any TestClientProtocol, session: String?) {
            self.client = client
            if let session { self.cookies["__Host-rekey_session"] = session }
        }

        mutating func get(_ path: String) async throws -> TestResponse {
            try await self.send(path, method: .get, body: nil)
        }

        /// Posts a form with the CSRF token of a page fetched first (as a browser would have it).
        mutating func post(_ path: String, _ form: [String: String], csrf: Bool = true) async throws -> TestResponse {
            var form = form
            if csrf {
                let page = try await self.get("/console")
                form["csrf"] = Browser.csrf(in: String(buffer: page.body))
            }
            let body = form.map { key, value in
                key + "=" + (value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
            }.joined(separator: "&")
            return try await self.send(path, method: .post, body: body)
        }

        mutating func send(_ path: String, method: HTTPRequest.Method, body: String?) async throws -> TestResponse {
            var headers: HTTPFields = [:]
            if !self.cookies.isEmpty {
                headers[.cookie] = self.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")
            }
            if body != nil { headers[.contentType] = "application/x-www-form-urlencoded" }
            let response = try await self.client.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
            for field in response.headers[values: .setCookie] {
                let pair = field.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                if pair.count == 2 { self.cookies[String(pair[0])] = String(pair[1]) }
            }
            return response
        }
    }

    static let pages = [
        "/console", "/console/directory/results?q=ja", "/console/search?q=jane", "/console/search?q=jane@example.com",
        "/console/users", "/console/users?role=customer&state=active&password=unset&verified=no", "/console/suppressions",
        "/console/health", "/console/audit", "/console/organizations",
    ]

    @Test("signed out, every console page sends the browser to the sign-on page, which brings it back")
    func signedOut() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: nil)
            for page in Self.pages + ["/console/users/\(world.jane)"] {
                let response = try await visitor.get(page)
                #expect(response.status == .seeOther, "\(page)")
                let location = response.headers[.location] ?? ""
                #expect(location.hasPrefix("/?next=%2Fconsole"), "\(page): \(location)")
            }
            let crafted = try await visitor.send("/console/users/\(world.jane)/reset", method: .post, body: "")
            #expect(crafted.status == .seeOther)
            #expect(world.system.takeCalls().allSatisfy { !$0.contains("IssueToken") && !$0.contains("Enqueue") })
            // A made-up session is no session.
            var forged = Visitor(client, session: String(repeating: "A", count: 43))
            #expect(try await forged.get("/console").status == .seeOther)
        }
    }

    @Test("a customer gets a 403 page on every console page")
    func customers() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["customer"])
            for page in Self.pages {
                let response = try await visitor.get(page)
                #expect(response.status == .forbidden, "\(page)")
                #expect(String(buffer: response.body).contains("The admin console is for staff"))
            }
        }
    }

    @Test("every page answers every staff role; the send button and full addresses only for users.manage")
    func staffPages() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            for role in World.staffRoles {
                var visitor = Visitor(client, session: world.sessions[role])
                for page in Self.pages {
                    let response = try await visitor.get(page)
                    #expect(response.status == .ok, "\(role) \(page): \(response.status)")
                    let csp = response.headers[.contentSecurityPolicy] ?? ""
                    #expect(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "\(role) \(page)")
                }
                let user = String(buffer: try await visitor.get("/console/users/\(world.jane)").body)
                let manages = World.managers.contains(role)
                #expect(user.contains("Send password reset email") == manages, "\(role)")
                #expect(user.contains("jane@example.com") == manages, "\(role): addresses masked without users.manage")
                #expect(user.contains("j***@example.com") == !manages, "\(role)")
                #expect(user.contains("Why didn&#39;t they get it?") || user.contains("Why didn't they get it?"))
                #expect(user.contains("Timeline"))
            }
        }
    }

    @Test("the directory filters staff as you type; unified search finds customers, an exact address first")
    func findingUsers() async throws {
        let world = try await World.make()
        _ = try await world.system.staff("Jamal Jarvis", role: "customer", email: "jamal.j@example.org")
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["agent"])
            let results = String(buffer: try await visitor.get("/console/directory/results?q=ha").body)
            #expect(results.contains("Hal Helpdesk"))
            #expect(!results.contains("Jane Doe"), "customers are not in the staff directory")
            #expect(results.hasPrefix("<div id=\"results\""), "a fragment the script swaps in")
            let directory = String(buffer: try await visitor.get("/console?q=ha").body)
            #expect(directory.contains("data-live=\"/console/directory/results\"") && directory.contains("Hal Helpdesk"))
            let search = String(buffer: try await visitor.get("/console/search?q=ja").body)
            #expect(search.contains("Jane Doe") && search.contains("Jamal Jarvis"))
            let exact = String(buffer: try await visitor.get("/console/search?q=jamal.j@example.org").body)
            #expect(exact.contains("exact address match"))
            let byID = String(buffer: try await visitor.get("/console/search?q=\(world.jane)").body)
            #expect(byID.contains("Jane Doe") && byID.contains("id match"))
        }
    }

    @Test("escaping for HTML and for URLs, byte by byte: markup, quotes, and text in any script")
    func escaping() {
        #expect(HTML.escape(#"<script>"a" & 'b'</script>"#) == "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;")
        #expect(HTML.escape("Zoë 山田 👩🏽‍💻") == "Zoë 山田 👩🏽‍💻")
        #expect(HTML.escape("") == "")
        #expect(ConsoleLayout.pathComponent("u_0123abc") == "u_0123abc")
        #expect(ConsoleLayout.pathComponent("a b/é?&=#%+") == "a%20b%2F%C3%A9%3F%26%3D%23%25%2B")
        #expect(ConsoleLayout.pathComponent("-_.~") == "-_.~")
        #expect(ConsoleLayout.grouped(0) == "0" && ConsoleLayout.grouped(999) == "999" && ConsoleLayout.grouped(1000) == "1,000")
        #expect(ConsoleLayout.grouped(1_234_567) == "1,234,567" && ConsoleLayout.grouped(-10_000) == "-10,000")
    }

    @Test("all users: filters by role, state, password and verification, with the count")
    func allUsers() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["admin"])
            let customers = String(buffer: try await visitor.get("/console/users?role=customer").body)
            #expect(customers.contains("<strong>2</strong> users match"))
            let owners = String(buffer: try await visitor.get("/console/users?role=owner&verified=yes").body)
            #expect(owners.contains("<strong>1</strong> user matches") && owners.contains("Olive Owner"))
            let unverified = String(buffer: try await visitor.get("/console/users?verified=no&password=unset").body)
            #expect(unverified.contains("Jane Doe") && !unverified.contains("Olive Owner"))
            for bad in ["/console/users?state=asleep", "/console/users?password=maybe", "/console/users?after=not-a-cursor",
                        "/console/search?q=" + String(repeating: "a", count: 201), "/console/users?role=nosuchrole"] {
                let response = try await visitor.get(bad)
                #expect(response.status == .badRequest || response.status == .notFound, "\(bad): \(response.status)")
                #expect(String(buffer: response.body).contains("class=\"error\""), "\(bad)")
            }
        }
    }

    @Test("send the reset email: where it went, when the link expires, and the message's live state — never 'delivered' before it is")
    func sendReset() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["helpdesk"])
            let sent = try await visitor.post("/console/users/\(world.jane)/reset", [:])
            #expect(sent.status == .seeOther)
            let location = sent.headers[.location] ?? ""
            #expect(location.hasPrefix("/console/users/\(world.jane)?sent=m_"), "\(location)")
            let page = String(buffer: try await visitor.get(location).body)
            #expect(page.contains("Password reset email to jane@example.com"))
            #expect(page.contains("works until"))
            #expect(page.contains("data-state>Queued<"))
            #expect(!page.contains("Delivered"))
            #expect(!page.contains("token=") && !page.contains("/password/reset?"), "never a link or a token")
            let messageID = String(location.split(separator: "=").last ?? "")
            var state = try await visitor.get("/console/messages/\(messageID)/state")
            #expect(state.status == .ok)
            #expect(String(buffer: state.body).contains(#""state":"queued""#) && String(buffer: state.body).contains(#""final":false"#))
            // The relay accepts it: the page says so, with the server's reply.
            try await world.system.outboxDatabase.withConnection { connection in
                let seq = try connection.queryFirst("SELECT seq FROM messages WHERE id = ?", .text(messageID))?.int("seq") ?? 0
                _ = try connection.run("UPDATE messages SET state = ? WHERE id = ?", .integer(MessageStateValue.accepted.rawValue), .text(messageID))
                _ = try connection.run(
                    "INSERT INTO attempts (message_seq, to_domain, started_at, finished_at, transport, server, outcome, stage, reply_code, enhanced_status, reply_text) VALUES (?, 'example.com', 1, 2, 'smtp', 'mx.example.com:25', ?, 'DATA', 250, '2.0.0', 'Ok: queued as 4XyZ')",
                    .integer(seq), .integer(AttemptOutcomeValue.accepted.rawValue)
                )
            }
            state = try await visitor.get("/console/messages/\(messageID)/state")
            let body = String(buffer: state.body)
            #expect(body.contains(#""label":"Delivered""#) && body.contains("250 2.0.0 Ok: queued as 4XyZ") && body.contains(#""final":true"#), "\(body)")
            let after = String(buffer: try await visitor.get(location).body)
            #expect(after.contains("Delivered: the receiving server accepted it"))
            #expect(after.contains("Password reset requested by Hal Helpdesk"), "who asked, by name")
        }
    }

    @Test("a crafted POST from staff without users.manage is refused, does nothing, and is audited")
    func craftedPosts() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            for role in ["agent", "collaborator"] {
                var visitor = Visitor(client, session: world.sessions[role])
                _ = try await visitor.get("/console")
                _ = world.system.takeCalls()
                for action in ["reset", "verify", "primary", "disable", "enable", "signout"] {
                    let response = try await visitor.post("/console/users/\(world.jane)/\(action)", [:])
                    #expect(response.status == .forbidden, "\(role) \(action)")
                    #expect(String(buffer: response.body).contains("users.manage"), "\(role) \(action)")
                }
                let calls = world.system.takeCalls()
                #expect(!calls.contains { $0.contains("IssueToken") || $0.contains("Enqueue") || $0.contains("SetUserState") || $0.contains("RevokeSessions") || $0.contains("SetPrimaryEmail") }, "\(calls)")
                let removal = try await visitor.post("/console/suppressions/remove", ["address": "x@example.com", "reason": "test"])
                #expect(removal.status == .forbidden)
                let organization = try await visitor.post("/console/organizations", ["name": "Sneaky"])
                #expect(organization.status == .forbidden)
            }
            var owner = Visitor(client, session: world.sessions["owner"])
            let audit = String(buffer: try await owner.get("/console/audit?actor=\(world.ids["agent"]!)").body)
            #expect(audit.contains("refused.password_reset.send") && audit.contains("missing_permission"), "\(audit)")
            #expect(audit.contains("refused.user.disable"))
        }
    }

    @Test("forms without the CSRF token, or from another site, are refused before anything is done")
    func csrf() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["owner"])
            _ = world.system.takeCalls()
            let bare = try await visitor.post("/console/users/\(world.jane)/reset", [:], csrf: false)
            #expect(bare.status == .forbidden)
            let page = try await visitor.get("/console")
            let token = Browser.csrf(in: String(buffer: page.body))
            var headers: HTTPFields = [.contentType: "application/x-www-form-urlencoded", .cookie: visitor.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")]
            headers[HTTPField.Name("Sec-Fetch-Site")!] = "cross-site"
            let crossSite = try await client.execute(uri: "/console/users/\(world.jane)/reset", method: .post, headers: headers, body: ByteBuffer(string: "csrf=\(token)"))
            #expect(crossSite.status == .forbidden)
            #expect(!world.system.takeCalls().contains { $0.contains("IssueToken") })
        }
    }

    @Test("names with markup are shown as text on every page: no script, no attribute breaks out")
    func escaping() async throws {
        let world = try await World.make()
        let hostile = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>"]
        var made: [String] = []
        for (index, name) in hostile.enumerated() {
            made.append(try await world.system.staff(name, role: "agent", email: "x\(index)@example.com").id)
        }
        let ids = made
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["owner"])
            _ = try await visitor.post("/console/organizations", ["name": "<b onmouseover=alert(1)>Org</b>"])
            let pages = ["/console", "/console?q=x", "/console/search?q=%3Cscript%3E", "/console/users", "/console/organizations", "/console/audit"]
                + ids.map { "/console/users/\($0)" } + ["/console/search?q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"]
            for page in pages {
                let html = String(buffer: try await visitor.get(page).body)
                #expect(!html.contains("<script>alert"), "\(page)")
                #expect(!html.contains("<img src=x"), "\(page)")
                #expect(!html.contains("<b onmouseover"), "\(page)")
                // Nothing a strict CSP would block: no inline script, style attribute or handler.
                #expect(html.components(separatedBy: "<script").dropFirst().allSatisfy { $0.hasPrefix(" src=\"/assets/") }, "\(page)")
                #expect(!html.contains(" style=") && !html.contains(" onclick=") && !html.contains("<style"), "\(page)")
            }
        }
    }

    @Test("suppressions: remove with a reason (recorded), then send the reset email again from the same page")
    func suppressions() async throws {
        let world = try await World.make()
        try await world.system.outboxDatabase.withConnection { connection in
            _ = try connection.run(
                "INSERT INTO suppressions (normalized, address, reason, created_at, message_id) VALUES ('jane@example.com', 'jane@example.com', '550 5.1.1 no such user', 1, 'm_old')"
            )
        }
        try await world.system.application.test(.router) { client in
            var agent = Visitor(client, session: world.sessions["agent"])
            let masked = String(buffer: try await agent.get("/console/suppressions").body)
            #expect(masked.contains("j***@example.com") && !masked.contains("jane@example.com") && !masked.contains("action=\"/console/suppressions/remove\""))
            var visitor = Visitor(client, session: world.sessions["admin"])
            let user = String(buffer: try await visitor.get("/console/users/\(world.jane)").body)
            #expect(user.contains("Suppressed address"), "the chip explains why a send would go nowhere")
            let list = String(buffer: try await visitor.get("/console/suppressions").body)
            #expect(list.contains("jane@example.com") && list.contains("550 5.1.1 no such user"))
            let noReason = try await visitor.post("/console/suppressions/remove", ["address": "jane@example.com", "reason": " "])
            #expect(noReason.status == .badRequest)
            let removed = try await visitor.post("/console/suppressions/remove", ["address": "jane@example.com", "reason": "user fixed their mailbox"])
            #expect(removed.status == .seeOther)
            let page = String(buffer: try await visitor.get(removed.headers[.location] ?? "").body)
            #expect(page.contains("is no longer suppressed") && page.contains("/console/users/\(world.jane)/reset"))
            let reason = try await world.system.outboxDatabase.withConnection { connection in
                try connection.queryFirst("SELECT removal_reason FROM suppression_removals")?.string("removal_reason")
            }
            #expect(reason == "user fixed their mailbox")
            let resend = try await visitor.post("/console/users/\(world.jane)/reset", [:])
            #expect(resend.status == .seeOther && (resend.headers[.location] ?? "").contains("sent=m_"))
        }
    }

    @Test("user actions: verification, make primary, disable and enable, sign out everywhere; the rank rule applies")
    func userActions() async throws {
        let world = try await World.make()
        let second = try await AdminOperations(flows: world.system.flows).identities.addEmail(
            try await AdminAuthentication(flows: world.system.flows).actor(apiKey: world.system.ownerKey, clientAddress: "", requestID: "t"),
            userID: world.jane, Admin.NewEmail(address: "jane.work@example.org", verified: nil)
        )
        let emailID = second.emails.first { !$0.primary }!.id
        let store = world.system.directoryStore
        let jane = world.jane
        // Its owner confirmed it (only then may it become primary).
        _ = try await world.system.directoryDatabase.withConnection { connection in
            try store.markEmailVerified(jane, emailID: emailID, actor: .system, in: connection)
        }
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["admin"])
            let verify = try await visitor.post("/console/users/\(world.jane)/verify", ["email_id": emailID])
            #expect(verify.status == .seeOther && (verify.headers[.location] ?? "").contains("sent=m_"))
            #expect(try await visitor.post("/console/users/\(world.jane)/primary", ["email_id": emailID]).status == .seeOther)
            #expect(try await visitor.post("/console/users/\(world.jane)/disable", [:]).status == .seeOther)
            let disabled = String(buffer: try await visitor.get("/console/users/\(world.jane)").body)
            #expect(disabled.contains("Disabled: no reset email is sent"))
            let refused = try await visitor.post("/console/users/\(world.jane)/reset", [:])
            #expect(refused.status == .conflict && String(buffer: refused.body).contains("enable the account first"))
            #expect(try await visitor.post("/console/users/\(world.jane)/enable", [:]).status == .seeOther)
            #expect(try await visitor.post("/console/users/\(world.jane)/signout", [:]).status == .seeOther)
            // An admin cannot act on the owner.
            let outranked = try await visitor.post("/console/users/\(world.system.ownerID)/reset", [:])
            #expect(outranked.status == .forbidden && String(buffer: outranked.body).contains("not below yours"))
            let timeline = String(buffer: try await visitor.get("/console/users/\(world.jane)").body)
            for entry in ["Made an address primary", "Disabled the user", "Enabled the user", "Signed the user out everywhere"] {
                #expect(timeline.contains(entry), "\(entry)")
            }
        }
    }

    @Test("organizations: create, rename, delete refused while users belong")
    func organizations() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["admin"])
            #expect(try await visitor.post("/console/organizations", ["name": "Acme", "domains": "acme.example"]).status == .seeOther)
            let list = String(buffer: try await visitor.get("/console/organizations").body)
            #expect(list.contains("Acme") && list.contains("acme.example"))
            let operations = AdminOperations(flows: world.system.flows)
            let owner = try await operations.authentication.actor(apiKey: world.system.ownerKey, clientAddress: "", requestID: "t")
            let acme = try await operations.organizations.list(owner).organizations.first { $0.name == "Acme" }!
            #expect(try await visitor.post("/console/organizations/\(acme.id)/rename", ["name": "Acme Corp"]).status == .seeOther)
            _ = try await operations.users.update(owner, id: world.jane, Admin.UserChanges(name: nil, role: nil, organizationId: acme.id, locale: nil))
            let refused = try await visitor.post("/console/organizations/\(acme.id)/delete", [:])
            #expect(refused.status == .conflict, "\(refused.status)")
            #expect(String(buffer: refused.body).contains("Acme Corp"))
            _ = try await operations.users.update(owner, id: world.jane, Admin.UserChanges(name: nil, role: nil, organizationId: "", locale: nil))
            #expect(try await visitor.post("/console/organizations/\(acme.id)/delete", [:]).status == .seeOther)
            #expect(!String(buffer: try await visitor.get("/console/organizations").body).contains("Acme Corp"))
        }
    }

    @Test("mail health: the queue, the last hour by domain, and a chart of 24 hours")
    func mailHealth() async throws {
        let world = try await World.make()
        try await world.system.application.test(.router) { client in
            var visitor = Visitor(client, session: world.sessions["collaborator"])
            let page = String(buffer: try await visitor.get("/console/health").body)
            #expect(page.contains("<svg class=\"chart\"") && page.contains("waiting to be delivered") && page.contains("The last hour"))
            #expect(page.components(separatedBy: "<tr><td>").count >= 25, "a row per hour in the figures table")
        }
    }

    @Test("signing in: staff land in the console or the page that sent them; `next` is never an open redirect")
    func signInLanding() async throws {
        #expect(Web.consolePath("/console/users/u_1") == "/console/users/u_1")
        #expect(Web.consolePath("/console?q=ja") == "/console?q=ja")
        for bad in ["//evil.example/console", "https://evil.example/console", "/consolex", "/console/..//evil", "/console\\evil", "/other", "/console/\u{0}"] {
            #expect(Web.consolePath(bad) == nil, "\(bad)")
        }
    }

    @Test("the chips: each reason a send would go nowhere, and 'would be sent' only when none holds")
    func chips() {
        let email = Admin.Email(id: "e_1", address: "a@example.com", primary: true, verified: true)
        var user = Admin.User(
            id: "u_1", name: "A", role: "customer", staff: false, organizationId: nil, state: "active", locale: "en", emails: [email],
            hasPassword: true, passwordChangedAt: nil, createdAt: nil, updatedAt: nil, warnings: nil
        )
        #expect(UserPage.chips(user, suppression: nil, heldUntil: nil).map(\.tone) == ["good"])
        user.state = "disabled"
        user.hasPassword = false
        user.emails[0].verified = false
        let texts = UserPage.chips(user, suppression: "a***@example.com since …: 550", heldUntil: "2026-12-01T15:00:00Z").map(\.text)
        #expect(texts.count == 5)
        #expect(texts.contains { $0.hasPrefix("Disabled") } && texts.contains { $0.hasPrefix("Primary address not verified") })
        #expect(texts.contains { $0.hasPrefix("Suppressed address") } && texts.contains { $0.contains("Rate-limited until 2026-12-01 15:00:00 UTC") })
        #expect(texts.contains { $0.hasPrefix("No password yet") })
        user.emails = []
        #expect(UserPage.chips(user, suppression: nil, heldUntil: nil).contains { $0.text.hasPrefix("No primary address") })
    }

    @Test("brand settings are checked, naming the key; the pages, the stylesheet, the icon and the CSP follow the brand")
    func brand() async throws {
        for (name, logo, color, key) in [
            ("", nil, nil, "brand_name"), (String(repeating: "x", count: 61), nil, nil, "brand_name"), ("A\u{7}B", nil, nil, "brand_name"),
            (nil, "http://cdn.example/logo.png", nil, "brand_logo_url"), (nil, "//cdn.example/logo.png", nil, "brand_logo_url"),
            (nil, "javascript:alert(1)", nil, "brand_logo_url"), (nil, "/logo.png\" onload=\"x", nil, "brand_logo_url"),
            (nil, nil, "red", "brand_color"), (nil, nil, "#12345g", "brand_color"), (nil, nil, "#1234;", "brand_color"),
        ] as [(String?, String?, String?, String)] {
            #expect(throws: BrandError.self, "\(key)") { try Brand.make(name: name, logoURL: logo, color: color) }
            do {
                _ = try Brand.make(name: name, logoURL: logo, color: color)
            } catch {
                #expect(error.description.contains(key))
            }
        }
        let brand = try Brand.make(name: " Acme SSO ", logoURL: "https://cdn.acme.example:8443/logo.svg", color: "#A30")
        #expect(brand == Brand(name: "Acme SSO", logoURL: "https://cdn.acme.example:8443/logo.svg", color: "#aa3300"))
        let system = try await InProcessSystem()
        let router = Gateway.router(
            flows: system.flows, logger: .init(label: "test"), secret: InProcessSystem.credential, background: BackgroundQueue(logger: .init(label: "test")),
            forgotMinimumDuration: .zero, brand: brand
        )
        try await Application(router: router).test(.router) { client in
            let page = try await client.execute(uri: "/password/forgot", method: .get)
            let html = String(buffer: page.body)
            #expect(html.contains("<title>Forgot password · Acme SSO</title>") && html.contains("<img src=\"https://cdn.acme.example:8443/logo.svg\""))
            let csp = page.headers[.contentSecurityPolicy] ?? ""
            #expect(csp.contains("img-src 'self' https://cdn.acme.example:8443") && csp.contains("style-src 'self'") && !csp.contains("unsafe-inline"))
            #expect(!html.contains("<style") && !html.contains(" style="), "the end-user pages use the one stylesheet")
            let css = try await client.execute(uri: "/assets/rekey.css", method: .get)
            #expect(String(buffer: css.body).hasPrefix(":root { --accent: #aa3300; }") && css.headers[.contentType] == "text/css; charset=utf-8")
            let icon = try await client.execute(uri: "/assets/icon.svg", method: .get)
            #expect(String(buffer: icon.body).contains("fill=\"#aa3300\"") && String(buffer: icon.body).contains(">A</text>"))
            let script = try await client.execute(uri: "/assets/console.js", method: .get)
            #expect(script.status == .ok && script.headers[.contentType] == "text/javascript; charset=utf-8")
            let unavailable = try await client.execute(uri: "/password/reset?token=x", method: .get)
            #expect(String(buffer: unavailable.body).contains("Acme SSO"))
        }
    }
}
