/// Bounces (DSNs) and complaints (ARF) that arrive after the relay took a message.
extension OutboxStore {
    /// The local part's prefix of VERP envelope senders: `bounces+m_…@bounce.example.com`.
    package static let verpPrefix = "bounces+"

    package enum ReportOutcome: Sendable, Equatable {
        /// Recorded on the message's timeline; `state` is the message's state after it, and
        /// `suppressed` says whether the address went on the suppression list.
        case recorded(messageID: String, state: MessageStateValue, suppressed: Bool)
        /// It names no message of ours (kept by the caller, and counted).
        case unmatched
    }

    /// The message id a VERP address names (`bounces+m_…@<bounce domain>`), if it is one of ours.
    func verpMessageID(_ address: String) -> String? {
        guard let domain = self.configuration.bounceDomain, let at = address.lastIndex(of: "@"),
              address[address.index(after: at)...].lowercased() == domain.lowercased()
        else { return nil }
        let local = address[..<at]
        guard local.lowercased().hasPrefix(Self.verpPrefix) else { return nil }
        let id = String(local.dropFirst(Self.verpPrefix.count))
        return id.hasPrefix("m_") && id.utf8.count <= 64 ? id : nil
    }

    /// Records `report` on the message it is about (found by its VERP address, else by the
    /// Message-ID it returns). A DSN whose action is `failed` marks the message bounced, and
    /// suppresses the address when the status is about the mailbox (as a refusal at RCPT would);
    /// a complaint suppresses the address. Other actions (delayed, delivered, relayed) are
    /// recorded only.
    package func recordReport(_ report: BounceReport, envelopeRecipients: [String] = []) async throws -> ReportOutcome {
        let now = self.clock.nowMilliseconds()
        let ids = (envelopeRecipients + report.addressedTo).compactMap(self.verpMessageID)
        guard let (message, effect) = try await self.repository.recordReport(
            messageIDs: ids, messageIDHeader: report.originalMessageID, decide: { message in Self.effect(of: report, on: message, at: now) }
        ) else {
            return .unmatched
        }
        return .recorded(messageID: message.id, state: effect.newState?.state ?? message.state, suppressed: effect.suppress != nil)
    }

    /// What `report` does to `message`: always a line on its timeline; maybe a new state, and an
    /// address for the suppression list.
    static func effect(of report: BounceReport, on message: MessageRecord, at now: Int64) -> ReportEffect {
        var suppress: String? = nil
        var effect: ReportEffect
        switch report.kind {
        case .dsn:
            let ours = report.recipients.first { $0.finalRecipient.lowercased() == message.toAddress.lowercased() } ?? report.recipients[0]
            effect = ReportEffect(report: Self.reportRecord(
                at: now, kind: "dsn", action: ours.action, status: ours.status, diagnostic: ours.diagnosticCode,
                remoteMTA: ours.remoteMTA, recipient: ours.finalRecipient, feedbackType: "", reporter: report.reporter
            ))
            if ours.action == "failed" {
                let words = Self.remoteWords(ours)
                if DeliveryResult.isAboutMailbox(ours.status) {
                    suppress = "bounced after delivery: \(words)"
                }
                effect.newState = (.bounced, "bounced after delivery\(suppress == nil ? "" : ", address suppressed"): \(words)")
            }
        case .complaint:
            effect = ReportEffect(report: Self.reportRecord(
                at: now, kind: "complaint", action: "", status: "", diagnostic: "", remoteMTA: "",
                recipient: report.complainant, feedbackType: report.feedbackType, reporter: report.reporter
            ))
            if report.feedbackType != "not-spam" {
                suppress = "complaint: the recipient marked it as \(report.feedbackType == "abuse" ? "spam" : report.feedbackType)\(report.reporter.isEmpty ? "" : " (\(report.reporter))")"
            }
        }
        if let suppress, let address = try? OutboxStore.validAddress(message.toAddress) {
            effect.suppress = Suppression(
                address: address.address, normalized: address.normalized, reason: String(suppress.prefix(500)), messageID: message.id, at: now
            )
        }
        return effect
    }

    /// `5.1.1 (smtp; 550 5.1.1 <jane@example.com>: User unknown) from mx.example.com`.
    static func remoteWords(_ recipient: BounceReport.Recipient) -> String {
        var words = recipient.status
        if !recipient.diagnosticCode.isEmpty { words += " (\(recipient.diagnosticCode))" }
        if !recipient.remoteMTA.isEmpty { words += " from \(recipient.remoteMTA)" }
        return String(words.prefix(400))
    }

    /// Reports come from the internet: every field is bounded before it is kept.
    private static func reportRecord(
        at now: Int64, kind: String, action: String, status: String, diagnostic: String, remoteMTA: String, recipient: String,
        feedbackType: String, reporter: String
    ) -> ReportRecord {
        func bounded(_ text: String, _ limit: Int = 200) -> String {
            String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(limit).map(Character.init))
        }
        return ReportRecord(
            receivedAt: now, kind: kind, action: bounded(action, 20), status: bounded(status, 20), diagnostic: bounded(diagnostic, 500),
            remoteMTA: bounded(remoteMTA), recipient: bounded(recipient, 254), feedbackType: bounded(feedbackType, 40), reporter: bounded(reporter)
        )
    }
}
