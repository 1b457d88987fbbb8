import Foundation
import RekeyCrypto
import Testing
@testable import RekeyNotifierService

@Suite("DKIM signing")
struct DKIMTests {
    /// RFC 8463 Appendix A: its Ed25519 key (the RFC 8032 test key) as PKCS#8 PEM.
    static let rfc8463Key = """
        -----BEGIN PRIVATE KEY-----
        \(Data([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
            + Data(base64Encoded: "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")!).base64EncodedString())
        -----END PRIVATE KEY-----

        """

    /// RFC 8463 Appendix A.3, the message signed with the key above.
    static let rfc8463Message = """
        DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r
         d=football.example.com; i=@football.example.com;\r
         q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r
         subject : date : message-id : from : subject : date;\r
         bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r
         b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r
         Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r
        From: Joe SixPack <joe@football.example.com>\r
        To: Suzie Q <suzie@shopping.example.net>\r
        Subject: Is dinner ready?\r
        Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r
        Message-ID: <20030712040037.46341.5F8J@football.example.com>\r
        \r
        Hi.\r
        \r
        We lost the game.  Are you hungry yet?\r
        \r
        Joe.\r

        """

    @Test("relaxed canonicalization gives RFC 6376 §3.4.5's example")
    func canonicalization() {
        let fields = DKIMSigner.headerFields(Array("A: X\r\nB : Y\t\r\n\tZ  ".utf8))
        #expect(fields.map(\.name) == ["A", "B"])
        #expect(String(decoding: DKIMSigner.headerData(fields, names: ["a", "b"]), as: UTF8.self) == "a:X\r\nb:Y Z\r\n")
        #expect(String(decoding: DKIMSigner.relaxedBody(Array(" C \r\nD \t E\r\n\r\n\r\n".utf8)), as: UTF8.self) == " C\r\nD E\r\n")
        #expect(DKIMSigner.relaxedBody([]) == [])
        #expect(String(decoding: DKIMSigner.relaxedBody(Array("no line end".utf8)), as: UTF8.self) == "no line end\r\n")
    }

    @Test("the RFC 8463 example's Ed25519 signature checks out with our canonical form and its public key")
    func rfc8463() throws {
        let key = try SigningKey(pem: Array(Self.rfc8463Key.utf8))
        #expect(key.algorithm == .ed25519)
        #expect(Data(try key.publicKeyForDNS()).base64EncodedString() == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
        let message = Array(Self.rfc8463Message.utf8)
        let split = try #require(DKIMSigner.headerEnd(message))
        let fields = DKIMSigner.headerFields(Array(message[..<split.headerEnd]))
        #expect(Data(OpenSSL.sha256(DKIMSigner.relaxedBody(Array(message[split.bodyStart...])))).base64EncodedString()
            == "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=")
        let signatureField = try #require(fields.first { $0.name == "DKIM-Signature" })
        let text = String(decoding: signatureField.raw, as: UTF8.self)
        let bStart = try #require(text.range(of: "b=/"))
        let unsigned = Array(text[..<bStart.lowerBound].utf8) + Array("b=".utf8)
        let signature = try #require(Data(base64Encoded: String(text[bStart.lowerBound...].dropFirst(2)).filter { !$0.isWhitespace }))
        let names = ["from", "to", "subject", "date", "message-id", "from", "subject", "date"]
        let data = DKIMSigner.headerData(fields, names: names) + DKIMSigner.relaxedHeader(unsigned)
        #expect(key.verify(Array(signature), of: OpenSSL.sha256(data)))
        // Ed25519 is deterministic: signing the same input gives the RFC's own signature.
        #expect(try key.sign(OpenSSL.sha256(data)) == Array(signature))
        var tampered = data
        tampered[tampered.count / 2] ^= 1
        #expect(!key.verify(Array(signature), of: OpenSSL.sha256(tampered)))
    }

    @Test("each key adds a signature over the body and the fields that matter, oversigning From, To and Subject")
    func signsWithEveryKey() throws {
        let rsa = try SigningKey.generate(.rsa(bits: 2048))
        let ed = try SigningKey(pem: Array(Self.rfc8463Key.utf8))
        let signer = DKIMSigner(domain: "rekey.example", keys: [.init(selector: "r1", key: rsa), .init(selector: "e1", key: ed)])
        var mime = MIMEMessage(
            from: .init(address: "no-reply@rekey.example", name: "Rekey"), to: .init(address: "jane@example.com", name: "Jane"),
            subject: "Reset your password", messageID: "m1@rekey.example", date: Date(timeIntervalSince1970: 1_800_000_000),
            text: "Hello  \nthere", html: "<p>Hello</p>"
        )
        mime.extraHeaders = [("X-Rekey-Template", "password_reset")]
        let message = try mime.render()
        let signed = try signer.sign(message, at: Date(timeIntervalSince1970: 1_800_000_100))
        #expect(Array(signed.suffix(message.count)) == message, "the message itself is unchanged")
        let split = try #require(DKIMSigner.headerEnd(signed))
        let fields = DKIMSigner.headerFields(Array(signed[..<split.headerEnd]))
        let signatures = fields.filter { $0.name == "DKIM-Signature" }
        #expect(signatures.count == 2)
        for (field, key) in zip(signatures, [rsa, ed]) {
            let text = String(decoding: field.raw, as: UTF8.self)
            #expect(text.contains(key === rsa ? "a=rsa-sha256" : "a=ed25519-sha256"))
            #expect(text.contains("\r\n d=rekey.example; s=\(key === rsa ? "r1" : "e1"); t=1800000100;"))
            #expect(text.filter { !$0.isWhitespace }.contains("h=from:from:to:to:subject:subject:date:message-id:mime-version:content-type:auto-submitted:reply-to:cc;"))
            #expect(field.raw.split(separator: 10).allSatisfy { $0.count <= 80 }, "folded lines")
            let bStart = try #require(text.range(of: "b=", options: .backwards))
            let unsigned = Array(text[..<bStart.upperBound].utf8)
            let signature = try #require(Data(base64Encoded: String(text[bStart.upperBound...]).filter { !$0.isWhitespace }))
            let names = ["from", "from", "to", "to", "subject", "subject", "date", "message-id", "mime-version", "content-type", "auto-submitted", "reply-to", "cc"]
            let data = DKIMSigner.headerData(fields, names: names) + DKIMSigner.relaxedHeader(unsigned)
            let input = key === ed ? OpenSSL.sha256(data) : data
            #expect(key.verify(Array(signature), of: input))
        }
    }

    @Test("keys: PEM round trip, DNS forms, a passphrase-protected or foreign key refused")
    func keys() throws {
        let ed = try SigningKey.generate(.ed25519)
        let again = try SigningKey(pem: try ed.privateKeyPEM())
        #expect(try again.publicKeyForDNS() == ed.publicKeyForDNS())
        #expect(try ed.publicKeyForDNS().count == 32)
        #expect(try DKIMSigner.dnsRecord(for: ed).hasPrefix("v=DKIM1; k=ed25519; p="))
        let rsa = try SigningKey.generate(.rsa(bits: 2048))
        #expect(rsa.algorithm == .rsa(bits: 2048))
        #expect(try rsa.publicKeyForDNS().count == 294, "DER SubjectPublicKeyInfo of a 2048-bit key")
        #expect(try DKIMSigner.dnsRecord(for: rsa).hasPrefix("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"))
        #expect(throws: CryptoError.self) { try SigningKey(pem: Array("not a key".utf8)) }
        #expect(throws: CryptoError.self) { try SigningKey.generate(.rsa(bits: 512)) }
        let encrypted = """
            -----BEGIN ENCRYPTED PRIVATE KEY-----
            MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAjSlGEOfNBZKgICCAAw
            DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEP0jIzQ6m4g9T2D+zwuYdzYEQOX1
            -----END ENCRYPTED PRIVATE KEY-----
            """
        #expect(throws: CryptoError.self) { try SigningKey(pem: Array(encrypted.utf8)) }
    }
}
