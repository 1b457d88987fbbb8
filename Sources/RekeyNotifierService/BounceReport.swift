import Foundation

/// A report about a message after the relay took it: a delivery status notification (RFC 3464,
/// `multipart/report; report-type=delivery-status`) or a complaint (ARF, RFC 5965,
/// `report-type=feedback-report`: the recipient marked it as spam).
///
/// Parsing is defensive: reports come from anyone on the internet. Sizes, nesting and the number
/// of parts are bounded, anything unexpected makes the report unparsed (kept by the caller), and
/// nothing here can trap.
package struct BounceReport: Sendable, Equatable {
    package enum Kind: String, Sendable {
        case dsn, complaint
    }

    /// One recipient's block of a DSN.
    package struct Recipient: Sendable, Equatable {
        package var finalRecipient = ""
        package var originalRecipient = ""
        /// failed, delayed, delivered, relayed or expanded.
        package var action = ""
        /// The enhanced status code, `5.1.1`.
        package var status = ""
        /// The remote server's words, `smtp; 550 5.1.1 <jane@example.com>: User unknown`.
        package var diagnosticCode = ""
        package var remoteMTA = ""
    }

    package var kind: Kind
    package var recipients: [Recipient] = []
    /// ARF: abuse, fraud, virus, other, not-spam.
    package var feedbackType = ""
    /// Who wrote the report (Reporting-MTA, or the ARF User-Agent).
    package var reporter = ""
    /// ARF: the complaining recipient (Original-Rcpt-To).
    package var complainant = ""
    /// The Message-ID of the message the report is about, from the headers it returns.
    package var originalMessageID: String?
    /// The envelope recipients of the report as the MTA wrote them into the header
    /// (`Delivered-To`, `X-Original-To`) and its `To`: where a VERP address shows.
    package var addressedTo: [String] = []

    package init(kind: Kind) {
        self.kind = kind
    }

    /// A report larger than this is not read.
    package static let maximumSize = 10 << 20

    /// The report in `raw` (a whole message as received), or nil when it is not a DSN or ARF
    /// report (an auto-reply, a human answer, a bounce in no standard form).
    package static func parse(_ raw: [UInt8]) -> BounceReport? {
        guard raw.count <= Self.maximumSize, let top = Entity(raw, depth: 0) else { return nil }
        let addressedTo = ["delivered-to", "x-original-to", "to"].flatMap { top.headers($0) }.map(Self.bareAddress)
        guard top.type == "multipart/report" else { return nil }
        let parts = top.parts()
        var report: BounceReport
        switch top.parameter("report-type")?.lowercased() {
        case "delivery-status":
            guard let status = parts.first(where: { $0.type == "message/delivery-status" || $0.type == "message/global-delivery-status" }) else { return nil }
            report = BounceReport(kind: .dsn)
            let blocks = Self.fieldBlocks(status.decodedBody())
            report.reporter = Self.typedValue(blocks.first?["reporting-mta"] ?? "")
            for block in blocks.dropFirst() where block["action"] != nil || block["final-recipient"] != nil {
                var recipient = Recipient()
                recipient.finalRecipient = Self.bareAddress(Self.typedValue(block["final-recipient"] ?? ""))
                recipient.originalRecipient = Self.bareAddress(Self.typedValue(block["original-recipient"] ?? ""))
                recipient.action = (block["action"] ?? "").lowercased().trimmingCharacters(in: .whitespaces)
                recipient.status = (block["status"] ?? "").split(separator: " ").first.map(String.init) ?? ""
                recipient.diagnosticCode = block["diagnostic-code"] ?? ""
                recipient.remoteMTA = Self.typedValue(block["remote-mta"] ?? "")
                report.recipients.append(recipient)
            }
            guard !report.recipients.isEmpty else { return nil }
        case "feedback-report":
            guard let feedback = parts.first(where: { $0.type == "message/feedback-report" }) else { return nil }
            report = BounceReport(kind: .complaint)
            let fields = Self.fieldBlocks(feedback.decodedBody()).reduce(into: [String: String]()) { $0.merge($1) { first, _ in first } }
            report.feedbackType = (fields["feedback-type"] ?? "").lowercased().trimmingCharacters(in: .whitespaces)
            report.reporter = fields["user-agent"] ?? fields["reporting-mta"].map(Self.typedValue) ?? ""
            report.complainant = Self.bareAddress(fields["original-rcpt-to"] ?? "")
            guard !report.feedbackType.isEmpty else { return nil }
        default:
            return nil
        }
        report.addressedTo = addressedTo
        // The message it is about: its headers come back as text/rfc822-headers or message/rfc822.
        if let original = parts.first(where: { ["text/rfc822-headers", "message/rfc822", "message/global", "message/global-headers"].contains($0.type) }) {
            var body = original.decodedBody()
            body += [10, 10]
            if let returned = Entity(body, depth: 1), let id = returned.headers("message-id").first {
                report.originalMessageID = id.trimmingCharacters(in: CharacterSet(charactersIn: "<> \t"))
            }
        }
        return report
    }

    /// `rfc822; jane@example.com` → `jane@example.com`.
    static func typedValue(_ value: String) -> String {
        guard let semicolon = value.firstIndex(of: ";") else { return value.trimmingCharacters(in: .whitespaces) }
        return value[value.index(after: semicolon)...].trimmingCharacters(in: .whitespaces)
    }

    /// `Jane <jane@example.com>` → `jane@example.com`.
    static func bareAddress(_ value: String) -> String {
        if let open = value.lastIndex(of: "<"), let close = value.lastIndex(of: ">"), open < close {
            return String(value[value.index(after: open)..<close]).trimmingCharacters(in: .whitespaces)
        }
        return value.trimmingCharacters(in: .whitespaces)
    }

    /// Header-like blocks separated by blank lines (the body of message/delivery-status), names
    /// in lower case, continuation lines unfolded.
    static func fieldBlocks(_ body: [UInt8]) -> [[String: String]] {
        var blocks: [[String: String]] = []
        var current: [String: String] = [:]
        var last: String? = nil
        // "\r\n" is one Character in Swift: make the line ends plain before splitting.
        let normalized = String(decoding: body, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        for text in normalized.split(separator: "\n", omittingEmptySubsequences: false).prefix(2000) {
            if text.trimmingCharacters(in: .whitespaces).isEmpty {
                if !current.isEmpty { blocks.append(current) }
                current = [:]
                last = nil
            } else if text.first == " " || text.first == "\t", let name = last {
                current[name, default: ""] += " " + text.trimmingCharacters(in: .whitespaces)
            } else if let colon = text.firstIndex(of: ":") {
                let name = text[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
                if current[name] == nil {
                    current[name] = text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                last = name
            }
        }
        if !current.isEmpty { blocks.append(current) }
        return blocks
    }

    /// A MIME entity: its header fields and body, and its parts when it is multipart.
    struct Entity {
        let fields: [(name: String, value: String)]
        let body: ArraySlice<UInt8>
        let depth: Int

        init?(_ bytes: [UInt8], depth: Int) {
            self.init(bytes[...], depth: depth)
        }

        init?(_ bytes: ArraySlice<UInt8>, depth: Int) {
            guard depth <= 5 else { return nil }
            self.depth = depth
            // The header ends at the first empty line (CRLF or bare LF).
            var index = bytes.startIndex
            var lineStart = index
            var lines: [ArraySlice<UInt8>] = []
            var bodyStart: Int? = nil
            while index < bytes.endIndex {
                if bytes[index] == 10 {
                    var line = bytes[lineStart..<index]
                    if line.last == 13 { line = line.dropLast() }
                    if line.isEmpty {
                        bodyStart = index + 1
                        break
                    }
                    lines.append(line)
                    lineStart = index + 1
                    guard lines.count <= 1000 else { return nil }
                }
                index += 1
            }
            var fields: [(name: String, value: String)] = []
            for line in lines {
                if line.first == 0x20 || line.first == 0x09 {
                    guard !fields.isEmpty else { continue }
                    fields[fields.count - 1].value += " " + String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                } else if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
                    fields.append((
                        String(decoding: line[..<colon], as: UTF8.self).trimmingCharacters(in: .whitespaces).lowercased(),
                        String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
                    ))
                }
            }
            self.fields = fields
            self.body = bodyStart.map { bytes[min($0, bytes.endIndex)...] } ?? bytes[bytes.endIndex...]
        }

        func headers(_ name: String) -> [String] {
            self.fields.filter { $0.name == name }.map(\.value)
        }

        /// `type/subtype` in lower case; text/plain when absent.
        var type: String {
            let value = self.headers("content-type").first ?? "text/plain"
            return value.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? "text/plain"
        }

        func parameter(_ name: String) -> String? {
            guard let value = self.headers("content-type").first else { return nil }
            for piece in value.split(separator: ";").dropFirst() {
                let pair = piece.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == name else { continue }
                return pair[1].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
            return nil
        }

        /// The parts of a multipart entity (at most 50), nested multiparts flattened.
        func parts() -> [Entity] {
            guard self.type.hasPrefix("multipart/"), let boundary = self.parameter("boundary"), !boundary.isEmpty, boundary.utf8.count <= 200 else { return [] }
            let delimiter = Array(("--" + boundary).utf8)
            var pieces: [ArraySlice<UInt8>] = []
            var start: Int? = nil
            var index = self.body.startIndex
            // Delimiters start a line.
            while index < self.body.endIndex {
                let atLineStart = index == self.body.startIndex || self.body[index - 1] == 10
                if atLineStart, self.body[index...].starts(with: delimiter) {
                    if let start {
                        var end = index
                        if end > start, self.body[end - 1] == 10 { end -= 1 }
                        if end > start, self.body[end - 1] == 13 { end -= 1 }
                        pieces.append(self.body[start..<end])
                        guard pieces.count <= 50 else { break }
                    }
                    let after = index + delimiter.count
                    if self.body[after...].starts(with: [45, 45]) { break }
                    // The part starts on the next line.
                    var next = after
                    while next < self.body.endIndex, self.body[next] != 10 { next += 1 }
                    start = min(next + 1, self.body.endIndex)
                    index = start!
                    continue
                }
                index += 1
            }
            var entities: [Entity] = []
            for piece in pieces {
                guard let entity = Entity(piece, depth: self.depth + 1) else { continue }
                if entity.type.hasPrefix("multipart/") {
                    entities += entity.parts()
                } else {
                    entities.append(entity)
                }
            }
            return entities
        }

        /// The body with its Content-Transfer-Encoding undone (base64, quoted-printable).
        func decodedBody() -> [UInt8] {
            switch self.headers("content-transfer-encoding").first?.lowercased().trimmingCharacters(in: .whitespaces) {
            case "base64":
                let text = String(decoding: self.body, as: UTF8.self).filter { !$0.isWhitespace }
                return Data(base64Encoded: text, options: .ignoreUnknownCharacters).map(Array.init) ?? []
            case "quoted-printable":
                var output: [UInt8] = []
                var index = self.body.startIndex
                func hex(_ byte: UInt8) -> UInt8? {
                    switch byte {
                    case 48...57: byte - 48
                    case 65...70: byte - 55
                    case 97...102: byte - 87
                    default: nil
                    }
                }
                while index < self.body.endIndex {
                    let byte = self.body[index]
                    if byte == UInt8(ascii: "="), index + 1 < self.body.endIndex {
                        if self.body[index + 1] == 10 { index += 2; continue }
                        if self.body[index + 1] == 13, index + 2 < self.body.endIndex, self.body[index + 2] == 10 { index += 3; continue }
                        if index + 2 < self.body.endIndex, let high = hex(self.body[index + 1]), let low = hex(self.body[index + 2]) {
                            output.append(high << 4 | low)
                            index += 3
                            continue
                        }
                    }
                    output.append(byte)
                    index += 1
                }
                return output
            default:
                return Array(self.body)
            }
        }
    }
}
