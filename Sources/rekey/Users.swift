import ArgumentParser
import Foundation
import RekeyAdminModel

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
                let page = try await self.connection.client().call(
                    "GET", "/users/search?scope=\(self.all ? "all" : "staff")&q=\(APIClient.query(self.query))", as: Admin.UsersPage.self
                )
                guard !self.connection.json else { return }
                if page.users.isEmpty { print("No user matches.") }
                page.users.forEach { print(Output.userLine($0)) }
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
                let page = try await self.connection.client().call("GET", "/users?" + query.joined(separator: "&"), as: Admin.UsersPage.self)
                guard !self.connection.json else { return }
                page.users.forEach { print(Output.userLine($0)) }
                if !page.nextPageToken.isEmpty { print("More: --page-token \(page.nextPageToken)") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One user: addresses, password, state.")
        @OptionGroup var connection: Connection
        @Argument(help: "A user id or any of their email addresses.") var user: String

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let reference = try await client.userReference(self.user)
                let user = try await client.call("GET", "/users/\(APIClient.query(reference))", as: Admin.User.self)
                if !self.connection.json { Output.user(user) }
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
                let new = Admin.NewUser(name: self.name, email: self.email, role: self.role, organizationId: self.organization)
                let user = try await self.connection.client().call("POST", "/users", json: new, as: Admin.User.self)
                if !self.connection.json {
                    print("Created " + Output.userLine(user))
                    Output.warnings(user)
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
            let changes = Admin.UserChanges(name: self.name, role: self.role, organizationId: self.organization, locale: self.locale)
            guard !changes.isEmpty else { throw ValidationError("say what to change: --name, --role, --organization or --locale") }
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let id = try await client.user(self.user).id
                let user = try await client.call("PATCH", "/users/\(APIClient.query(id))", json: changes, as: Admin.User.self)
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
            let id = try await client.user(user).id
            let changed = try await client.call("POST", "/users/\(APIClient.query(id))/\(action)", as: Admin.User.self)
            if !connection.json { print("\(action == "disable" ? "Disabled" : "Enabled") " + Output.userLine(changed)) }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create users from a CSV file (name,email,role,organization); all or nothing unless --partial.")
        @OptionGroup var connection: Connection
        @Argument(help: "The CSV file, UTF-8.") var file: String
        @Flag(help: "Create the good rows even when others are refused.") var partial = false

        /// A large import's commit may run for minutes on a busy directory, and the gateway
        /// gives each of its steps 120 s: waiting longer than that means an answer, not a retry
        /// that would only queue behind the first.
        static let answerTimeout: TimeInterval = 300

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
                var report: Admin.ImportReport
                while true {
                    attempt += 1
                    do {
                        report = try await client.call(
                            "POST", "/users/import\(self.partial ? "?partial=true" : "")", body: data, contentType: "text/csv", headers: ["Idempotency-Key": key],
                            timeout: Self.answerTimeout, as: Admin.ImportReport.self
                        )
                        break
                    } catch let failure as APIFailure where (failure.status == 0 || failure.status == 503) && attempt < 4 {
                        FileHandle.standardError.write(Data("rekey: \(failure); trying again (the same import, never twice)\n".utf8))
                        try await Task.sleep(for: .seconds(attempt * 2))
                    }
                }
                guard !self.connection.json else { return }
                let listed = report.rows.filter { $0.error != nil }
                for row in listed {
                    print("line \(row.line): \(row.error ?? "")")
                }
                if report.refused > listed.count {
                    print("(\(report.refused - listed.count) more refused rows not listed; fix those above and try again)")
                }
                if report.committed {
                    print("Created \(report.created) users; \(report.refused) rows refused.")
                } else {
                    print("Nothing was written: \(report.refused) rows refused\(self.partial ? "" : " (all-or-nothing; --partial creates the good rows)").")
                    throw ExitCode(1)
                }
            }
        }
    }
}
