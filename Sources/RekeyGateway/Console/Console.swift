import Foundation
import HTTPTypes
import Hummingbird
import RekeyAdminModel
import RekeyInput

/// The admin console under `/console`: server-rendered pages over ``AdminOperations`` for staff
/// signed in through the sign-on page. Reading needs a staff role; every form that changes
/// something needs users.manage, checked here before anything is done and again by the
/// operation, and a refused attempt is recorded in the audit trail by the directory.
struct Console: Sendable {
    let operations: AdminOperations
    let web: Web

    func add(to router: Router<GatewayContext>) {
        let console = router.group().add(middleware: ConsoleAuthenticator(authentication: self.operations.authentication, cookieName: self.web.sessionCookie))
        console.get("/console") { request, context in try await self.render(request, context) { try await self.directory($0, request, layout: $1) } }
        console.get("/console/directory/results") { request, context in try await self.directoryResults(request, context) }
        console.get("/console/search") { request, context in try await self.render(request, context) { try await self.search($0, request, layout: $1) } }
        console.get("/console/users") { request, context in try await self.render(request, context) { try await self.users($0, request, layout: $1) } }
        console.get("/console/users/:id") { request, context in
            try await self.render(request, context) { actor, layout in
                try await UserPage(operations: self.operations, actor: actor, layout: layout).render(
                    id: try Self.parameter(context, "id"), sent: request.uri.queryParameters.get("sent")
                )
            }
        }
        console.get("/console/messages/:id/state") { request, context in try await self.messageState(context) }
        console.post("/console/users/:id/:action") { request, context in try await self.userAction(request, context) }
        console.get("/console/suppressions") { request, context in try await self.render(request, context) { try await self.suppressions($0, request, layout: $1) } }
        console.post("/console/suppressions/remove") { request, context in try await self.removeSuppression(request, context) }
        console.get("/console/health") { request, context in
            try await self.render(request, context) { actor, layout in
                async let domain = try? await self.operations.mail.checkDomain(actor, fresh: false)
                let health = try await self.operations.mail.health(actor, hours: 24)
                return MailHealthPage.render(health, domain: await domain, layout: layout)
            }
        }
        console.get("/console/audit") { request, context in try await self.render(request, context) { try await self.audit($0, request, layout: $1) } }
        console.get("/console/organizations") { request, context in try await self.render(request, context) { try await self.organizations($0, request, layout: $1) } }
        console.post("/console/organizations") { request, context in try await self.organizationAction(request, context, id: nil, action: "create") }
        console.post("/console/organizations/:id/:action") { request, context in
            try await self.organizationAction(request, context, id: try Self.parameter(context, "id"), action: try Self.parameter(context, "action"))
        }
    }

    // MARK: Rendering

    /// A rendered page and its status.
    struct Rendered {
        var html: String
        var status: HTTPResponse.Status = .ok
    }

    /// Runs a page's handler with the actor and a layout holding the CSRF token; a refusal or a
    /// bad input becomes the console page with the message (a service that does not answer
    /// becomes the "temporarily unavailable" page, from ``GatewayMiddleware``).
    func render(
        _ request: Request, _ context: GatewayContext, _ handler: (AdminActor, ConsoleLayout) async throws -> Rendered
    ) async throws -> Response {
        let actor = try Self.actor(context)
        let (csrf, cookie) = self.web.csrfToken(request)
        let layout = ConsoleLayout(actor: actor, csrf: csrf)
        var answer: Response
        do {
            let outcome = try await handler(actor, layout)
            answer = Web.html(outcome.html, status: outcome.status)
        } catch {
            let failure = AdminError(error)
            guard failure.kind != .unavailable, failure.kind != .internalError else { throw error }
            answer = Web.html(
                layout.page(Self.errorTitle(failure), section: nil, error: Self.sentence(failure.message), "<p><a href=\"/console\">Back to the directory</a></p>"),
                status: ErrorAnswers.status(failure.kind)
            )
            if let retry = failure.retryAfter { answer.headers[.retryAfter] = retry }
        }
        if let cookie { answer.setCookie(cookie) }
        return answer
    }

    static func errorTitle(_ failure: AdminError) -> String {
        switch failure.kind {
        case .notFound: return "Not found"
        case .permissionDenied: return "Not allowed"
        default: return "That did not work"
        }
    }

    /// A service's message as a sentence for a page.
    static func sentence(_ message: String) -> String {
        guard let first = message.first else { return message }
        return first.uppercased() + message.dropFirst() + (message.hasSuffix(".") ? "" : ".")
    }

    static func actor(_ context: GatewayContext) throws -> AdminActor {
        guard let actor = context.admin else { throw AdminError.unauthenticated }
        return actor
    }

    static func parameter(_ context: GatewayContext, _ name: String) throws -> String {
        guard let value = context.parameters.get(name), !value.isEmpty, value.utf8.count <= 254 else {
            throw AdminError.invalid("the address names no \(name)")
        }
        return value
    }

    /// A query parameter of at most `limit` characters ("" when absent).
    static func query(_ request: Request, _ name: String, limit: Int = 200) throws(AdminError) -> String {
        let value = request.uri.queryParameters.get(name) ?? ""
        guard value.count <= limit else {
            throw AdminError.invalid("\(name) must be at most \(limit) characters")
        }
        return value.trimmingCharacters(in: .whitespaces)
    }

    /// The page cursor of a list (`after`).
    static func page(_ request: Request, size: Int) throws(AdminError) -> PageRequest {
        PageRequest(size: size, token: try Self.query(request, "after", limit: 8192))
    }

    static func organizationNames(_ operations: AdminOperations, _ actor: AdminActor) async -> [String: String] {
        guard let list = try? await operations.organizations.list(actor) else { return [:] }
        return Dictionary(list.organizations.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
    }

    // MARK: Directory and search

    /// The agent directory: staff only, filtered as you type.
    func directory(_ actor: AdminActor, _ request: Request, layout: ConsoleLayout) async throws -> Rendered {
        let text = try Self.query(request, "q")
        let results = try await self.directoryResultsHTML(actor, text: text, page: try Self.page(request, size: 25), layout: layout)
        return Rendered(html: layout.page("Agent directory", section: .directory, """
            <form method="get" action="/console" class="row" data-live="/console/directory/results" role="search">
            <div class="grow"><label for="filter">Type to filter</label>
            <input id="filter" name="q" type="search" value="\(HTML.escape(text))" autocomplete="off" maxlength="200" aria-controls="results" autofocus></div>
            <button type="submit" class="secondary">Filter</button>
            </form>
            <p class="muted">Staff by name or email address. Use ↓ and ↑ to move through the list.</p>
            \(results)
            """))
    }

    /// The directory's results alone, for the script that filters as you type.
    func directoryResults(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let actor = try Self.actor(context)
        let text = try Self.query(request, "q")
        let html = try await self.directoryResultsHTML(actor, text: text, page: try Self.page(request, size: 25), layout: ConsoleLayout(actor: actor, csrf: ""))
        return Web.html(html)
    }

    func directoryResultsHTML(_ actor: AdminActor, text: String, page: PageRequest, layout: ConsoleLayout) async throws -> String {
        // Empty text lists every staff member, in the directory's order.
        let found = try await self.operations.users.search(actor, text: text, scope: .staff, page: page)
        let names = await Self.organizationNames(self.operations, actor)
        let empty = text.isEmpty ? "No staff yet." : "No staff member matches “\(text)”."
        return "<div id=\"results\" aria-live=\"polite\">" + layout.usersTable(found.users, organizations: names, empty: empty)
            + ConsoleLayout.pager(path: "/console", query: [("q", text)], next: found.nextPageToken, first: page.token.isEmpty) + "</div>"
    }

    /// Unified search: staff and customers by name, any address or id; an exact address (or id)
    /// match first.
    func search(_ actor: AdminActor, _ request: Request, layout: ConsoleLayout) async throws -> Rendered {
        let text = try Self.query(request, "q")
        guard !text.isEmpty else {
            return Rendered(html: layout.page("Search", section: nil, "<p>Type a name, an email address or a user id in the search box above.</p>"))
        }
        var exact: [Admin.User] = []
        var badge: [String: String] = [:]
        if text.contains("@") {
            if let found = try? await self.operations.users.lookup(actor, email: text) {
                exact.append(found.user)
                badge[found.user.id] = found.matched.primary ? "exact address match" : "exact match (not the primary address)"
            }
        } else if text.hasPrefix("u_"), let user = try? await self.operations.users.user(actor, id: text) {
            exact.append(user)
            badge[user.id] = "id match"
        }
        let page = try Self.page(request, size: 25)
        let found = try await self.operations.users.search(actor, text: text, scope: .all, page: page)
        let users = exact + found.users.filter { user in !exact.contains { $0.id == user.id } }
        let names = await Self.organizationNames(self.operations, actor)
        return Rendered(html: layout.page("Search: \(text)", section: nil, search: text, """
            <div id="results">\(layout.usersTable(users, organizations: names, empty: "No user matches “\(text)”.", badge: badge))</div>
            \(ConsoleLayout.pager(path: "/console/search", query: [("q", text)], next: found.nextPageToken, first: page.token.isEmpty))
            """))
    }

    // MARK: All users

    func users(_ actor: AdminActor, _ request: Request, layout: ConsoleLayout) async throws -> Rendered {
        let role = try Self.query(request, "role", limit: 40)
        let organization = try Self.query(request, "organization", limit: 64)
        let state = try Self.query(request, "state", limit: 10)
        let password = try Self.query(request, "password", limit: 10)
        let verified = try Self.query(request, "verified", limit: 10)
        func choice(_ value: String, _ name: String, _ yes: String, _ no: String) throws(AdminError) -> Bool? {
            switch value {
            case "": return nil
            case yes: return true
            case no: return false
            default: throw AdminError.invalid("\(name) must be \(yes) or \(no)")
            }
        }
        let filter = UserOperations.Filter(
            role: role, organizationID: organization, disabled: try choice(state, "state", "disabled", "active"),
            hasPassword: try choice(password, "password", "set", "unset"), primaryVerified: try choice(verified, "verified", "yes", "no"),
            countTotal: true
        )
        let page = try Self.page(request, size: 50)
        let organizations = (try await self.operations.organizations.list(actor)).organizations
        let found = try await self.operations.users.list(actor, filter: filter, page: page)
        let names = Dictionary(organizations.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        func select(_ name: String, _ label: String, _ current: String, _ options: [(String, String)]) -> String {
            let items = ([("", "Any")] + options).map { value, text in
                "<option value=\"\(HTML.escape(value))\"\(value == current ? " selected" : "")>\(HTML.escape(text))</option>"
            }.joined()
            return "<div><label for=\"f-\(name)\">\(label)</label><select id=\"f-\(name)\" name=\"\(name)\">\(items)</select></div>"
        }
        let roles = ["owner", "admin", "agent", "collaborator", "customer"].map { ($0, $0) } + (role.isEmpty || ["owner", "admin", "agent", "collaborator", "customer"].contains(role) ? [] : [(role, role)])
        let query = [("role", role), ("organization", organization), ("state", state), ("password", password), ("verified", verified)]
        let total = found.total ?? 0
        return Rendered(html: layout.page("All users", section: .users, """
            <form method="get" action="/console/users" class="row panel">
            \(select("role", "Role", role, roles))
            \(select("organization", "Organization", organization, organizations.map { ($0.id, $0.name) }))
            \(select("state", "State", state, [("active", "Active"), ("disabled", "Disabled")]))
            \(select("password", "Password", password, [("set", "Set"), ("unset", "Not set yet")]))
            \(select("verified", "Primary address", verified, [("yes", "Verified"), ("no", "Not verified")]))
            <div><button type="submit">Apply</button></div>
            </form>
            <p>\(found.totalCapped == true ? "More than <strong>\(ConsoleLayout.grouped(total))</strong> users match." : "<strong>\(ConsoleLayout.grouped(total))</strong> user\(total == 1 ? " matches" : "s match").")</p>
            <div id="results">\(layout.usersTable(found.users, organizations: names, empty: "No user matches these filters."))</div>
            \(ConsoleLayout.pager(path: "/console/users", query: query, next: found.nextPageToken, first: page.token.isEmpty))
            """))
    }

    // MARK: User actions

    /// The live state of a message, for the user page's script.
    func messageState(_ context: GatewayContext) async throws -> Response {
        let actor = try Self.actor(context)
        let message = try await self.operations.mail.message(actor, id: try Self.parameter(context, "id"))
        let state = MessageState(message)
        return ErrorAnswers.json(state)
    }

    /// A form on the user page: send reset or verification mail, make an address primary,
    /// disable or enable, sign out everywhere.
    func userAction(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let actor = try Self.actor(context)
        let (form, csrf) = try await self.web.checkedForm(request)
        guard let csrf else { return Web.html(HTML.forbidden, status: .forbidden) }
        let id = try Self.parameter(context, "id")
        let action = try Self.parameter(context, "action")
        let audited: String
        switch action {
        case "reset": audited = "password_reset.send"
        case "verify": audited = "verification.send"
        case "primary": audited = "email.primary"
        case "disable", "enable": audited = "user." + action
        case "signout": audited = "sessions.revoke"
        default: return Web.html(HTML.notFound, status: .notFound)
        }
        let layout = ConsoleLayout(actor: actor, csrf: csrf)
        let page = UserPage(operations: self.operations, actor: actor, layout: layout)
        do {
            guard actor.has(.manageUsers) else {
                // The page showed no such button: a crafted form. The directory records it.
                try await self.operations.users.refuse(actor, id, action: audited, lacking: .manageUsers)
            }
            let location = "/console/users/" + ConsoleLayout.pathComponent(id)
            switch action {
            case "reset":
                let sent = try await self.operations.mail.sendReset(actor, user: id)
                return Web.redirect(location + "?sent=" + ConsoleLayout.pathComponent(sent.messageId))
            case "verify":
                let emailID = form["email_id"].flatMap { $0.isEmpty ? nil : $0 }
                let sent = try await self.operations.mail.sendVerification(actor, user: id, emailID: emailID)
                return Web.redirect(location + "?sent=" + ConsoleLayout.pathComponent(sent.messageId))
            case "primary":
                _ = try await self.operations.identities.makePrimary(actor, userID: id, emailID: form["email_id"] ?? "")
            case "disable", "enable":
                _ = try await self.operations.users.setDisabled(actor, id: id, action == "disable")
            default:
                _ = try await self.operations.users.signOutEverywhere(actor, id: id)
            }
            return Web.redirect(location)
        } catch {
            let failure = AdminError(error)
            guard failure.kind != .unavailable, failure.kind != .internalError else { throw error }
            // The user page again, saying what was refused and why.
            let rendered = try? await page.render(id: id, sent: nil, error: Self.sentence(failure.message), status: ErrorAnswers.status(failure.kind))
            var response = Web.html(
                rendered?.html ?? layout.page(Self.errorTitle(failure), section: nil, error: Self.sentence(failure.message), ""),
                status: ErrorAnswers.status(failure.kind)
            )
            if let retry = failure.retryAfter { response.headers[.retryAfter] = retry }
            return response
        }
    }

    // MARK: Suppressions

    func suppressions(_ actor: AdminActor, _ request: Request, layout: ConsoleLayout) async throws -> Rendered {
        let address = try Self.query(request, "address", limit: 254)
        let removed = try Self.query(request, "removed", limit: 254)
        let page = try Self.page(request, size: 50)
        let found = try await self.operations.mail.suppressions(actor, address: address, page: page)
        var resend = ""
        if !removed.isEmpty {
            // Removed: offer the reset email to the user who has that address, from here.
            if let owner = try? await self.operations.users.lookup(actor, email: removed) {
                resend = """
                    <div class="panel"><h2>Send the reset email again</h2>
                    <p>\(HTML.escape(layout.address(removed))) belongs to \(ConsoleLayout.userLink(owner.user.id, owner.user.name))\(owner.matched.primary ? "" : " (not their primary address: the reset email goes to the primary one)").</p>
                    \(layout.button("Send password reset email", action: "/console/users/\(ConsoleLayout.pathComponent(owner.user.id))/reset"))
                    </div>
                    """
            } else {
                resend = "<p class=\"muted\">No user has that address now.</p>"
            }
        }
        let rows = found.suppressions.map { suppression in
            let remove = actor.has(.manageUsers) ? """
                <form method="post" action="/console/suppressions/remove" class="row">\(HTML.csrfField(layout.csrf))
                <input type="hidden" name="address" value="\(HTML.escape(suppression.address))">
                <div class="grow"><label class="visually-hidden" for="reason-\(HTML.escape(suppression.address))">Why remove it</label>
                <input id="reason-\(HTML.escape(suppression.address))" name="reason" type="text" required maxlength="200" placeholder="Why (recorded)"></div>
                <button type="submit" class="secondary">Remove</button></form>
                """ : ""
            return "<tr><td class=\"mono\">\(HTML.escape(layout.address(suppression.address)))</td><td>\(HTML.escape(suppression.reason))</td>"
                + "<td>\(ConsoleLayout.time(suppression.createdAt))</td><td class=\"actions\">\(remove)</td></tr>"
        }.joined()
        let table = found.suppressions.isEmpty
            ? "<p class=\"muted\">\(address.isEmpty ? "No address is suppressed." : "That address is not suppressed.")</p>"
            : """
                <div class="table-wrap" tabindex="0"><table>
                <thead><tr><th scope="col">Address</th><th scope="col">Why it bounced</th><th scope="col">Since</th><th scope="col"><span class="visually-hidden">Remove</span></th></tr></thead>
                <tbody>\(rows)</tbody></table></div>
                """
        return Rendered(html: layout.page(
            "Suppressions", section: .suppressions, notice: removed.isEmpty ? nil : "\(layout.address(removed)) is no longer suppressed.", """
            <p class="muted">Addresses whose mail bounced for good. Nothing is sent to them until the address is removed here.</p>
            \(resend)
            <form method="get" action="/console/suppressions" class="row" role="search">
            <div class="grow"><label for="address">Find an address</label><input id="address" name="address" type="search" value="\(HTML.escape(address))" maxlength="254"></div>
            <button type="submit" class="secondary">Find</button>
            </form>
            \(table)
            \(ConsoleLayout.pager(path: "/console/suppressions", query: [("address", address)], next: found.nextPageToken, first: page.token.isEmpty))
            """
        ))
    }

    func removeSuppression(_ request: Request, _ context: GatewayContext) async throws -> Response {
        let actor = try Self.actor(context)
        let (form, csrf) = try await self.web.checkedForm(request)
        guard let csrf else { return Web.html(HTML.forbidden, status: .forbidden) }
        let address = (form["address"] ?? "").trimmingCharacters(in: .whitespaces)
        let reason = (form["reason"] ?? "").trimmingCharacters(in: .whitespaces)
        let layout = ConsoleLayout(actor: actor, csrf: csrf)
        do {
            guard !address.isEmpty, address.count <= 254 else { throw AdminError.invalid("give the address to remove") }
            guard !reason.isEmpty else { throw AdminError.invalid("say why the address is removed: it is recorded") }
            guard reason.count <= 200 else { throw AdminError.invalid("the reason must be at most 200 characters") }
            _ = try await self.operations.mail.removeSuppression(actor, address: address, reason: reason)
            return Web.redirect("/console/suppressions" + ConsoleLayout.query([("removed", address)]))
        } catch {
            let failure = AdminError(error)
            guard failure.kind != .unavailable, failure.kind != .internalError else { throw error }
            return Web.html(
                layout.page(Self.errorTitle(failure), section: .suppressions, error: Self.sentence(failure.message), "<p><a href=\"/console/suppressions\">Back to the suppressions</a></p>"),
                status: ErrorAnswers.status(failure.kind)
            )
        }
    }

    // MARK: Audit trail

    func audit(_ actor: AdminActor, _ request: Request, layout: ConsoleLayout) async throws -> Rendered {
        var by = try Self.query(request, "actor", limit: 254)
        let target = try Self.query(request, "target", limit: 64)
        if by.contains("@") {
            by = try await self.operations.users.lookup(actor, email: by).user.id
        }
        let page = try Self.page(request, size: 50)
        let found = try await self.operations.audit.records(actor, target: target, by: by, page: page)
        let names = await self.operations.users.names(actor, ids: found.records.flatMap { [$0.actorUserId, $0.target] })
        let rows = found.records.map { record in
            let who = record.actorUserId.isEmpty ? "<span class=\"muted\">system</span>" : ConsoleLayout.userLink(record.actorUserId, names[record.actorUserId])
            let what = record.target.hasPrefix("u_") ? ConsoleLayout.userLink(record.target, names[record.target]) : HTML.escape(record.target)
            return "<tr><td>\(ConsoleLayout.time(record.at))</td><td>\(who)<div class=\"muted mono\">\(HTML.escape(record.actorClientAddress))</div></td>"
                + "<td>\(HTML.escape(AuditNames.title(record.action)))<div class=\"muted mono\">\(HTML.escape(record.action))</div></td>"
                + "<td>\(what)</td><td class=\"detail\">\(HTML.escape(record.detail))</td></tr>"
        }.joined()
        let table = found.records.isEmpty ? "<p class=\"muted\">No record matches.</p>" : """
            <div class="table-wrap" tabindex="0"><table>
            <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">On</th><th scope="col">Detail</th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
        return Rendered(html: layout.page("Audit trail", section: .audit, """
            <form method="get" action="/console/audit" class="row panel">
            <div class="grow"><label for="actor">By (user id or email address)</label><input id="actor" name="actor" type="search" value="\(HTML.escape(by))" maxlength="254"></div>
            <div class="grow"><label for="target">On (user, organization or key id)</label><input id="target" name="target" type="search" value="\(HTML.escape(target))" maxlength="64"></div>
            <div><button type="submit">Filter</button></div>
            </form>
            \(table)
            \(ConsoleLayout.pager(path: "/console/audit", query: [("actor", by), ("target", target)], next: found.nextPageToken, first: page.token.isEmpty))
            """))
    }

    // MARK: Organizations

    func organizations(_ actor: AdminActor, _ request: Request, layout: ConsoleLayout, error: String? = nil) async throws -> Rendered {
        let list = try await self.operations.organizations.list(actor)
        let manage = actor.has(.manageUsers)
        let rows = list.organizations.map { organization in
            let path = "/console/organizations/\(ConsoleLayout.pathComponent(organization.id))"
            let actions = manage ? """
                <form method="post" action="\(HTML.escape(path))/rename" class="row">\(HTML.csrfField(layout.csrf))
                <div class="grow"><label class="visually-hidden" for="name-\(HTML.escape(organization.id))">New name for \(HTML.escape(organization.name))</label>
                <input id="name-\(HTML.escape(organization.id))" name="name" type="text" required maxlength="200" value="\(HTML.escape(organization.name))"></div>
                <button type="submit" class="secondary">Rename</button></form>
                \(layout.button("Delete", action: path + "/delete", style: "danger", confirm: "Delete \(organization.name)?", ariaLabel: "Delete \(organization.name)"))
                """ : ""
            return "<tr><td>\(HTML.escape(organization.name))<div class=\"muted mono\">\(HTML.escape(organization.id))</div></td>"
                + "<td>\(HTML.escape(organization.domains.joined(separator: ", ")))</td>"
                + "<td><a href=\"/console/users?organization=\(HTML.escape(ConsoleLayout.pathComponent(organization.id)))\">Users</a></td>"
                + "<td class=\"actions\">\(actions)</td></tr>"
        }.joined()
        let create = manage ? """
            <form method="post" action="/console/organizations" class="row panel">\(HTML.csrfField(layout.csrf))
            <div class="grow"><label for="new-name">New organization</label><input id="new-name" name="name" type="text" required maxlength="200"></div>
            <div class="grow"><label for="new-domains">Email domains (comma-separated, optional)</label><input id="new-domains" name="domains" type="text" maxlength="2000"></div>
            <div><button type="submit">Create</button></div>
            </form>
            """ : ""
        let table = list.organizations.isEmpty ? "<p class=\"muted\">No organization yet.</p>" : """
            <div class="table-wrap" tabindex="0"><table>
            <thead><tr><th scope="col">Name</th><th scope="col">Domains</th><th scope="col">Members</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
            <tbody>\(rows)</tbody></table></div>
            """
        return Rendered(html: layout.page("Organizations", section: .organizations, error: error, create + table))
    }

    func organizationAction(_ request: Request, _ context: GatewayContext, id: String?, action: String) async throws -> Response {
        let actor = try Self.actor(context)
        let (form, csrf) = try await self.web.checkedForm(request)
        guard let csrf else { return Web.html(HTML.forbidden, status: .forbidden) }
        let layout = ConsoleLayout(actor: actor, csrf: csrf)
        do {
            switch (action, id) {
            case ("create", nil):
                let domains = (form["domains"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                _ = try await self.operations.organizations.create(actor, Admin.NewOrganization(name: form["name"] ?? "", domains: domains))
            case ("rename", let id?):
                _ = try await self.operations.organizations.update(actor, id: id, Admin.OrganizationChanges(name: form["name"] ?? "", domains: nil))
            case ("delete", let id?):
                _ = try await self.operations.organizations.delete(actor, id: id)
            default:
                return Web.html(HTML.notFound, status: .notFound)
            }
            return Web.redirect("/console/organizations")
        } catch {
            let failure = AdminError(error)
            guard failure.kind != .unavailable, failure.kind != .internalError else { throw error }
            let rendered = try await self.organizations(actor, request, layout: layout, error: Self.sentence(failure.message))
            return Web.html(rendered.html, status: ErrorAnswers.status(failure.kind))
        }
    }
}

/// Audit actions in words.
enum AuditNames {
    static func title(_ action: String) -> String {
        switch action {
        case "user.create": return "Created the user"
        case "user.update": return "Changed the user"
        case "user.disable": return "Disabled the user"
        case "user.enable": return "Enabled the user"
        case "user.import": return "Imported users"
        case "email.add": return "Added an address"
        case "email.remove": return "Removed an address"
        case "email.primary": return "Made an address primary"
        case "email.verify": return "Marked an address verified"
        case "password.set": return "Set the password"
        case "password_reset.send": return "Sent a password reset email"
        case "verification.send": return "Sent a verification email"
        case "sessions.revoke": return "Signed the user out everywhere"
        case "organization.create": return "Created an organization"
        case "organization.update": return "Changed an organization"
        case "organization.delete": return "Deleted an organization"
        case "api_key.create": return "Made an API key"
        case "api_key.revoke": return "Revoked an API key"
        case "role.create": return "Created a role"
        default:
            if action.hasPrefix("refused.") { return "Refused: " + Self.title(String(action.dropFirst(8))).lowercased() }
            return action
        }
    }
}
