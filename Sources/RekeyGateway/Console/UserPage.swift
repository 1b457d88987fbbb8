import Foundation
import HTTPTypes
import RekeyAdminModel

/// The console's user page: who they are, why a send would go nowhere (status chips), the
/// actions (with users.manage), the message just sent and its live state, the diagnosis, and
/// the timeline of everything that happened to their reset and verification mail.
struct UserPage {
    let operations: AdminOperations
    let actor: AdminActor
    let layout: ConsoleLayout

    /// How far back the timeline and the diagnosis look.
    static let window: Duration = .seconds(30 * 86400)

    func render(id: String, sent: String?, error: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Console.Rendered {
        let user = try await self.operations.users.user(self.actor, id: id)
        async let diagnosis = try? self.operations.diagnosis.diagnose(self.actor, input: user.id, window: Self.window)
        async let audit = try? self.operations.audit.records(self.actor, target: user.id, page: PageRequest(size: 100))
        async let heldUntil = try? self.operations.mail.resetHeldUntil(self.actor, userID: user.id)
        async let organizations = Console.organizationNames(self.operations, self.actor)
        var message: Admin.Message?
        if let sent, !sent.isEmpty, sent.utf8.count <= 64 {
            message = try? await self.operations.mail.message(self.actor, id: sent)
        }
        let report = await diagnosis
        let records = await audit?.records ?? []
        let people = await self.operations.users.names(
            self.actor, ids: records.map(\.actorUserId) + (report?.requests.map(\.by) ?? []) + (report?.messages.map(\.requestedBy) ?? [])
        )
        let names = await organizations
        let organization = user.organizationId.flatMap { id in names[id] ?? id }
        var sections = [
            self.header(user, report: report, heldUntil: await heldUntil, organization: organization),
        ]
        if let message {
            sections.append(self.sentPanel(message, report: report))
        }
        sections.append("<div class=\"grid\">" + self.emails(user) + self.actions(user) + "</div>")
        sections.append(self.diagnosisPanel(report))
        sections.append(self.timeline(report: report, audit: records, names: people))
        return Console.Rendered(html: self.layout.page(user.name, section: nil, error: error, sections.joined(separator: "\n")), status: status)
    }

    // MARK: Who and the chips

    func header(_ user: Admin.User, report: Admin.Diagnosis?, heldUntil: String?, organization: String?) -> String {
        let chips = Self.chips(user, suppression: report?.suppression, heldUntil: heldUntil).map { chip in
            "<li class=\"chip \(chip.tone)\">\(HTML.escape(chip.text))</li>"
        }.joined()
        let password = user.hasPassword
            ? "set" + (user.passwordChangedAt.map { ", changed " + ConsoleLayout.time($0) } ?? "")
            : "<span class=\"muted\">not set yet</span>"
        return """
            <ul class="chips" aria-label="What stands in the way of a reset email">\(chips)</ul>
            <div class="panel"><dl class="facts">
            <dt>Role</dt><dd>\(HTML.escape(user.role))\(user.staff ? " <span class=\"tag\">staff</span>" : "")</dd>
            <dt>Organization</dt><dd>\(organization.map(HTML.escape) ?? "<span class=\"muted\">none</span>")</dd>
            <dt>State</dt><dd>\(user.state == "disabled" ? "<span class=\"state bad\">disabled</span>" : "active")</dd>
            <dt>Password</dt><dd>\(password)</dd>
            <dt>User id</dt><dd class="mono">\(HTML.escape(user.id))</dd>
            <dt>Created</dt><dd>\(ConsoleLayout.time(user.createdAt))</dd>
            </dl></div>
            """
    }

    struct Chip: Equatable {
        var text: String
        /// good, warn or bad.
        var tone: String
    }

    /// Why a reset email to this user would go nowhere, one chip per reason; one "ready" chip
    /// when nothing stands in the way.
    static func chips(_ user: Admin.User, suppression: String?, heldUntil: String?) -> [Chip] {
        var chips: [Chip] = []
        let primary = user.emails.first(where: \.primary)
        if user.state == "disabled" {
            chips.append(Chip(text: "Disabled: no reset email is sent until the account is enabled", tone: "bad"))
        }
        if primary == nil {
            chips.append(Chip(text: "No primary address: a reset email has nowhere to go", tone: "bad"))
        } else if primary?.verified == false {
            chips.append(Chip(text: "Primary address not verified: the user may not own it", tone: "warn"))
        }
        if let suppression {
            chips.append(Chip(text: "Suppressed address: it bounced for good (\(suppression)); nothing is sent until it is removed", tone: "bad"))
        }
        if let heldUntil {
            chips.append(Chip(text: "Rate-limited until \(ConsoleLayout.readable(heldUntil)): a reset sent now is refused", tone: "warn"))
        }
        if !user.hasPassword {
            chips.append(Chip(text: "No password yet: the reset email lets them choose one", tone: "warn"))
        }
        if chips.allSatisfy({ $0.tone != "bad" }) && heldUntil == nil {
            chips.insert(Chip(text: "A reset email would be sent now", tone: "good"), at: 0)
        }
        return chips
    }

    // MARK: Addresses and actions

    func emails(_ user: Admin.User) -> String {
        let manage = self.actor.has(.manageUsers)
        let path = "/console/users/" + ConsoleLayout.pathComponent(user.id)
        let rows = user.emails.map { email in
            var marks = ""
            if email.primary { marks += "<span class=\"tag\">primary</span>" }
            marks += email.verified ? "<span class=\"tag\">verified</span>" : "<span class=\"tag\">not verified</span>"
            var actions = ""
            if manage {
                actions += self.layout.button(
                    "Send verification email", action: path + "/verify", fields: [("email_id", email.id)], style: "secondary",
                    ariaLabel: "Send a verification email to \(self.layout.address(email.address))"
                )
                // Only an address its owner confirmed may become primary.
                if !email.primary && email.verified {
                    actions += self.layout.button(
                        "Make primary", action: path + "/primary", fields: [("email_id", email.id)], style: "secondary",
                        confirm: "Reset email will go to this address from now on. The previous primary address is told.",
                        ariaLabel: "Make \(self.layout.address(email.address)) the primary address"
                    )
                }
            }
            return "<tr><td class=\"mono\">\(HTML.escape(self.layout.address(email.address)))</td><td>\(marks)</td>"
                + (manage ? "<td class=\"actions\">\(actions)</td>" : "") + "</tr>"
        }.joined()
        return """
            <section class="panel" aria-labelledby="addresses"><h2 id="addresses">Email addresses</h2>
            <div class="table-wrap" tabindex="0"><table><thead><tr><th scope="col">Address</th><th scope="col">Marks</th>\(manage ? "<th scope=\"col\"><span class=\"visually-hidden\">Actions</span></th>" : "")</tr></thead>
            <tbody>\(rows)</tbody></table></div>
            \(self.actor.canSeeAddresses ? "" : "<p class=\"muted\">Addresses are masked: your role cannot change users.</p>")
            </section>
            """
    }

    func actions(_ user: Admin.User) -> String {
        guard self.actor.has(.manageUsers) else {
            return """
                <section class="panel" aria-labelledby="actions"><h2 id="actions">Actions</h2>
                <p class="muted">Sending email and changing users needs the permission “Create and update users and organizations”, which your role does not have.</p>
                </section>
                """
        }
        let path = "/console/users/" + ConsoleLayout.pathComponent(user.id)
        let primary = user.emails.first(where: \.primary)
        let destination = primary.map { "It goes to the primary address, \(self.layout.address($0.address))." } ?? "The user has no primary address."
        let state = user.state == "disabled"
            ? self.layout.button("Enable", action: path + "/enable", style: "secondary")
            : self.layout.button("Disable", action: path + "/disable", style: "danger", confirm: "Disable \(user.name)? They are signed out and cannot sign in.")
        return """
            <section class="panel" aria-labelledby="actions"><h2 id="actions">Actions</h2>
            <p>\(self.layout.button("Send password reset email", action: path + "/reset"))</p>
            <p class="muted">\(HTML.escape(destination))</p>
            <p class="row">\(state) \(self.layout.button("Sign out everywhere", action: path + "/signout", style: "secondary", confirm: "End every session of \(user.name)?"))</p>
            </section>
            """
    }

    // MARK: The message just sent

    func sentPanel(_ message: Admin.Message, report: Admin.Diagnosis?) -> String {
        let state = MessageState(message)
        let token = message.tokenId.flatMap { id in report?.tokens.first { $0.tokenId == id } }
        let expiry = token?.expiresAt.map { "The link in it works until " + ConsoleLayout.time($0) + ", once." } ?? ""
        let what = message.template == "email_verification" ? "Verification email" : (message.template == "password_reset" ? "Password reset email" : "Email")
        return """
            <section class="panel" aria-labelledby="sent" data-poll="/console/messages/\(HTML.escape(ConsoleLayout.pathComponent(message.id)))/state">
            <h2 id="sent">\(HTML.escape(what)) to \(HTML.escape(message.to))</h2>
            <p>Requested \(ConsoleLayout.time(message.createdAt)). \(expiry)</p>
            <p aria-live="polite">Now: <span class="state \(state.tone)" data-state>\(HTML.escape(state.label))</span>
            <span class="muted" data-detail>\(HTML.escape(state.detail))</span></p>
            <p class="muted">This updates by itself. <a href="?sent=\(HTML.escape(ConsoleLayout.pathComponent(message.id)))">Refresh</a></p>
            </section>
            """
    }

    // MARK: Diagnosis

    func diagnosisPanel(_ report: Admin.Diagnosis?) -> String {
        guard let report else {
            return "<section class=\"panel\"><h2>Why didn't they get it?</h2><p class=\"muted\">The diagnosis could not be made just now.</p></section>"
        }
        let findings = report.findings.map { finding in
            let evidence = finding.evidence.map { "<li>\(HTML.escape($0))</li>" }.joined()
            return "<li><strong>\(HTML.escape(finding.summary))</strong><p>Next step: \(HTML.escape(finding.nextStep))</p>"
                + (evidence.isEmpty ? "" : "<ul>\(evidence)</ul>") + "</li>"
        }.joined()
        let escalation = report.escalation.map { text in
            """
            <h3>Escalation</h3>
            <p class="muted">Paste this into the ticket for the platform team.</p>
            <pre id="escalation">\(HTML.escape(text))</pre>
            <button type="button" class="secondary" data-copy="escalation" hidden>Copy</button>
            """
        } ?? ""
        let unreachable = report.platform.unreachable.isEmpty ? "" :
            "<p class=\"warning\">Not answering: \(HTML.escape(report.platform.unreachable.joined(separator: ", "))); the diagnosis is missing what they know.</p>"
        return """
            <section class="panel" aria-labelledby="diagnosis"><h2 id="diagnosis">Why didn't they get it?</h2>
            \(unreachable)
            <ol class="findings">\(findings)</ol>
            \(escalation)
            <p class="muted">The same report as <code>rekey diagnose \(HTML.escape(report.who?.userId ?? report.input))</code>, over the last 30 days (report \(HTML.escape(report.reportId))).</p>
            </section>
            """
    }

    // MARK: Timeline

    struct Event {
        var at: String
        var title: String
        var detail: String
        var tone: String = ""
    }

    func timeline(report: Admin.Diagnosis?, audit: [Admin.AuditRecord], names: [String: String]) -> String {
        let events = Self.events(report: report, audit: audit, names: names, now: Admin.time(Int64(Date().timeIntervalSince1970 * 1000)) ?? "")
        let items = events.prefix(300).map { event in
            "<li>\(ConsoleLayout.time(event.at))<div><span class=\"\(event.tone.isEmpty ? "" : "state " + event.tone)\">\(HTML.escape(event.title))</span>"
                + (event.detail.isEmpty ? "" : "<div class=\"detail\">\(HTML.escape(event.detail))</div>") + "</div></li>"
        }.joined()
        return """
            <section class="panel" aria-labelledby="timeline"><h2 id="timeline">Timeline</h2>
            \(items.isEmpty ? "<p class=\"muted\">Nothing in the last 30 days.</p>" : "<ol class=\"timeline\">\(items)</ol>")
            </section>
            """
    }

    /// Requests, messages and each delivery attempt with the server's reply, links used,
    /// refused, expired or superseded, and admin actions on the user: newest first.
    /// `names`: user names by id, for who did what.
    static func events(report: Admin.Diagnosis?, audit: [Admin.AuditRecord], names: [String: String] = [:], now: String) -> [Event] {
        var events: [Event] = []
        for request in report?.requests ?? [] {
            guard let at = request.at else { continue }
            let what = request.purpose == "email_verification" ? "verification" : "password reset"
            let by = request.by == "self" ? "the user" : names[request.by] ?? "admin \(request.by)"
            let from = request.clientAddress.isEmpty ? "" : " from \(request.clientAddress)"
            switch request.kind {
            case "issued":
                events.append(Event(at: at, title: "\(what.prefix(1).uppercased() + what.dropFirst()) requested by \(by)\(from)", detail: "token id \(request.tokenId)"))
            case "redeemed":
                events.append(Event(at: at, title: "Link used: \(request.purpose == "email_verification" ? "address confirmed" : "password changed")\(from)", detail: "token id \(request.tokenId)", tone: "good"))
            case "redeem_failed":
                events.append(Event(at: at, title: "Link refused\(from)", detail: request.detail, tone: "warn"))
            case "rate_limited":
                events.append(Event(at: at, title: "\(what.prefix(1).uppercased() + what.dropFirst()) refused by a rate limit (requested by \(by)\(from))", detail: request.detail, tone: "warn"))
            case "opened":
                events.append(Event(at: at, title: "Link opened\(from)", detail: "token id \(request.tokenId); \(request.detail)"))
            case "revoked":
                events.append(Event(at: at, title: "Link withdrawn", detail: request.detail.isEmpty ? "token id \(request.tokenId)" : request.detail))
            default:
                events.append(Event(at: at, title: request.kind, detail: request.detail))
            }
        }
        for token in report?.tokens ?? [] where token.state == "expired" {
            if let at = token.expiresAt, at <= now {
                events.append(Event(at: at, title: "Link expired unused", detail: "token id \(token.tokenId)", tone: "warn"))
            }
        }
        for message in report?.messages ?? [] {
            if let at = message.createdAt {
                events.append(Event(at: at, title: "Email queued: \(message.subject.isEmpty ? message.template : message.subject)", detail: "to \(message.to) · \(message.id)"))
            }
            for attempt in message.attempts {
                guard let at = attempt.finishedAt ?? attempt.startedAt else { continue }
                let (title, tone) = Self.attemptTitle(attempt.outcome)
                events.append(Event(at: at, title: title + " (" + attempt.server + ")", detail: MessageState.reply(attempt), tone: tone))
            }
            if message.state == "suppressed", let at = message.createdAt {
                events.append(Event(at: at, title: "Not sent: the address is suppressed", detail: message.reason, tone: "bad"))
            }
            for report in message.reports {
                guard let at = report.receivedAt else { continue }
                if report.kind == "complaint" {
                    events.append(Event(at: at, title: "Marked as spam by the recipient", detail: "complaint (\(report.feedbackType)) reported by \(report.reporter)", tone: "bad"))
                } else {
                    let words = [report.status, report.diagnosticCode].filter { !$0.isEmpty }.joined(separator: " ")
                    events.append(Event(
                        at: at, title: report.action == "failed" ? "Bounced after delivery (\(report.remoteMta.isEmpty ? report.reporter : report.remoteMta))" : "Delivery report: \(report.action)",
                        detail: words, tone: report.action == "failed" ? "bad" : "warn"
                    ))
                }
            }
        }
        for record in audit {
            guard let at = record.at else { continue }
            let by = record.actorUserId.isEmpty ? "the system" : names[record.actorUserId] ?? record.actorUserId
            let from = record.actorClientAddress.isEmpty ? "" : " from \(record.actorClientAddress)"
            events.append(Event(
                at: at, title: AuditNames.title(record.action) + " (by \(by)\(from))", detail: record.detail,
                tone: record.action.hasPrefix("refused.") ? "bad" : ""
            ))
        }
        return events.sorted { $0.at > $1.at }
    }

    static func attemptTitle(_ outcome: String) -> (String, String) {
        switch outcome {
        case "accepted": return ("Delivered: the receiving server accepted it", "good")
        case "temporary_failure": return ("Deferred: the receiving server said try later", "warn")
        case "permanent_failure": return ("Bounced: the receiving server refused it for good", "bad")
        case "interrupted": return ("Attempt interrupted (the notifier stopped); tried again", "warn")
        default: return ("Delivery attempt in progress", "")
        }
    }
}

/// What became of a message, in words, for the user page and its live updates. Never says
/// "sent" for mail no server accepted.
struct MessageState: Codable, Sendable, Equatable {
    var state: String
    var label: String
    var detail: String
    /// good, warn or bad.
    var tone: String
    /// Nothing more will happen to it.
    var final: Bool

    init(_ message: Admin.Message) {
        self.state = message.state
        let last = message.attempts.last
        switch message.state {
        case "queued":
            self.label = "Queued"
            self.detail = last == nil ? "Waiting for its first delivery attempt." : "Waiting for its next delivery attempt."
            self.tone = "warn"
            self.final = false
        case "deferred":
            self.label = "Deferred"
            self.detail = "The receiving server said: " + (last.map(Self.reply) ?? "nothing") + "."
                + (message.nextAttemptAt.map { " Next try at " + ConsoleLayout.readable($0) + "." } ?? "")
            self.tone = "warn"
            self.final = false
        case "accepted":
            self.label = "Delivered"
            self.detail = "Accepted by " + (last?.server ?? "the server") + (last.map { ": " + Self.reply($0) } ?? "") + "."
            self.tone = "good"
            self.final = true
        case "failed":
            self.label = "Bounced"
            self.detail = "Refused for good: " + (last.map(Self.reply) ?? message.reason) + ". The address is now suppressed."
            self.tone = "bad"
            self.final = true
        case "bounced":
            let report = message.reports.last { $0.kind == "dsn" && $0.action == "failed" }
            self.label = "Bounced after delivery"
            self.detail = "Accepted by " + (last?.server ?? "the relay") + ", then refused by " + (report.map { $0.remoteMta.isEmpty ? $0.reporter : $0.remoteMta } ?? "the recipient's server")
                + ": " + (report.map { [$0.status, $0.diagnosticCode].filter { !$0.isEmpty }.joined(separator: " ") } ?? message.reason) + "."
            self.tone = "bad"
            self.final = true
        case "suppressed":
            self.label = "Not sent: the address is suppressed"
            self.detail = message.reason.isEmpty ? "The address bounced before; remove it from the suppressions to send again." : message.reason
            self.tone = "bad"
            self.final = true
        default:
            self.label = message.state
            self.detail = ""
            self.tone = "warn"
            self.final = false
        }
    }

    /// The server's reply as it gave it (`250 2.0.0 Ok: queued as …`), or the problem when
    /// there was no reply.
    static func reply(_ attempt: Admin.Attempt) -> String {
        guard attempt.replyCode > 0 else { return attempt.error.isEmpty ? attempt.outcome : attempt.error }
        return ([String(attempt.replyCode), attempt.enhancedStatus, attempt.replyText].filter { !$0.isEmpty }).joined(separator: " ")
    }
}
