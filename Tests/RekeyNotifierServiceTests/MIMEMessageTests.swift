import Foundation
@testable import RekeyNotifierService
import Testing

@Suite("Building messages")
struct MIMEMessageTests {
    @Test("quoted-printable keeps lines under 77 characters and encodes '=', non-ASCII and trailing space")
    func quotedPrintable() {
        let long = String(repeating: "a", count: 100) + " é= "
        let encoded = MIMEMessage.quotedPrintable(long + "\nnext")
        let lines = encoded.components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 76 })
        #expect(encoded.contains("=C3=A9=3D=20"))
        #expect(lines.last == "next")
    }

    /// The first, slower version: what the encoder must still produce, byte for byte.
    static func referenceQuotedPrintable(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var output: [String] = []
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n")
        for line in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            var encoded: [UInt8] = []
            var length = 0
            let bytes = Array(line.utf8)
            for (index, byte) in bytes.enumerated() {
                let isLast = index == bytes.count - 1
                let piece: [UInt8] = (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || ((byte == 0x20 || byte == 0x09) && !isLast)
                    ? [byte] : [UInt8(ascii: "="), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
                if length + piece.count > 75 {
                    encoded += Array("=\r\n".utf8)
                    length = 0
                }
                encoded += piece
                length += piece.count
            }
            output.append(String(decoding: encoded, as: UTF8.self))
        }
        return output.joined(separator: "\r\n")
    }

    @Test("quoted-printable: byte for byte what the first version made, on edge cases and on random text", arguments: [
        "", "\n", "\r\n", "a\r\nb\nc\rd", "trailing space \ntab\t\nend ", "x=y", String(repeating: "é", count: 60),
        String(repeating: "a", count: 74) + "==" + String(repeating: "b", count: 200), String(repeating: " ", count: 80) + "\n",
        "<p style=\"color: #2f5fd0\">Réinitialiser — パスワード 🔑</p>\r\n\r\n", "\u{0}\u{1F}\u{7F}",
    ])
    func quotedPrintableMatchesReference(text: String) {
        #expect(MIMEMessage.quotedPrintable(text) == Self.referenceQuotedPrintable(text))
    }

    /// Decodes quoted-printable (soft breaks removed, `=XX` to bytes, line breaks as CRLF).
    static func decodeQuotedPrintable(_ encoded: String) -> [UInt8] {
        var bytes: [UInt8] = []
        let source = Array(encoded.replacingOccurrences(of: "=\r\n", with: "").utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "="), index + 2 < source.count, let value = UInt8(String(decoding: source[index + 1...index + 2], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return bytes
    }

    @Test("quoted-printable on 2,000 random texts: byte for byte the first version's output; with lone CRs too, lines of at most 76 printable characters that decode to the text")
    func quotedPrintableRandom() {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [String] = ["a", "Z", "0", " ", "\t", "=", "\n", "\r\n", "é", "—", "🔑", "<", ">", "\"", "\u{0}", "~", "."]
        for round in 0..<2_000 {
            // Half the texts hold lone CRs too. There the first version differed only where a CR
            // came right before a CRLF: Swift's split saw CR + CRLF as CR and one CRLF grapheme and
            // encoded that line break as =0D=0A (which decodes to the same bytes).
            let letters = round % 2 == 0 ? alphabet : alphabet + ["\r"]
            let text = (0..<Int.random(in: 0...300, using: &generator)).map { _ in letters.randomElement(using: &generator)! }.joined()
            let encoded = MIMEMessage.quotedPrintable(text)
            if round % 2 == 0 {
                #expect(encoded == Self.referenceQuotedPrintable(text), "\(text.debugDescription)")
            }
            let lines = encoded.components(separatedBy: "\r\n")
            #expect(lines.allSatisfy { $0.utf8.count <= 76 && $0.utf8.allSatisfy { (33...126).contains($0) || $0 == 0x20 || $0 == 0x09 } }, "\(text.debugDescription)")
            #expect(lines.allSatisfy { $0.last != " " && $0.last != "\t" }, "no line ends in white space: \(text.debugDescription)")
            // The text's line breaks come back as CRLF; a lone CR stays a CR.
            let expected = Array(text.replacingOccurrences(of: "\r\n", with: "\n").utf8).flatMap { $0 == 0x0A ? [0x0D, 0x0A] : [$0] }
            #expect(Self.decodeQuotedPrintable(encoded) == expected, "\(text.debugDescription)")
        }
    }

    @Test("a CR right before a CRLF is content, then the line ends")
    func quotedPrintableCRBeforeCRLF() {
        #expect(MIMEMessage.quotedPrintable("a\r\r\nb") == "a=0D\r\nb")
    }

    @Test("non-ASCII header words are RFC 2047 encoded in words of at most 75 characters")
    func encodedWords() {
        #expect(MIMEMessage.encodedWords("Reset your password") == "Reset your password")
        let encoded = MIMEMessage.encodedWords(String(repeating: "Passwort zurücksetzen ", count: 5))
        #expect(encoded.hasPrefix("=?UTF-8?B?"))
        #expect(encoded.split(separator: " ").allSatisfy { $0.count <= 75 })
        #expect(MIMEMessage.mailbox(.init(address: "a@example.com", name: "Doe, \"J\"")) == "\"Doe, \\\"J\\\"\" <a@example.com>")
    }

    @Test("DATA is dot-stuffed and ends with CRLF . CRLF")
    func dotStuffing() {
        let stuffed = SMTPTransport.dotStuffed(Array(".start\r\nmiddle\r\n.\r\nend".utf8))
        #expect(String(decoding: stuffed, as: UTF8.self) == "..start\r\nmiddle\r\n..\r\nend\r\n.\r\n")
    }

    @Test("queue ids are read from the usual forms of the final reply", arguments: [
        ("2.0.0 Ok: queued as 4F1ABC23", "4F1ABC23"), ("OK id=1rAbCd-000Xyz-Q1", "1rAbCd-000Xyz-Q1"), ("2.0.0 Ok", ""),
    ])
    func queueIDs(_ text: String, _ expected: String) {
        #expect(SMTPTransport.queueID(in: text) == expected)
    }

    @Test("the locale falls back to the language, then to English")
    func fallbacks() throws {
        #expect(MailTemplates.fallbacks("de-CH") == ["de-ch", "de", "en"])
        let templates = try MailTemplates()
        #expect(templates.render(.passwordChanged, .subject, locale: "fr", variables: [:]).text == "Your password was changed")
        #expect(templates.render(.passwordChanged, .subject, locale: "de-AT", variables: [:]).locale == "de")
    }
}
