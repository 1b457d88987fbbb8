import RekeySQLite

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
    package func recordReport(_ report: BounceReport, envelopeRecipients: [String] = [], in connection: SQLiteConnection) throws -> ReportOutcome {
        try connection.transaction { connection in
            var seq: Int64? = nil
            for address in envelopeRecipients + report.addressedTo {
                if let id = self.verpMessageID(address), let found = try connection.queryFirst("SELECT seq FROM messages WHERE id = ?", .text(id))?.int("seq") {
                    seq = found
                    break
                }
            }
            if seq == nil, let messageID = report.originalMessageID, !messageID.isEmpty {
                seq = try connection.queryFirst("SELECT seq FROM messages WHERE message_id_header = ?", .text(messageID))?.int("seq")
            }
            guard let seq else { return .unmatched }
            let message = try self.message(seq: seq, in: connection)
            let now = self.clock.nowMilliseconds()
            var state = message.state
            var suppress: String? = nil
            switch report.kind {
            case .dsn:
                let ours = report.recipients.first { $0.finalRecipient.lowercased() == message.toAddress.lowercased() } ?? report.recipients[0]
                try self.insertReport(
                    seq: seq, now: now, kind: "dsn", action: ours.action, status: ours.status, diagnostic: ours.diagnosticCode,
                    remoteMTA: ours.remoteMTA, recipient: ours.finalRecipient, feedbackType: "", reporter: report.reporter, in: connection
                )
                if ours.action == "failed" {
                    state = .bounced
                    let words = Self.remoteWords(ours)
                    if DeliveryResult.isAboutMailbox(ours.status) {
                        suppress = "bounced after delivery: \(words)"
                    }
                    try connection.run(
                        "UPDATE messages SET state = ?, reason = ?, updated_at = ?, content = NULL WHERE seq = ?",
                        .integer(MessageStateValue.bounced.rawValue),
                        .text("bounced after delivery\(suppress == nil ? "" : ", address suppressed"): \(words)"), .integer(now), .integer(seq)
                    )
                }
            case .complaint:
                try self.insertReport(
                    seq: seq, now: now, kind: "complaint", action: "", status: "", diagnostic: "", remoteMTA: "",
                    recipient: report.complainant, feedbackType: report.feedbackType, reporter: report.reporter, in: connection
                )
                if report.feedbackType != "not-spam" {
                    suppress = "complaint: the recipient marked it as \(report.feedbackType == "abuse" ? "spam" : report.feedbackType)\(report.reporter.isEmpty ? "" : " (\(report.reporter))")"
                }
            }
            if let suppress {
                try Self.suppress(message.toAddress, reason: String(suppress.prefix(500)), messageID: message.id, now: now, in: connection)
            }
            return .recorded(messageID: message.id, state: state, suppressed: suppress != nil)
        }
    }

    /// `5.1.1 (smtp; 550 5.1.1 <jane@example.com>: User unknown) from mx.example.com`.
    static func remoteWords(_ recipient: BounceReport.Recipient) -> String {
        var words = recipient.status
        if !recipient.diagnosticCode.isEmpty { words += " (\(recipient.diagnosticCode))" }
        if !recipient.remoteMTA.isEmpty { words += " from \(recipient.remoteMTA)" }
        return String(words.prefix(400))
    }

    private func insertReport(
        seq: Int64, now: Int64, kind: String, action: String, status: String, diagnostic: String, remoteMTA: String, recipient: String,
        feedbackType: String, reporter: String, in connection: SQLiteConnection
    ) throws {
        // Reports come from the internet: every field is bounded before it is kept.
        func bounded(_ text: String, _ limit: Int = 200) -> String {
            String(text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(limit).map(Character.init))
        }
        try connection.run(
            """
            INSERT INTO reports (message_seq, received_at, kind, action, status, diagnostic, remote_mta, recipient, feedback_type, reporter)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            .integer(seq), .integer(now), .text(kind), .text(bounded(action, 20)), .text(bounded(status, 20)), .text(bounded(diagnostic, 500)),
            .text(bounded(remoteMTA)), .text(bounded(recipient, 254)), .text(bounded(feedbackType, 40)), .text(bounded(reporter))
        )
    }

    static func report(_ row: SQLiteRow) -> ReportRecord {
        ReportRecord(
            receivedAt: row.int("received_at") ?? 0, kind: row.string("kind") ?? "", action: row.string("action") ?? "",
            status: row.string("status") ?? "", diagnostic: row.string("diagnostic") ?? "", remoteMTA: row.string("remote_mta") ?? "",
            recipient: row.string("recipient") ?? "", feedbackType: row.string("feedback_type") ?? "", reporter: row.string("reporter") ?? ""
        )
    }
}
