import ArgumentParser
import Foundation
import RekeyInput

@main
struct RekeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey",
        abstract: "Administer Rekey through the gateway's admin API: find users, send password reset and verification email, follow what happened to it.",
        discussion: """
            Point it at the gateway with --url or REKEY_URL and give an admin API key with REKEY_API_KEY.
            A user is named by id (u_…) or by any of their email addresses.
            """,
        subcommands: [Login.self, Users.self, Orgs.self, Reset.self, Verify.self, Messages.self, Message.self, Suppressions.self, Diagnose.self, Mail.self]
    )

    /// Runs a command's body, turning API failures into a message and exit status 1.
    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let failure as APIFailure {
            FileHandle.standardError.write(Data("rekey: \(failure)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Users: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find, show, create, disable and import users.",
        subcommands: [Search.self, List.self, Show.self, Create.self, Update.self, Disable.self, Enable.self, Import.self]
    )

    struct Search: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Type-to-filter search: the staff directory, or every user with --all.")
        @OptionGroup var connection: Connection
        @Argument(help: "Words that start a word of the name or of an address.") var query: String = ""
        @Flag(help: "Unified search: customers too.") var all = false

        func run() async throws {
            try await RekeyCommand.run {
                let page = try await self.connection.client().call("GET", "/users/search?scope=\(self.all ? "all" : "staff")&q=\(APIClient.query(self.query))")
                guard !self.connection.json else { return }
                let users = page["users"] as? [[String: Any]] ?? []
                if users.isEmpty { print("No user matches.") }
                users.forEach { print(Output.userLine($0)) }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every user, in the order they were created.")
        @OptionGroup var connection: Connection
        @Option(help: "Only this role.") var role: String?
        @Option(help: "active or disabled.") var state: String?
        @Option(help: "Continue from a previous page.") var pageToken: String?

        func run() async throws {
            try await RekeyCommand.run {
                var query = ["page_size=100"]
                if let role { query.append("role=\(APIClient.query(role))") }
                if let state { query.append("state=\(APIClient.query(state))") }
                if let pageToken { query.append("page_token=\(APIClient.query(pageToken))") }
                let page = try await self.connection.client().call("GET", "/users?" + query.joined(separator: "&"))
                guard !self.connection.json else { return }
                (page["users"] as? [[String: Any]] ?? []).forEach { print(Output.userLine($0)) }
                if let next = page["next_page_token"] as? String, !next.isEmpty { print("More: --page-token \(next)") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One user: addresses, password, state.")
        @OptionGroup var connection: Connection
        @Argument(help: "A user id or any of their email addresses.") var user: String

        func run() async throws {
            try await RekeyCommand.run {
                let user = try await self.connection.client().user(self.user)
                if self.connection.json {
                    print(String(decoding: try JSONSerialization.data(withJSONObject: user, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
                } else {
                    Output.user(user)
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a user (no password yet: send them a reset email).")
        @OptionGroup var connection: Connection
        @Option(help: "Full name.") var name: String
        @Option(help: "Primary email address.") var email: String
        @Option(help: "owner, admin, agent, collaborator, customer or a custom role.") var role: String = "customer"
        @Option(help: "An organization id.") var organization: String?

        func run() async throws {
            try await RekeyCommand.run {
                var body: [String: Any] = ["name": self.name, "email": self.email, "role": self.role]
                if let organization { body["organization_id"] = organization }
                let user = try await self.connection.client().call("POST", "/users", body: APIClient.json(body))
                if !self.connection.json {
                    print("Created " + Output.userLine(user))
                    for warning in user["warnings"] as? [String] ?? [] { print("Warning: \(warning)") }
                }
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a user's name, role, organization or locale.")
        @OptionGroup var connection: Connection
        @Argument(help: "A user id, email address or search text.") var user: String
        @Option var name: String?
        @Option var role: String?
        @Option(help: "An organization id; \"\" to remove.") var organization: String?
        @Option var locale: String?

        func run() async throws {
            var body: [String: Any] = [:]
            if let name { body["name"] = name }
            if let role { body["role"] = role }
            if let organization { body["organization_id"] = organization }
            if let locale { body["locale"] = locale }
            guard !body.isEmpty else { throw ValidationError("say what to change: --name, --role, --organization or --locale") }
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let id = try await client.user(self.user)["id"] as? String ?? ""
                let user = try await client.call("PATCH", "/users/\(id)", body: APIClient.json(body))
                if !self.connection.json { print("Updated " + Output.userLine(user)) }
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user: they cannot sign in; their sessions end.")
        @OptionGroup var connection: Connection
        @Argument var user: String

        func run() async throws {
            try await Users.setState(self.user, "disable", connection: self.connection)
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user again.")
        @OptionGroup var connection: Connection
        @Argument var user: String

        func run() async throws {
            try await Users.setState(self.user, "enable", connection: self.connection)
        }
    }

    static func setState(_ user: String, _ action: String, connection: Connection) async throws {
        try await RekeyCommand.run {
            let client = try connection.client()
            let id = try await client.user(user)["id"] as? String ?? ""
            let changed = try await client.call("POST", "/users/\(id)/\(action)")
            if !connection.json { print("\(action == "disable" ? "Disabled" : "Enabled") " + Output.userLine(changed)) }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create users from a CSV file (name,email,role,organization); all or nothing unless --partial.")
        @OptionGroup var connection: Connection
        @Argument(help: "The CSV file, UTF-8.") var file: String
        @Flag(help: "Create the good rows even when others are refused.") var partial = false

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: self.file) else {
                throw ValidationError("cannot read \(self.file)")
            }
            try await RekeyCommand.run {
                // One key for this import: a retry after a lost answer gets the first outcome
                // instead of importing twice.
                let key = UUID().uuidString
                let client = try self.connection.client()
                var attempt = 0
                var report: [String: Any] = [:]
                while true {
                    attempt += 1
                    do {
                        report = try await client.call(
                            "POST", "/users/import\(self.partial ? "?partial=true" : "")", body: data, contentType: "text/csv", headers: ["Idempotency-Key": key]
                        )
                        break
                    } catch let failure as APIFailure where (failure.status == 0 || failure.status == 503) && attempt < 4 {
                        FileHandle.standardError.write(Data("rekey: \(failure); trying again (the same import, never twice)\n".utf8))
                        try await Task.sleep(for: .seconds(attempt * 2))
                    }
                }
                guard !self.connection.json else { return }
                for row in report["rows"] as? [[String: Any]] ?? [] {
                    if let error = row["error"] as? String { print("line \(row["line"] as? Int ?? 0): \(error)") }
                }
                let listed = (report["rows"] as? [[String: Any]] ?? []).filter { $0["error"] is String }.count
                if let refused = report["refused"] as? Int, refused > listed {
                    print("(\(refused - listed) more refused rows not listed; fix those above and try again)")
                }
                if report["committed"] as? Bool == true {
                    print("Created \(report["created"] as? Int ?? 0) users; \(report["refused"] as? Int ?? 0) rows refused.")
                } else {
                    print("Nothing was written: \(report["refused"] as? Int ?? 0) rows refused\(self.partial ? "" : " (all-or-nothing; --partial creates the good rows)").")
                    throw ExitCode(1)
                }
            }
        }
    }
}

struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Password reset email.", subcommands: [Send.self])

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a password reset email to the user's primary address.")
        @OptionGroup var connection: Connection
        @Argument(help: "A user id or any of their email addresses.") var user: String

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let user = try await client.user(self.user)
                let sent = try await client.call("POST", "/users/\(user["id"] as? String ?? "")/password-reset")
                guard !self.connection.json else { return }
                Self.report(sent, what: "Password reset email")
            }
        }

        static func report(_ sent: [String: Any], what: String) {
            let id = sent["message_id"] as? String ?? ""
            switch sent["status"] as? String {
            case "suppressed":
                print("\(what) NOT sent: \(sent["sent_to"] as? String ?? "") is on the suppression list (\(id)). See `rekey suppressions list`.")
            default:
                print("\(what) queued for \(sent["sent_to"] as? String ?? "") (message \(id)). Follow it with `rekey message \(id)`.")
            }
        }
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Email verification.", subcommands: [Send.self])

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a verification email (to the primary address, or --email-id).")
        @OptionGroup var connection: Connection
        @Argument var user: String
        @Option(help: "The address to verify (its id, e_…); default: the primary.") var emailId: String?

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let user = try await client.user(self.user)
                let body = self.emailId.map { APIClient.json(["email_id": $0]) }
                let sent = try await client.call("POST", "/users/\(user["id"] as? String ?? "")/verification", body: body)
                if !self.connection.json { Reset.Send.report(sent, what: "Verification email") }
            }
        }
    }
}

struct Messages: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The email sent to a user, newest first, with each delivery attempt.")
    @OptionGroup var connection: Connection
    @Argument var user: String

    func run() async throws {
        try await RekeyCommand.run {
            let client = try self.connection.client()
            let user = try await client.user(self.user)
            let page = try await client.call("GET", "/users/\(user["id"] as? String ?? "")/messages")
            guard !self.connection.json else { return }
            let messages = page["messages"] as? [[String: Any]] ?? []
            if messages.isEmpty { print("No email was sent to \(user["name"] as? String ?? "this user").") }
            messages.forEach(Output.message)
        }
    }
}

struct Message: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One message and its timeline.")
    @OptionGroup var connection: Connection
    @Argument(help: "The message id (m_…).") var id: String

    func run() async throws {
        try await RekeyCommand.run {
            let message = try await self.connection.client().call("GET", "/messages/\(APIClient.query(self.id))")
            if !self.connection.json { Output.message(message) }
        }
    }
}

struct Suppressions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Addresses that bounced, to which nothing is sent.", subcommands: [List.self, Remove.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @Option(help: "Only this address.") var address: String?

        func run() async throws {
            try await RekeyCommand.run {
                let page = try await self.connection.client().call("GET", "/suppressions" + (self.address.map { "?address=\(APIClient.query($0))" } ?? ""))
                guard !self.connection.json else { return }
                let items = page["suppressions"] as? [[String: Any]] ?? []
                if items.isEmpty { print("No address is suppressed.") }
                for item in items {
                    print("\(item["address"] as? String ?? "")  since \(item["created_at"] as? String ?? "")  \(item["reason"] as? String ?? "")")
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send to the address again (after the mailbox was fixed).")
        @OptionGroup var connection: Connection
        @Argument var address: String

        func run() async throws {
            try await RekeyCommand.run {
                _ = try await self.connection.client().call("DELETE", "/suppressions/\(APIClient.query(self.address))")
                if !self.connection.json { print("\(self.address) removed from the suppression list.") }
            }
        }
    }
}

struct Diagnose: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Why is this user not receiving the reset email? Who and where, what was asked, what the mail system did, platform health, and a verdict.",
        discussion: "Exit status: 0 when the diagnosis was made (whatever it found), 1 when it could not be."
    )
    @OptionGroup var connection: Connection
    @Argument(help: "A user id, an email address (any of the user's), or a name.") var user: String
    @Option(help: "How far back to look: 30m, 12h, 7d (default), up to 90d.") var since: String = "7d"

    func validate() throws {
        do {
            _ = try Bounded.duration(self.since, "--since", in: Limits.diagnosisWindow)
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() async throws {
        try await RekeyCommand.run {
            let report = try await self.connection.client().call("GET", "/diagnosis?user=\(APIClient.query(self.user))&since=\(APIClient.query(self.since))")
            if !self.connection.json { DiagnosisText.print(report) }
        }
    }
}

enum DiagnosisText {
    static func print(_ report: [String: Any]) {
        func out(_ line: String = "") { Swift.print(line) }
        out("Diagnosis \(report["report_id"] as? String ?? "") for `\(report["input"] as? String ?? "")` since \(report["since"] as? String ?? "")")
        out()
        out("Who and where")
        if let who = report["who"] as? [String: Any] {
            out("  \(who["name"] as? String ?? "") (\(who["user_id"] as? String ?? ""), \(who["role"] as? String ?? ""), \(who["state"] as? String ?? ""), password \(who["has_password"] as? Bool == true ? "set" : "not set"))")
            if let matched = who["matched_address"] as? String {
                out("  typed address \(matched): \(who["matched_is_primary"] as? Bool == true ? "primary" : "SECONDARY")\(who["matched_verified"] as? Bool == true ? ", verified" : ", unverified")")
            }
            out("  reset mail goes to \(who["primary_address"] as? String ?? "")\(who["primary_verified"] as? Bool == true ? " (verified)" : " (unverified)")")
        } else {
            out("  no user found")
            for candidate in report["candidates"] as? [String] ?? [] { out("  candidate: \(candidate)") }
        }
        out()
        out("What was asked")
        let requests = report["requests"] as? [[String: Any]] ?? []
        if requests.isEmpty { out("  nothing in the window") }
        for request in requests {
            let by = request["by"] as? String == "self" ? "the user" : "admin \(request["by"] as? String ?? "")"
            out("  \(request["at"] as? String ?? "")  \(request["purpose"] as? String ?? "") \(request["kind"] as? String ?? "") by \(by) from \(request["client_address"] as? String ?? "")\((request["detail"] as? String).map { $0.isEmpty ? "" : " (\($0))" } ?? "")")
        }
        out()
        out("What the mail system did")
        let messages = report["messages"] as? [[String: Any]] ?? []
        if messages.isEmpty { out("  no email in the window") }
        messages.forEach { Output.message($0, indent: "  ") }
        if let suppression = report["suppression"] as? String { out("  SUPPRESSED: \(suppression)") }
        out()
        out("Platform")
        let platform = report["platform"] as? [String: Any] ?? [:]
        if let unreachable = platform["unreachable"] as? [String], !unreachable.isEmpty { out("  NOT ANSWERING: \(unreachable.joined(separator: ", "))") }
        if let depth = platform["queue_depth"] as? Int {
            out("  queue: \(depth) waiting, oldest \(platform["oldest_queued_age_seconds"] as? Int ?? 0) s; last delivery \(platform["last_accepted_at"] as? String ?? "never") via \(platform["transport"] as? String ?? "") \(platform["server"] as? String ?? "")")
            out("  last hour: \(platform["recent_accepted"] as? Int ?? 0) delivered, \(platform["recent_temporary_failures"] as? Int ?? 0) temporary and \(platform["recent_permanent_failures"] as? Int ?? 0) permanent failures")
            if let domain = platform["recipient_domain"] as? String {
                out("  \(domain): \(platform["recipient_domain_accepted"] as? Int ?? 0) delivered, \(platform["recipient_domain_failures"] as? Int ?? 0) failures")
            }
        }
        out()
        out("Verdict, most likely first")
        for (index, finding) in (report["findings"] as? [[String: Any]] ?? []).enumerated() {
            out("  \(index + 1). \(finding["summary"] as? String ?? "")")
            out("     Next: \(finding["next_step"] as? String ?? "")")
            for evidence in finding["evidence"] as? [String] ?? [] { out("     · \(evidence)") }
        }
        if let escalation = report["escalation"] as? String {
            out()
            out("Paste into the ticket:")
            out("-----")
            out(escalation)
            out("-----")
        }
    }
}

struct Mail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mail checks.", subcommands: [Test.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a test message through the same path as reset mail and wait for its fate.")
        @OptionGroup var connection: Connection
        @Argument var address: String
        @Option(help: "How long to wait, in seconds (1 to 3600).") var timeout: Int = 60

        func validate() throws {
            guard (1...3600).contains(self.timeout) else { throw ValidationError("--timeout must be a whole number from 1 to 3600") }
        }

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let sent = try await client.call("POST", "/mail/test", body: APIClient.json(["address": self.address]))
                let id = sent["message_id"] as? String ?? ""
                if sent["status"] as? String == "suppressed" {
                    print("Not sent: \(self.address) is on the suppression list. See `rekey suppressions list --address \(self.address)`.")
                    throw ExitCode(1)
                }
                let quiet = APIClient(base: client.base, key: client.key, printJSON: false)
                let deadline = ContinuousClock.now + .seconds(self.timeout)
                var message: [String: Any] = [:]
                repeat {
                    message = try await quiet.call("GET", "/messages/\(id)")
                    if ["accepted", "failed"].contains(message["state"] as? String) { break }
                    try await Task.sleep(for: .milliseconds(250))
                } while ContinuousClock.now < deadline
                Output.message(message)
                switch message["state"] as? String {
                case "accepted": print("Delivered: the mail system accepted the test message.")
                case "failed": print("Failed: \(message["reason"] as? String ?? "")"); throw ExitCode(1)
                default: print("Still \(message["state"] as? String ?? "queued") after \(self.timeout) s: \(message["reason"] as? String ?? "")"); throw ExitCode(1)
                }
            }
        }
    }
}

struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store the gateway's URL and your API key (asked for, checked, kept readable by you only).",
        discussion: "The key is read from the terminal without echo, or from standard input when it is not a terminal."
    )
    @Option(help: "The gateway's URL, such as https://sso.example.com.") var gateway: String
    @Option(help: "Sign in with your email address and password (asked for) to make a new API key of your own, instead of pasting one.")
    var email: String?

    func run() async throws {
        guard let url = URL(string: self.gateway), url.scheme == "http" || url.scheme == "https" else {
            throw ValidationError("--gateway must be an http or https URL")
        }
        let base = self.gateway.hasSuffix("/") ? String(self.gateway.dropLast()) : self.gateway
        if let email {
            let password = Self.readSecret(prompt: "Password for \(email): ")
            guard !password.isEmpty else { throw ValidationError("no password given") }
            try await RekeyCommand.run {
                let name = "rekey CLI on \(ProcessInfo.processInfo.hostName)"
                let created = try await APIClient(base: base, key: "", printJSON: false)
                    .call("POST", "/api-keys", body: APIClient.json(["email": email, "password": password, "name": String(name.prefix(100))]))
                guard let key = created["key"] as? String, !key.isEmpty else { throw APIFailure(status: 500, code: "internal", message: "the gateway made no key") }
                try StoredLogin(url: base, apiKey: key).save()
                print("Logged in to \(base) as \(email) with a new API key (\(created["id"] as? String ?? "")); it is stored in \(StoredLogin.path) (mode 0600).")
            }
            return
        }
        let key = Self.readSecret(prompt: "API key: ")
        guard !key.isEmpty else { throw ValidationError("no API key given") }
        try await RekeyCommand.run {
            _ = try await APIClient(base: base, key: key, printJSON: false).call("GET", "/users/search?page_size=1")
            try StoredLogin(url: base, apiKey: key).save()
            print("Logged in to \(base); the key is stored in \(StoredLogin.path) (mode 0600).")
        }
    }

    static func readSecret(prompt: String) -> String {
        guard isatty(STDIN_FILENO) == 1 else { return (readLine() ?? "").trimmingCharacters(in: .whitespaces) }
        FileHandle.standardError.write(Data(prompt.utf8))
        var settings = termios()
        tcgetattr(STDIN_FILENO, &settings)
        var hidden = settings
        hidden.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &hidden)
        defer {
            tcsetattr(STDIN_FILENO, TCSANOW, &settings)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return (readLine() ?? "").trimmingCharacters(in: .whitespaces)
    }
}

struct Orgs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Organizations.", subcommands: [List.self, Create.self, Update.self, Delete.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection

        func run() async throws {
            try await RekeyCommand.run {
                let list = try await self.connection.client().call("GET", "/organizations")
                guard !self.connection.json else { return }
                for organization in list["organizations"] as? [[String: Any]] ?? [] {
                    print("\(organization["id"] as? String ?? "")  \(organization["name"] as? String ?? "")  \((organization["domains"] as? [String] ?? []).joined(separator: ","))")
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        @OptionGroup var connection: Connection
        @Option var name: String
        @Option(help: "An email domain of the organization's people; may be repeated.") var domain: [String] = []

        func run() async throws {
            try await RekeyCommand.run {
                let created = try await self.connection.client().call("POST", "/organizations", body: APIClient.json(["name": self.name, "domains": self.domain]))
                if !self.connection.json { print("Created \(created["id"] as? String ?? "")  \(created["name"] as? String ?? "")") }
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rename an organization or replace its domains.")
        @OptionGroup var connection: Connection
        @Argument(help: "The organization id (o_…).") var id: String
        @Option var name: String?
        @Option(help: "Replaces the domains; may be repeated.") var domain: [String] = []

        func run() async throws {
            var body: [String: Any] = [:]
            if let name { body["name"] = name }
            if !self.domain.isEmpty { body["domains"] = self.domain }
            guard !body.isEmpty else { throw ValidationError("say what to change: --name or --domain") }
            try await RekeyCommand.run {
                let updated = try await self.connection.client().call("PATCH", "/organizations/\(APIClient.query(self.id))", body: APIClient.json(body))
                if !self.connection.json { print("Updated \(updated["id"] as? String ?? "")  \(updated["name"] as? String ?? "")") }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an organization nobody belongs to any more.")
        @OptionGroup var connection: Connection
        @Argument(help: "The organization id (o_…).") var id: String

        func run() async throws {
            try await RekeyCommand.run {
                _ = try await self.connection.client().call("DELETE", "/organizations/\(APIClient.query(self.id))")
                if !self.connection.json { print("Deleted \(self.id).") }
            }
        }
    }
}
