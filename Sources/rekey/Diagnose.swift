import ArgumentParser
import Foundation
import RekeyAdminModel
import RekeyInput

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
            let report = try await self.connection.client().call(
                "GET", "/diagnosis?user=\(APIClient.query(self.user))&since=\(APIClient.query(self.since))", as: Admin.Diagnosis.self
            )
            if !self.connection.json { DiagnosisText.print(report) }
        }
    }
}

/// The diagnosis as a support engineer reads it in a terminal.
enum DiagnosisText {
    static func print(_ report: Admin.Diagnosis) {
        func out(_ line: String = "") { Swift.print(line) }
        out("Diagnosis \(report.reportId) for `\(report.input)` since \(report.since)")
        out()
        out("Who and where")
        if let who = report.who {
            out("  \(who.name) (\(who.userId), \(who.role), \(who.state), password \(who.hasPassword ? "set" : "not set"))")
            if let matched = who.matchedAddress {
                out("  typed address \(matched): \(who.matchedIsPrimary == true ? "primary" : "SECONDARY")\(who.matchedVerified == true ? ", verified" : ", unverified")")
            }
            out("  reset mail goes to \(who.primaryAddress)\(who.primaryVerified ? " (verified)" : " (unverified)")")
        } else {
            out("  no user found")
            for candidate in report.candidates { out("  candidate: \(candidate)") }
        }
        out()
        out("What was asked")
        if report.requests.isEmpty { out("  nothing in the window") }
        for request in report.requests {
            let by = request.by == "self" ? "the user" : "admin \(request.by)"
            if request.kind == "opened" {
                // Opened by whoever had the link: the user, or a scanner (the detail says which).
                out("  \(request.at ?? "")  \(request.purpose) link opened from \(request.clientAddress): \(request.detail)")
            } else {
                out("  \(request.at ?? "")  \(request.purpose) \(request.kind) by \(by) from \(request.clientAddress)\(request.detail.isEmpty ? "" : " (\(request.detail))")")
            }
        }
        out()
        out("What the mail system did")
        if report.messages.isEmpty { out("  no email in the window") }
        report.messages.forEach { Output.message($0, indent: "  ") }
        if let suppression = report.suppression { out("  SUPPRESSED: \(suppression)") }
        out()
        out("Platform")
        let platform = report.platform
        if !platform.unreachable.isEmpty { out("  NOT ANSWERING: \(platform.unreachable.joined(separator: ", "))") }
        if let depth = platform.queueDepth {
            out("  queue: \(depth) waiting, oldest \(platform.oldestQueuedAgeSeconds ?? 0) s; last delivery \(platform.lastAcceptedAt ?? "never") via \(platform.transport ?? "") \(platform.server ?? "")")
            out("  last hour: \(platform.recentAccepted ?? 0) delivered, \(platform.recentTemporaryFailures ?? 0) temporary and \(platform.recentPermanentFailures ?? 0) permanent failures")
            if let domain = platform.recipientDomain {
                out("  \(domain): \(platform.recipientDomainAccepted ?? 0) delivered, \(platform.recipientDomainFailures ?? 0) failures")
            }
        }
        out()
        out("Verdict, most likely first")
        for (index, finding) in report.findings.enumerated() {
            out("  \(index + 1). \(finding.summary)")
            out("     Next: \(finding.nextStep)")
            for evidence in finding.evidence { out("     · \(evidence)") }
        }
        if let escalation = report.escalation {
            out()
            out("Paste into the ticket:")
            out("-----")
            out(escalation)
            out("-----")
        }
    }
}
