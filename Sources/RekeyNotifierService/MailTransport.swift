import Foundation
import NIOPosix

/// How one delivery attempt ended.
package struct DeliveryResult: Sendable, Hashable {
    package var outcome: AttemptOutcomeValue
    /// The step that got the deciding reply (CONNECT, GREETING, EHLO, AUTH, MAIL, RCPT, DATA, END).
    package var stage: String
    package var replyCode: Int = 0
    package var enhancedStatus: String = ""
    package var replyText: String = ""
    package var remoteQueueID: String = ""
    /// A network or local problem, when there was no reply.
    package var error: String = ""

    package init(outcome: AttemptOutcomeValue, stage: String) {
        self.outcome = outcome
        self.stage = stage
    }

    /// One line for the message's reason: the reply or the error.
    package var summary: String {
        if self.replyCode > 0 {
            return "\(self.stage): \(self.replyCode) \(self.enhancedStatus.isEmpty ? "" : self.enhancedStatus + " ")\(self.replyText)"
        }
        return "\(self.stage): \(self.error)"
    }
}

extension DeliveryResult {
    /// Who a permanent (5xx) refusal is about.
    package enum Refusal: Sendable, Hashable {
        /// The recipient's mailbox: it does not exist, its domain does not, it is disabled or
        /// full. Only these suppress the address.
        case mailbox
        /// Our side, as the relay sees it: its policy or our setup (HELO name, sender, relay
        /// access, authentication, TLS required, SMTPUTF8 not declared, the address as we wrote
        /// it). Every recipient would get the same answer, so the message is kept and retried,
        /// and nothing is suppressed.
        case relaySetup
        /// This message: its content or size, refused after DATA.
        case message
    }

    /// Whether a permanent enhanced status code (RFC 3463) is about the recipient's mailbox: bad
    /// mailbox, bad domain, moved, null MX (5.1.0, 5.1.1, 5.1.2, 5.1.6, 5.1.10); disabled, full
    /// (5.2.0–5.2.2). Used for refusals at RCPT and for bounces that come later alike.
    package static func isAboutMailbox(_ enhancedStatus: String) -> Bool {
        let parts = enhancedStatus.split(separator: ".")
        guard parts.count == 3, parts[0] == "5", let subject = Int(parts[1]), let detail = Int(parts[2]) else { return false }
        switch (subject, detail) {
        case (1, 0), (1, 1), (1, 2), (1, 6), (1, 10), (2, 0), (2, 1), (2, 2): return true
        default: return false
        }
    }

    /// What a permanent refusal is about, from its stage and its enhanced status code (RFC 3463:
    /// `5.1.x` addressing, `5.2.x` mailbox; `5.5.x` protocol, `5.6.x` content, `5.7.x` policy
    /// are about us). A refused RCPT without an enhanced code counts as the mailbox only for the
    /// replies RFC 5321 gives for one (550, 551, 553).
    package var refusal: Refusal {
        // Too large (RFC 3463 5.3.4; 552 to MAIL FROM with SIZE): this message, wherever it was
        // said; so is what the notifier refused to send itself (no reply, a 5.x.x of its own).
        if self.enhancedStatus == "5.3.4" || (self.stage == "MAIL" && self.replyCode == 552 && self.enhancedStatus.isEmpty)
            || (self.replyCode == 0 && self.enhancedStatus.hasPrefix("5.")) {
            return .message
        }
        switch self.stage {
        case "RCPT":
            guard self.enhancedStatus.split(separator: ".").count == 3 else {
                return [550, 551, 553].contains(self.replyCode) ? .mailbox : .relaySetup
            }
            return Self.isAboutMailbox(self.enhancedStatus) ? .mailbox : .relaySetup
        case "DATA", "END":
            return .message
        default:
            return .relaySetup
        }
    }
}

/// Sends rendered messages. One value serves one delivery worker at a time, and may keep a
/// connection open between messages.
package protocol MailTransport: Sendable {
    /// `smtp` or `maildir`.
    var name: String { get }
    /// Where it sends to: host:port, or the folder.
    var destination: String { get }
    func deliver(from: String, to: String, content: [UInt8]) async -> DeliveryResult
    /// Closes what it holds open (politely: QUIT).
    func close() async
}

/// Writes each message as a file in a maildir folder (`tmp/`, then renamed into `new/`): the
/// embedded default when there is no mail server. Mail readers such as mutt open the folder.
package struct MaildirTransport: MailTransport {
    package let folder: String
    package var name: String { "maildir" }
    package var destination: String { self.folder }

    package init(folder: String) throws {
        self.folder = folder
        for sub in ["tmp", "new", "cur"] {
            try FileManager.default.createDirectory(atPath: folder + "/" + sub, withIntermediateDirectories: true)
        }
    }

    package func deliver(from: String, to: String, content: [UInt8]) async -> DeliveryResult {
        // The write ends in an fsync: on the blocking-I/O pool, never on an event loop, where it
        // would hold up every call on that loop (the outbox commits among them).
        do {
            return try await NIOThreadPool.singleton.runIfActive { self.write(from: from, to: to, content: content) }
        } catch {
            var result = DeliveryResult(outcome: .temporaryFailure, stage: "WRITE")
            result.error = "cannot write to \(self.folder): \(error)"
            return result
        }
    }

    private func write(from: String, to: String, content: [UInt8]) -> DeliveryResult {
        let unique = "\(Int64(Date().timeIntervalSince1970 * 1000)).\(UUID().uuidString.prefix(8)).rekey"
        let temporary = self.folder + "/tmp/" + unique
        let final = self.folder + "/new/" + unique + ".eml"
        do {
            let header = Array("Return-Path: <\(from)>\r\nDelivered-To: \(to)\r\n".utf8)
            let data = Data(header + content)
            guard FileManager.default.createFile(atPath: temporary, contents: data) else {
                throw CocoaError(.fileWriteUnknown)
            }
            try FileManager.default.moveItem(atPath: temporary, toPath: final)
            var result = DeliveryResult(outcome: .accepted, stage: "WRITE")
            result.remoteQueueID = unique + ".eml"
            return result
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            var result = DeliveryResult(outcome: .temporaryFailure, stage: "WRITE")
            result.error = "cannot write to \(self.folder): \(error.localizedDescription)"
            return result
        }
    }

    package func close() async {}
}
