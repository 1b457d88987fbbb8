import ArgumentParser
import RekeyAdminModel

struct Orgs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Organizations.", subcommands: [List.self, Create.self, Update.self, Delete.self])

    struct List: AsyncParsableCommand {
        @OptionGroup var connection: Connection

        func run() async throws {
            try await RekeyCommand.run {
                let list = try await self.connection.client().call("GET", "/organizations", as: Admin.Organizations.self)
                guard !self.connection.json else { return }
                for organization in list.organizations {
                    print("\(organization.id)  \(organization.name)  \(organization.domains.joined(separator: ","))")
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
                let created = try await self.connection.client().call(
                    "POST", "/organizations", json: Admin.NewOrganization(name: self.name, domains: self.domain), as: Admin.Organization.self
                )
                if !self.connection.json { print("Created \(created.id)  \(created.name)") }
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
            let changes = Admin.OrganizationChanges(name: self.name, domains: self.domain.isEmpty ? nil : self.domain)
            guard changes.name != nil || changes.domains != nil else { throw ValidationError("say what to change: --name or --domain") }
            try await RekeyCommand.run {
                let updated = try await self.connection.client().call("PATCH", "/organizations/\(APIClient.query(self.id))", json: changes, as: Admin.Organization.self)
                if !self.connection.json { print("Updated \(updated.id)  \(updated.name)") }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete an organization nobody belongs to any more.")
        @OptionGroup var connection: Connection
        @Argument(help: "The organization id (o_…).") var id: String

        func run() async throws {
            try await RekeyCommand.run {
                _ = try await self.connection.client().call("DELETE", "/organizations/\(APIClient.query(self.id))", as: Admin.Deleted.self)
                if !self.connection.json { print("Deleted \(self.id).") }
            }
        }
    }
}
