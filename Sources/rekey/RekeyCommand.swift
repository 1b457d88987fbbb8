import ArgumentParser
import Foundation

@main
struct RekeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey",
        abstract: "Administer Rekey through the gateway's admin API: find users, send password reset and verification email, follow what happened to it.",
        discussion: """
            Point it at the gateway with --url or REKEY_URL and give an admin API key with REKEY_API_KEY.
            A user is named by id (u_…) or by any of their email addresses.
            """,
        subcommands: [Users.self, Reset.self, Verify.self, Messages.self, Message.self, Suppressions.self]
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
        subcommands: [Search.self, List.self, Show.self, Create.self, Disable.self, Enable.self, Import.self]
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
                if !self.connection.json { print("Created " + Output.userLine(user)) }
            }
        }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a user: they cannot sign in; their sessions end.")
        @OptionGroup var connection: Connection
        @Argument var user: String

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let id = try await client.user(self.user)["id"] as? String ?? ""
                let user = try await client.call("POST", "/users/\(id)/disable")
                if !self.connection.json { print("Disabled " + Output.userLine(user)) }
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a disabled user again.")
        @OptionGroup var connection: Connection
        @Argument var user: String

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let id = try await client.user(self.user)["id"] as? String ?? ""
                let user = try await client.call("POST", "/users/\(id)/enable")
                if !self.connection.json { print("Enabled " + Output.userLine(user)) }
            }
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
                let report = try await self.connection.client().call("POST", "/users/import\(self.partial ? "?partial=true" : "")", body: data, contentType: "text/csv")
                guard !self.connection.json else { return }
                for row in report["rows"] as? [[String: Any]] ?? [] {
                    if let error = row["error"] as? String { print("line \(row["line"] as? Int ?? 0): \(error)") }
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
