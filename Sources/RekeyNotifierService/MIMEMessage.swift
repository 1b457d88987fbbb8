import Foundation
import RekeyCrypto
import RekeyInput

/// Builds RFC 5322 messages: `multipart/alternative` with a text and an HTML part, both UTF-8 and
/// quoted-printable, headers folded and non-ASCII words encoded per RFC 2047. Lines end in CRLF.
package struct MIMEMessage: Sendable {
    package struct Mailbox: Sendable {
        package var address: String
        package var name: String

        package init(address: String, name: String = "") {
            self.address = address
            self.name = name
        }
    }

    package var from: Mailbox
    package var to: Mailbox
    package var subject: String
    package var messageID: String
    package var date: Date
    package var text: String
    package var html: String
    /// Extra headers, such as `X-Rekey-Template`.
    package var extraHeaders: [(String, String)] = []

    package init(from: Mailbox, to: Mailbox, subject: String, messageID: String, date: Date, text: String, html: String) {
        self.from = from
        self.to = to
        self.subject = subject
        self.messageID = messageID
        self.date = date
        self.text = text
        self.html = html
    }

    /// A header value may not carry a line break: it would start a new header.
    package static func checkHeaderValue(_ value: String, field: String) throws {
        if value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }) {
            throw NotifierError.invalidArgument("\(field) contains a line break (CR or LF), which would inject a header")
        }
        if value.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F }) {
            throw NotifierError.invalidArgument("\(field) contains control characters")
        }
    }

    /// The message, ready for SMTP DATA (before dot-stuffing) or a maildir file.
    package func render() throws -> [UInt8] {
        try Self.checkHeaderValue(self.subject, field: "the subject")
        try Self.checkHeaderValue(self.to.name, field: "to_name")
        try Self.checkHeaderValue(self.to.address, field: "to_address")
        try Self.checkHeaderValue(self.from.name, field: "the sender name")
        try Self.checkHeaderValue(self.from.address, field: "the sender address")
        let boundary = "=_rekey_" + Hex.encode(try OpenSSL.randomBytes(12))
        var lines: [String] = []
        lines.append(Self.fold("Message-ID", "<\(self.messageID)>"))
        lines.append(Self.fold("Date", Self.rfc5322Date(self.date)))
        lines.append(Self.fold("From", Self.mailbox(self.from)))
        lines.append(Self.fold("To", Self.mailbox(self.to)))
        lines.append(Self.fold("Subject", Self.encodedWords(self.subject)))
        lines.append("MIME-Version: 1.0")
        lines.append("Auto-Submitted: auto-generated")
        for (name, value) in self.extraHeaders {
            try Self.checkHeaderValue(value, field: name)
            lines.append(Self.fold(name, Self.encodedWords(value)))
        }
        lines.append("Content-Type: multipart/alternative; boundary=\"\(boundary)\"")
        lines.append("")
        lines.append("This is a multi-part message in MIME format.")
        for (type, body) in [("text/plain", self.text), ("text/html", self.html)] {
            lines.append("--\(boundary)")
            lines.append("Content-Type: \(type); charset=utf-8")
            lines.append("Content-Transfer-Encoding: quoted-printable")
            lines.append("")
            lines.append(Self.quotedPrintable(body))
        }
        lines.append("--\(boundary)--")
        lines.append("")
        return Array(lines.joined(separator: "\r\n").utf8)
    }

    /// `Name <address>`, the name quoted or encoded as needed.
    static func mailbox(_ mailbox: Mailbox) -> String {
        // The domain in ASCII (IDNA), as in the envelope; a non-ASCII local part stays UTF-8
        // (it goes only to servers that took SMTPUTF8).
        let address = IDNA.asciiDomainAddress(mailbox.address) ?? mailbox.address
        guard !mailbox.name.isEmpty else { return "<\(address)>" }
        let name: String
        if mailbox.name.unicodeScalars.allSatisfy({ $0.isASCII }) {
            name = "\"" + mailbox.name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        } else {
            name = Self.encodedWords(mailbox.name)
        }
        return "\(name) <\(address)>"
    }

    /// The text as is when it is printable ASCII in words that folding can fit on a line, else
    /// RFC 2047 `=?UTF-8?B?…?=` words of at most 75 characters, split between characters (so that
    /// no header line ever passes RFC 5322's 998, whatever a custom subject or a name holds).
    package static func encodedWords(_ text: String) -> String {
        if text.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F }),
           text.split(separator: " ").allSatisfy({ $0.utf8.count <= 70 }) {
            return text
        }
        var words: [String] = []
        var chunk: [UInt8] = []
        for character in text {
            let bytes = Array(String(character).utf8)
            // 12 characters of "=?UTF-8?B?" and "?=" leave 63 for base64: 45 bytes.
            if chunk.count + bytes.count > 45 {
                words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=") }
        return words.joined(separator: " ")
    }

    /// `Name: value`, folded at spaces so that lines stay under 78 characters where possible.
    package static func fold(_ name: String, _ value: String) -> String {
        var lines: [String] = []
        var current = name + ":"
        for word in value.split(separator: " ", omittingEmptySubsequences: false) {
            if current.utf8.count + 1 + word.utf8.count > 76, current.contains(where: { $0 != " " }), current != name + ":" {
                lines.append(current)
                current = " " + word
            } else {
                current += " " + word
            }
        }
        lines.append(current)
        return lines.joined(separator: "\r\n")
    }

    /// Quoted-printable (RFC 2045) of UTF-8 text with CRLF line ends and soft breaks at 76: a
    /// line ends at LF or CRLF; printable ASCII but `=` stays, as do space and tab except at the
    /// end of a line; every other byte is `=XX`. One pass over the bytes into one buffer (the
    /// first version, a small array per byte, took a quarter of the notifier's CPU under load).
    static func quotedPrintable(_ text: String) -> String {
        let hex: (UInt8) -> UInt8 = { $0 < 10 ? UInt8(ascii: "0") + $0 : UInt8(ascii: "A") + $0 - 10 }
        let source = Array(text.utf8)
        var output: [UInt8] = []
        output.reserveCapacity(source.count + source.count / 8 + 16)
        source.withUnsafeBufferPointer { bytes in
            func encodeLine(_ start: Int, _ end: Int) {
                var length = 0
                for index in start..<end {
                    let byte = bytes[index]
                    let literal = (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || ((byte == 0x20 || byte == 0x09) && index != end - 1)
                    let width = literal ? 1 : 3
                    if length + width > 75 {
                        output.append(contentsOf: [UInt8(ascii: "="), 0x0D, 0x0A])
                        length = 0
                    }
                    if literal {
                        output.append(byte)
                    } else {
                        output.append(contentsOf: [UInt8(ascii: "="), hex(byte >> 4), hex(byte & 0xF)])
                    }
                    length += width
                }
            }
            var lineStart = 0
            for index in 0..<bytes.count where bytes[index] == 0x0A {
                // CRLF and LF both end a line; the CR of a CRLF is not content.
                let end = index > lineStart && bytes[index - 1] == 0x0D ? index - 1 : index
                encodeLine(lineStart, end)
                output.append(contentsOf: [0x0D, 0x0A])
                lineStart = index + 1
            }
            encodeLine(lineStart, bytes.count)
        }
        return String(decoding: output, as: UTF8.self)
    }

    static func rfc5322Date(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) +0000"
    }
}
