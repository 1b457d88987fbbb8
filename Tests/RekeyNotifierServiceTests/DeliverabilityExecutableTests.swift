import Foundation
import RekeyNotifierAPI
import RekeyNotifierService
import RekeyTesting
import Testing

/// Deliverability against real peers: the notifier executable, aiosmtpd, a DNS server on
/// loopback, and python3-dkim as the independent verifier.
@Suite("rekey-notifier deliverability, with real peers", .serialized)
struct DeliverabilityExecutableTests {
    let base = NotifierExecutableTests()

    /// `rekey-notifier dkim keygen`, and the TXT record it printed.
    static func keygen(_ algorithm: String, selector: String, file: String) throws -> String {
        let (status, output) = try ServiceProcess.run(
            "rekey-notifier", ["dkim", "keygen", "--algorithm", algorithm, "--out", file, "--selector", selector, "--domain", "rekey.example"]
        )
        #expect(status == 0, "\(output)")
        #expect(output.contains("name:  \(selector)._domainkey.rekey.example"), "\(output)")
        let line = try #require(output.split(separator: "\n").first { $0.contains("value: v=DKIM1") })
        return String(line.split(separator: "value: ", maxSplits: 1)[1])
    }

    @Test("every message is DKIM-signed with RSA and Ed25519; python3-dkim verifies both through DNS, and neither survives a changed header")
    func dkimSigned() async throws {
        let folder = try TemporaryFolder()
        let rsaRecord = try Self.keygen("rsa", selector: "r2026", file: folder.path + "/rsa.pem")
        let edRecord = try Self.keygen("ed25519", selector: "e2026", file: folder.path + "/ed.pem")
        #expect(rsaRecord.hasPrefix("v=DKIM1; k=rsa; p=") && edRecord.hasPrefix("v=DKIM1; k=ed25519; p="))
        let (again, refusal) = try ServiceProcess.run("rekey-notifier", ["dkim", "keygen", "--out", folder.path + "/rsa.pem"])
        #expect(again != 0 && refusal.contains("File exists"), "an existing key is never overwritten: \(refusal)")
        let mode = try FileManager.default.attributesOfItem(atPath: folder.path + "/rsa.pem")[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)

        let dns = try DNSTestServer(zone: [
            "r2026._domainkey.rekey.example": [("TXT", rsaRecord)],
            "e2026._domainkey.rekey.example": [("TXT", edRecord)],
        ])
        let server = try SMTPTestServer(folder: folder.path + "/smtp")
        let process = try NotifierExecutableTests.start(
            dataDir: folder.path + "/data",
            NotifierExecutableTests.smtp(server.port) + [
                "--dkim-key", "\(folder.path)/rsa.pem,\(folder.path)/ed.pem", "--dkim-selector", "r2026, e2026",
            ]
        )
        try await self.base.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.com"))
            let message = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(message.state == .accepted, "\(message.attempts)")
        }
        #expect(process.stop() == 0)
        #expect(process.log.contains("DKIM-signing every message"), "\(process.log)")

        let file = try #require(server.messages().first)
        let results = try DKIMVerification.verify(file, dns: dns)
        #expect(results.map(\.a) == ["rsa-sha256", "ed25519-sha256"])
        #expect(results.map(\.d) == ["rekey.example", "rekey.example"])
        #expect(results.allSatisfy { $0.ok }, "\(results)")

        // A subject changed on the way breaks both signatures.
        let original = try String(contentsOfFile: file, encoding: .utf8)
        let tampered = folder.path + "/tampered.eml"
        try original.replacingOccurrences(of: "Subject: Reset your password", with: "Subject: Reset your password now")
            .write(toFile: tampered, atomically: true, encoding: .utf8)
        #expect(original.contains("Subject: Reset your password"))
        let broken = try DKIMVerification.verify(tampered, dns: dns)
        #expect(broken.count == 2 && broken.allSatisfy { !$0.ok }, "\(broken)")

        // So does a published key that is not ours.
        try dns.update(["r2026._domainkey.rekey.example": [("TXT", edRecord)], "e2026._domainkey.rekey.example": [("TXT", rsaRecord)]])
        #expect(try DKIMVerification.verify(file, dns: dns).allSatisfy { !$0.ok })
    }

    @Test("DKIM settings that cannot work stop the start with a message naming the key")
    func badDKIMSettings() throws {
        let folder = try TemporaryFolder()
        _ = try Self.keygen("ed25519", selector: "e1", file: folder.path + "/ed.pem")
        try "not a key".write(toFile: folder.path + "/junk.pem", atomically: true, encoding: .utf8)
        let cases: [([String], String)] = [
            (["--dkim-selector", "e1"], "need dkim_key"),
            (["--dkim-key", folder.path + "/ed.pem"], "missing setting `dkim_selector`"),
            (["--dkim-key", folder.path + "/ed.pem", "--dkim-selector", "a,b"], "give one selector per key"),
            (["--dkim-key", folder.path + "/ed.pem", "--dkim-selector", "bad selector"], "`dkim_selector`"),
            (["--dkim-key", folder.path + "/missing.pem", "--dkim-selector", "e1"], "cannot read the DKIM key"),
            (["--dkim-key", folder.path + "/junk.pem", "--dkim-selector", "e1"], "is not an unencrypted PEM private key"),
            (["--dkim-key", folder.path + "/ed.pem", "--dkim-selector", "e1", "--dkim-domain", "a..b"], "`dkim_domain`"),
        ]
        for (arguments, expected) in cases {
            let (status, output) = try ServiceProcess.run(
                "rekey-notifier", ["serve", "--data-dir", folder.path] + arguments,
                environment: ["REKEY_NOTIFIER_CREDENTIALS": NotifierExecutableTests.credential]
            )
            #expect(status != 0)
            #expect(output.contains(expected), "\(arguments): \(output)")
        }
    }
}
