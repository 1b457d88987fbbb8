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
        subcommands: [Login.self, Users.self, Orgs.self, Reset.self, Verify.self, Messages.self, Message.self, Suppressions.self, Diagnose.self, Mail.self, Certs.self]
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
