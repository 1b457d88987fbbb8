import ArgumentParser
import Foundation
import RekeyAdminModel

struct Reset: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Password reset email.", subcommands: [Send.self])

    struct Send: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a password reset email to the user's primary address.")
        @OptionGroup var connection: Connection
        @Argument(help: "A user id or any of their email addresses.") var user: String

        func run() async throws {
            try await RekeyCommand.run {
                // One call for an id or an address: the gateway resolves the user once.
                let client = try self.connection.client()
                let reference = try await client.userReference(self.user)
                let sent = try await client.call("POST", "/users/\(APIClient.query(reference))/password-reset", as: Admin.SentMail.self)
                if !self.connection.json { Output.sent(sent, what: "Password reset email") }
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
                let reference = try await client.userReference(self.user)
                let path = "/users/\(APIClient.query(reference))/verification"
                let sent: Admin.SentMail
                if let emailId {
                    sent = try await client.call("POST", path, json: Admin.VerificationRequest(emailId: emailId))
                } else {
                    sent = try await client.call("POST", path)
                }
                if !self.connection.json { Output.sent(sent, what: "Verification email") }
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
            let page = try await client.call("GET", "/users/\(APIClient.query(user.id))/messages", as: Admin.MessagesPage.self)
            guard !self.connection.json else { return }
            if page.messages.isEmpty { print("No email was sent to \(user.name).") }
            page.messages.forEach { Output.message($0) }
        }
    }
}

struct Message: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One message and its timeline.")
    @OptionGroup var connection: Connection
    @Argument(help: "The message id (m_…).") var id: String

    func run() async throws {
        try await RekeyCommand.run {
            let message = try await self.connection.client().call("GET", "/messages/\(APIClient.query(self.id))", as: Admin.Message.self)
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
                let page = try await self.connection.client().call(
                    "GET", "/suppressions" + (self.address.map { "?address=\(APIClient.query($0))" } ?? ""), as: Admin.SuppressionsPage.self
                )
                guard !self.connection.json else { return }
                if page.suppressions.isEmpty { print("No address is suppressed.") }
                for item in page.suppressions {
                    print("\(item.address)  since \(item.createdAt ?? "")  \(item.reason)")
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
                _ = try await self.connection.client().call("DELETE", "/suppressions/\(APIClient.query(self.address))", as: Admin.Suppression.self)
                if !self.connection.json { print("\(self.address) removed from the suppression list.") }
            }
        }
    }
}

struct Mail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mail checks.", subcommands: [Test.self, CheckDomain.self])

    struct CheckDomain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "check-domain",
            abstract: "What receivers will make of our mail: SPF, DKIM, DMARC and MX of the sending domain, the templates and the link host, with what to publish to fix each.",
            discussion: "Exits 1 when any finding is a problem (for a monitoring check), 0 otherwise."
        )
        @OptionGroup var connection: Connection
        @Flag(help: "Look up DNS again now instead of using a check at most a minute old.") var fresh = false

        func run() async throws {
            try await RekeyCommand.run {
                let client = try self.connection.client()
                let report = try await client.call("GET", "/mail/domain-check" + (self.fresh ? "?fresh=true" : ""), as: Admin.DomainCheck.self)
                if !self.connection.json { Self.print(report) }
                if report.findings.contains(where: { $0.status == "problem" }) { throw ExitCode(1) }
            }
        }

        static func print(_ report: Admin.DomainCheck) {
            Swift.print("Sending domain \(report.fromDomain) (envelope \(report.envelopeDomain), DKIM \(report.dkimDomain.isEmpty ? "not signed" : "d=\(report.dkimDomain)"))")
            Swift.print("Checked \(report.checkedAt ?? "just now") with the DNS server \(report.dnsServer)")
            Swift.print("")
            let marks = ["ok": "ok     ", "warning": "WARNING", "problem": "PROBLEM"]
            for finding in report.findings {
                Swift.print("\(marks[finding.status] ?? finding.status.uppercased())  \(finding.check.uppercased()): \(finding.summary)")
                if !finding.evidence.isEmpty, finding.status != "ok" { Swift.print("         found: \(finding.evidence)") }
                if !finding.fix.isEmpty { Swift.print("         fix:   \(finding.fix)") }
            }
            let problems = report.findings.filter { $0.status == "problem" }.count
            let warnings = report.findings.filter { $0.status == "warning" }.count
            Swift.print("")
            Swift.print(problems == 0 && warnings == 0 ? "All checks pass." : "\(problems) problem\(problems == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s").")
        }
    }

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
                let sent = try await client.call("POST", "/mail/test", json: Admin.MailTest(address: self.address), as: Admin.SentMail.self)
                if sent.status == "suppressed" {
                    print("Not sent: \(self.address) is on the suppression list. See `rekey suppressions list --address \(self.address)`.")
                    throw ExitCode(1)
                }
                let deadline = ContinuousClock.now + .seconds(self.timeout)
                var message: Admin.Message
                repeat {
                    message = try await client.quiet.call("GET", "/messages/\(APIClient.query(sent.messageId))", as: Admin.Message.self)
                    if ["accepted", "failed"].contains(message.state) { break }
                    try await Task.sleep(for: .milliseconds(250))
                } while ContinuousClock.now < deadline
                Output.message(message)
                switch message.state {
                case "accepted": print("Delivered: the mail system accepted the test message.")
                case "failed": print("Failed: \(message.reason)"); throw ExitCode(1)
                default: print("Still \(message.state) after \(self.timeout) s: \(message.reason)"); throw ExitCode(1)
                }
            }
        }
    }
}
