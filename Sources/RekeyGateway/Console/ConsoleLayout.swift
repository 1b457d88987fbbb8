import Foundation
import RekeyAdminModel

/// The console's frame and the small pieces every page uses. Everything a user or a service
/// supplied goes through ``HTML/escape(_:)``; nothing here writes a style or script attribute.
struct ConsoleLayout {
    enum Section: String, CaseIterable {
        case directory, users, suppressions, health, audit, organizations

        var title: String {
            switch self {
            case .directory: return "Agent directory"
            case .users: return "All users"
            case .suppressions: return "Suppressions"
            case .health: return "Mail health"
            case .audit: return "Audit trail"
            case .organizations: return "Organizations"
            }
        }

        var path: String {
            self == .directory ? "/console" : "/console/" + self.rawValue
        }
    }

    let actor: AdminActor
    let csrf: String

    /// A whole console page: the header (brand, unified search, who is signed in), the section
    /// tabs, and `body` under the title.
    func page(_ title: String, section: Section?, search: String = "", notice: String? = nil, error: String? = nil, _ body: String) -> String {
        let brand = Brand.current
        let tabs = Section.allCases.map { tab in
            "<a href=\"\(tab.path)\"\(tab == section ? " aria-current=\"page\"" : "")>\(HTML.escape(tab.title))</a>"
        }.joined()
        let readOnly = self.actor.has(.manageUsers) ? "" : "<span class=\"tag\" title=\"Your role cannot change users or send mail\">read-only</span>"
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(HTML.escape(title)) · \(HTML.escape(brand.name)) admin</title>
            <link rel="stylesheet" href="\(Assets.stylesheetPath)">
            <link rel="icon" href="\(Assets.iconPath)" type="image/svg+xml">
            <script src="\(Assets.scriptPath)" defer></script>
            </head>
            <body>
            <a class="skip" href="#main">Skip to content</a>
            <header class="bar">
            <div class="bar-inner">
            \(HTML.brandMark(link: "/console", suffix: "admin"))
            <form class="search" role="search" method="get" action="/console/search">
            <label for="unified-search" class="visually-hidden">Search all users by name, email address or id</label>
            <input id="unified-search" name="q" type="search" placeholder="Search users: name, email or id" value="\(HTML.escape(search))" maxlength="200">
            </form>
            <div class="who"><span>\(HTML.escape(self.actor.user.name)) · \(HTML.escape(self.actor.user.role))\(readOnly)</span>
            <form method="post" action="/signout" class="inline">\(HTML.csrfField(self.csrf))<button type="submit" class="secondary">Sign out</button></form></div>
            </div>
            <nav class="tabs" aria-label="Console sections">\(tabs)</nav>
            </header>
            <main id="main" class="console">
            <h1>\(HTML.escape(title))</h1>
            \(notice.map { "<p class=\"notice\" role=\"status\">\(HTML.escape($0))</p>" } ?? "")\
            \(error.map { "<p class=\"error\" role=\"alert\">\(HTML.escape($0))</p>" } ?? "")
            \(body)
            </main>
            </body>
            </html>
            """
    }

    /// A POST form of one button, with the CSRF field and hidden `fields`.
    func button(
        _ label: String, action: String, fields: [(String, String)] = [], style: String? = nil, confirm: String? = nil, ariaLabel: String? = nil
    ) -> String {
        let hidden = fields.map { "<input type=\"hidden\" name=\"\(HTML.escape($0.0))\" value=\"\(HTML.escape($0.1))\">" }.joined()
        let confirmation = confirm.map { " data-confirm=\"\(HTML.escape($0))\"" } ?? ""
        let aria = ariaLabel.map { " aria-label=\"\(HTML.escape($0))\"" } ?? ""
        return "<form method=\"post\" action=\"\(HTML.escape(action))\" class=\"inline\"\(confirmation)>\(HTML.csrfField(self.csrf))\(hidden)"
            + "<button type=\"submit\"\(style.map { " class=\"\($0)\"" } ?? "")\(aria)>\(HTML.escape(label))</button></form>"
    }

    /// An address as this viewer may see it: in full with users.manage, masked otherwise.
    func address(_ address: String) -> String {
        self.actor.canSeeAddresses ? address : Flows.mask(address)
    }

    /// `<time>` for an ISO 8601 instant: `2026-12-01 14:30:05 UTC`.
    static func time(_ iso: String?) -> String {
        guard let iso else { return "<span class=\"muted\">never</span>" }
        return "<time datetime=\"\(HTML.escape(iso))\">\(HTML.escape(Self.readable(iso)))</time>"
    }

    static func readable(_ iso: String) -> String {
        iso.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: " UTC")
    }

    /// A link to the user's page.
    static func userLink(_ id: String, _ text: String? = nil) -> String {
        "<a href=\"/console/users/\(HTML.escape(Self.pathComponent(id)))\">\(HTML.escape(text ?? id))</a>"
    }

    /// `text` percent-encoded for a path segment or a query value: RFC 3986's unreserved ASCII
    /// characters as they are, every other byte of the UTF-8 as %XX.
    static func pathComponent(_ text: String) -> String {
        func unreserved(_ byte: UInt8) -> Bool {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                return true
            default:
                return false
            }
        }
        guard !text.utf8.allSatisfy(unreserved) else { return text }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3)
        for byte in text.utf8 {
            if unreserved(byte) {
                out.append(byte)
            } else {
                out.append(contentsOf: [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func query(_ items: [(String, String)]) -> String {
        let kept = items.filter { !$0.1.isEmpty }
        guard !kept.isEmpty else { return "" }
        return "?" + kept.map { Self.pathComponent($0.0) + "=" + Self.pathComponent($0.1) }.joined(separator: "&")
    }

    /// The "Next page" link of a keyset-paged list (none on the last page).
    /// A count with thousands separated by commas (12,345), the same on every machine.
    static func grouped(_ number: Int) -> String {
        let digits = String(number.magnitude)
        var out = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return (number < 0 ? "-" : "") + out
    }

    static func pager(path: String, query: [(String, String)], next: String, first: Bool) -> String {
        var links: [String] = []
        if !first {
            links.append("<a href=\"\(HTML.escape(path + Self.query(query)))\">First page</a>")
        }
        if !next.isEmpty {
            links.append("<a rel=\"next\" href=\"\(HTML.escape(path + Self.query(query + [("after", next)])))\">Next page</a>")
        }
        return links.isEmpty ? "" : "<nav class=\"pager\" aria-label=\"Pages\">" + links.joined() + "</nav>"
    }

    /// The users table of the directory, the search and the list, keyboard navigable.
    func usersTable(_ users: [Admin.User], organizations: [String: String] = [:], empty: String, badge: [String: String] = [:]) -> String {
        guard !users.isEmpty else { return "<p class=\"muted\">\(HTML.escape(empty))</p>" }
        let rows = users.map { user in
            let primary = user.emails.first(where: \.primary)
            let mark = badge[user.id].map { " <span class=\"tag\">\(HTML.escape($0))</span>" } ?? ""
            let state = user.state == "disabled" ? " <span class=\"chip bad\">disabled</span>" : ""
            let organization = user.organizationId.flatMap { organizations[$0] } ?? ""
            return "<tr><td><a class=\"row-link\" href=\"/console/users/\(HTML.escape(Self.pathComponent(user.id)))\">\(HTML.escape(user.name))</a>\(mark)\(state)</td>"
                + "<td>\(primary.map { HTML.escape(self.address($0.address)) } ?? "<span class=\"muted\">no primary address</span>")</td>"
                + "<td>\(HTML.escape(user.role))</td>"
                + "<td class=\"hide-small\">\(HTML.escape(organization))</td></tr>"
        }.joined()
        return """
            <div class="table-wrap" tabindex="0"><table>
            <thead><tr><th scope="col">Name</th><th scope="col">Primary address</th><th scope="col">Role</th><th scope="col" class="hide-small">Organization</th></tr></thead>
            <tbody>\(rows)</tbody>
            </table></div>
            """
    }
}
