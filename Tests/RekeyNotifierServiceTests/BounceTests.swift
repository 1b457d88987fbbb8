import Foundation
import RekeyClock
import RekeySQLite
import RekeyTesting
import Testing

@testable import RekeyNotifierService

@Suite("Bounces and complaints after delivery")
struct BounceTests {
    /// A corpus sample by name, parsed (a failure names the sample, not its bytes).
    static func parsed(_ name: String, messageID: String = "x@rekey.example", _ edit: (String) -> String = { $0 }) -> BounceReport? {
        let samples = [
            "postfix": BounceCorpus.postfix, "gmail": BounceCorpus.gmail, "outlook": BounceCorpus.outlook, "yahooDelayed": BounceCorpus.yahooDelayed,
            "yahooPlain": BounceCorpus.yahooPlain, "yahooComplaint": BounceCorpus.yahooComplaint,
        ]
        return BounceReport.parse(BounceCorpus.fill(edit(samples[name] ?? ""), messageID: messageID))
    }

    @Test("a Postfix DSN: the recipient's block, the remote server's words (unfolded), the returned Message-ID, the VERP address")
    func postfix() throws {
        let report = try #require(Self.parsed("postfix", messageID: "7.1@rekey.example"))
        #expect(report.kind == .dsn)
        #expect(report.reporter == "relay.rekey.example")
        #expect(report.originalMessageID == "7.1@rekey.example")
        #expect(report.addressedTo.contains("bounces+m_0123@bounces.rekey.example"))
        let recipient = try #require(report.recipients.first)
        #expect(recipient.finalRecipient == "jane@example.com" && recipient.action == "failed" && recipient.status == "5.1.1")
        #expect(recipient.remoteMTA == "mx.example.com")
        #expect(recipient.diagnosticCode == "smtp; 550 5.1.1 <jane@example.com>: Recipient address rejected: User unknown")
    }

    @Test("Gmail (nested multipart, folded diagnostic, the original returned whole) and Exchange Online (quoted-printable notice, RESOLVER code)")
    func providers() throws {
        let gmail = try #require(Self.parsed("gmail", messageID: "g@rekey.example"))
        #expect(gmail.recipients.map(\.status) == ["5.1.1"])
        #expect(gmail.recipients[0].diagnosticCode.hasPrefix("smtp; 550-5.1.1 The email account that you tried to reach does not exist."))
        #expect(gmail.recipients[0].remoteMTA.hasPrefix("gmail-smtp-in.l.google.com."))
        #expect(gmail.originalMessageID == "g@rekey.example")
        let outlook = try #require(Self.parsed("outlook", messageID: "o@rekey.example"))
        #expect(outlook.recipients[0].status == "5.1.10")
        #expect(outlook.recipients[0].diagnosticCode.contains("RESOLVER.ADR.RecipientNotFound"))
        #expect(outlook.originalMessageID == "o@rekey.example", "a folded Message-ID header")
        #expect(outlook.reporter == "AM0PR01MB1234.eurprd01.prod.exchangelabs.com")
    }

    @Test("Yahoo: a delayed DSN in base64, a plain-text bounce that is no report, and an ARF complaint")
    func yahoo() throws {
        let delayed = try #require(Self.parsed("yahooDelayed"))
        #expect(delayed.recipients.first?.action == "delayed" && delayed.recipients.first?.status == "4.2.2")
        #expect(Self.parsed("yahooPlain") == nil)
        let complaint = try #require(Self.parsed("yahooComplaint", messageID: "c@rekey.example"))
        #expect(complaint.kind == .complaint && complaint.feedbackType == "abuse")
        #expect(complaint.reporter == "Yahoo!-Mail-Feedback/2.0" && complaint.complainant == "kim@yahoo.com")
        #expect(complaint.originalMessageID == "c@rekey.example")
    }

    @Test("garbage, truncations and bit flips of every sample never trap; no report is no report")
    func hostile() {
        #expect(BounceReport.parse([]) == nil)
        #expect(BounceReport.parse(Array("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n".utf8)) == nil)
        #expect(BounceReport.parse([UInt8](repeating: 0x2D, count: 100_000)) == nil)
        var generator = SystemRandomNumberGenerator()
        for sample in [BounceCorpus.postfix, BounceCorpus.gmail, BounceCorpus.outlook, BounceCorpus.yahooDelayed, BounceCorpus.yahooComplaint] {
            let bytes = BounceCorpus.fill(sample, messageID: "x@y")
            for cut in stride(from: 0, to: bytes.count, by: 7) { _ = BounceReport.parse(Array(bytes.prefix(cut))) }
            for _ in 0..<300 {
                var mutated = bytes
                for _ in 0..<4 { mutated[Int.random(in: 0..<mutated.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
                _ = BounceReport.parse(mutated)
            }
        }
    }

    /// A store with VERP, and one message sent and accepted.
    static func accepted(to address: String = "jane@example.com", _ backend: Backend) async throws -> (OutboxFixture, MessageRecord) {
        let f = try await OutboxFixture(backend, bounceDomain: "bounces.rekey.example")
        let id = try f.queuedID(try await f.enqueue(OutboxStoreTests.reset(to: address)))
        let claimed = try #require(try await f.claim())
        try await f.store.finish(claimed, result: OutboxStoreTests.reply(.accepted, stage: "END", code: 250, text: "2.0.0 Ok"))
        let message = try await f.store.message(id: id)
        #expect(f.store.configuration.envelopeSender(for: id) == "bounces+\(id)@bounces.rekey.example")
        return (f, message)
    }

    @Test("a DSN that names the message (VERP or Message-ID): bounced, on the timeline, the address suppressed for a mailbox status only", arguments: Backend.allCases)
    func recorded(backend: Backend) async throws {
        let (f, message) = try await Self.accepted(backend)
        let store = f.store
        let report = try #require(Self.parsed("postfix", messageID: "nothing-of-ours") { $0.replacingOccurrences(of: "m_0123", with: message.id) })
        let outcome = try await store.recordReport(report)
        #expect(outcome == .recorded(messageID: message.id, state: .bounced, suppressed: true))
        let after = try await store.message(id: message.id)
        #expect(after.state == .bounced)
        #expect(after.reason.hasPrefix("bounced after delivery, address suppressed: 5.1.1 (smtp; 550 5.1.1"), "\(after.reason)")
        #expect(after.reports.map(\.action) == ["failed"] && after.reports[0].remoteMTA == "mx.example.com")
        let suppressions = try await store.suppressions(address: "jane@example.com", pageSize: 10, pageToken: "").suppressions
        #expect(suppressions.first?.reason.contains("bounced after delivery") == true)

        // By Message-ID alone (Exchange sends no VERP), and a policy refusal suppresses nothing.
        let (f2, other) = try await Self.accepted(to: "pat@contoso.com", backend)
        let store2 = f2.store
        let found = try #require(Self.parsed("outlook", messageID: other.messageIDHeader) { $0.replacingOccurrences(of: "Status: 5.1.10", with: "Status: 5.7.1") })
        #expect(try await store2.recordReport(found) == .recorded(messageID: other.id, state: .bounced, suppressed: false))

        // A delayed report is kept on the timeline and changes nothing; a stranger's is unmatched.
        let delayed = try #require(Self.parsed("yahooDelayed", messageID: other.messageIDHeader))
        #expect(try await store2.recordReport(delayed) == .recorded(messageID: other.id, state: .bounced, suppressed: false))
        let stranger = try #require(Self.parsed("gmail", messageID: "not-ours@elsewhere"))
        #expect(try await store2.recordReport(stranger) == .unmatched)
    }

    @Test("a complaint suppresses the address and stays on the message's timeline; the message stays delivered", arguments: Backend.allCases)
    func complaint(backend: Backend) async throws {
        let (f, message) = try await Self.accepted(to: "kim@yahoo.com", backend)
        let store = f.store
        let report = try #require(Self.parsed("yahooComplaint", messageID: message.messageIDHeader))
        #expect(try await store.recordReport(report) == .recorded(messageID: message.id, state: .accepted, suppressed: true))
        let after = try await store.message(id: message.id)
        #expect(after.state == .accepted && after.reports.map(\.kind) == ["complaint"] && after.reports[0].feedbackType == "abuse")
        let suppressions = try await store.suppressions(address: "kim@yahoo.com", pageSize: 10, pageToken: "").suppressions
        #expect(suppressions.first?.reason == "complaint: the recipient marked it as spam (Yahoo!-Mail-Feedback/2.0)")
    }
}
