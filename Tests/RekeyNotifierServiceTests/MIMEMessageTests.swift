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
