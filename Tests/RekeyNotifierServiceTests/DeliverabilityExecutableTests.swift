import Foundation
import RekeyNotifierAPI
@testable import RekeyNotifierService
import RekeyTestTraits
import RekeyTesting
import Testing

/// Deliverability against real peers: the notifier executable, aiosmtpd, a DNS server on
/// loopback, and python3-dkim as the independent verifier.
@Suite("rekey-notifier deliverability, with real peers", .serialized, .processSlots)
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
        let rsaRecord = try await offPool { try Self.keygen("rsa", selector: "r2026", file: folder.path + "/rsa.pem") }
        let edRecord = try await offPool { try Self.keygen("ed25519", selector: "e2026", file: folder.path + "/ed.pem") }
        #expect(rsaRecord.hasPrefix("v=DKIM1; k=rsa; p=") && edRecord.hasPrefix("v=DKIM1; k=ed25519; p="))
        let (again, refusal) = try await ServiceProcess.run("rekey-notifier", ["dkim", "keygen", "--out", folder.path + "/rsa.pem"])
        #expect(again != 0 && refusal.contains("File exists"), "an existing key is never overwritten: \(refusal)")
        let mode = try FileManager.default.attributesOfItem(atPath: folder.path + "/rsa.pem")[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)

        let dns = try await DNSTestServer.start(zone: [
            "r2026._domainkey.rekey.example": [("TXT", rsaRecord)],
            "e2026._domainkey.rekey.example": [("TXT", edRecord)],
        ])
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp")
        let process = try await NotifierExecutableTests.start(
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
        #expect(await process.stop() == 0)
        #expect(process.log.contains("DKIM-signing every message"), "\(process.log)")

        let file = try #require(server.messages().first)
        let results = try await offPool { try DKIMVerification.verify(file, dns: dns) }
        #expect(results.map(\.a) == ["rsa-sha256", "ed25519-sha256"])
        #expect(results.map(\.d) == ["rekey.example", "rekey.example"])
        #expect(results.allSatisfy { $0.ok }, "\(results)")

        // A subject changed on the way breaks both signatures.
        let original = try String(contentsOfFile: file, encoding: .utf8)
        let tampered = folder.path + "/tampered.eml"
        try original.replacingOccurrences(of: "Subject: Reset your password", with: "Subject: Reset your password now")
            .write(toFile: tampered, atomically: true, encoding: .utf8)
        #expect(original.contains("Subject: Reset your password"))
        let broken = try await offPool { try DKIMVerification.verify(tampered, dns: dns) }
        #expect(broken.count == 2 && broken.allSatisfy { !$0.ok }, "\(broken)")

        // So does a published key that is not ours.
        try dns.update(["r2026._domainkey.rekey.example": [("TXT", edRecord)], "e2026._domainkey.rekey.example": [("TXT", rsaRecord)]])
        #expect(try await offPool { try DKIMVerification.verify(file, dns: dns) }.allSatisfy { !$0.ok })
    }

    @Test("DKIM settings that cannot work stop the start with a message naming the key")
    func badDKIMSettings() async throws {
        let folder = try TemporaryFolder()
        _ = try await offPool { try Self.keygen("ed25519", selector: "e1", file: folder.path + "/ed.pem") }
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
            let (status, output) = try await offPool { try ServiceProcess.run(
                "rekey-notifier", ["serve", "--data-dir", folder.path] + arguments,
                environment: ["REKEY_NOTIFIER_CREDENTIALS": NotifierExecutableTests.credential]
            ) }
            #expect(status != 0)
            #expect(output.contains(expected), "\(arguments): \(output)")
        }
    }

    static func findings(_ response: Rekey_Notifier_V1_CheckDomainResponse, _ check: String) -> [Rekey_Notifier_V1_DomainFinding] {
        response.findings.filter { $0.check == check }
    }

    @Test("check-domain against a DNS server with good, wrong and missing records: each finding says what to publish")
    func checkDomain() async throws {
        let folder = try TemporaryFolder()
        let record = try await offPool { try Self.keygen("rsa", selector: "r1", file: folder.path + "/rsa.pem") }
        let otherRecord = try await offPool { try Self.keygen("ed25519", selector: "other", file: folder.path + "/other.pem") }
        let good: DNSTestServer.Zone = [
            "rekey.example": [("TXT", "v=spf1 mx ip4:127.0.0.1 -all"), ("TXT", "google-site-verification=abc"), ("MX", "10 mx.rekey.example.")],
            "mx.rekey.example": [("A", "192.0.2.25")],
            "r1._domainkey.rekey.example": [("TXT", record)],
            "_dmarc.rekey.example": [("TXT", "v=DMARC1; p=reject; adkim=s")],
        ]
        let dns = try await DNSTestServer.start(zone: good)
        let process = try await NotifierExecutableTests.start(
            dataDir: folder.path + "/data",
            ["--transport", "smtp", "--smtp-server", "127.0.0.1:9", "--dns-server", dns.address, "--dkim-key", folder.path + "/rsa.pem", "--dkim-selector", "r1"]
        )
        try await self.base.withNotifier(process) { notifier in
            var fresh = Rekey_Notifier_V1_CheckDomainRequest()
            fresh.fresh = true
            let ok = try await notifier.checkDomain(fresh)
            #expect(ok.fromDomain == "rekey.example" && ok.envelopeDomain == "rekey.example" && ok.dkimDomain == "rekey.example")
            #expect(ok.dnsServer == dns.address)
            #expect(ok.findings.map(\.check) == ["spf", "dkim", "dmarc", "mx"], "\(ok.findings)")
            #expect(ok.findings.allSatisfy { $0.status == .ok }, "\(ok.findings)")
            #expect(Self.findings(ok, "spf").first?.summary.contains("allows the relay (127.0.0.1)") == true)
            #expect(Self.findings(ok, "spf").first?.summary.contains("private address") == true, "loopback is not what receivers see")
            #expect(Self.findings(ok, "dmarc").first?.summary.contains("aligned through DKIM (d=rekey.example) and SPF (rekey.example)") == true)

            // Wrong records: another SPF address, someone else's DKIM key, no DMARC, no MX.
            try dns.update([
                "rekey.example": [("TXT", "v=spf1 ip4:192.0.2.1 ~all")],
                "r1._domainkey.rekey.example": [("TXT", otherRecord)],
            ])
            let cached = try await notifier.checkDomain(.init())
            #expect(cached.checkedAtUnixMs == ok.checkedAtUnixMs, "within a minute, the last check answers")
            let wrong = try await notifier.checkDomain(fresh)
            #expect(wrong.findings.filter { $0.check != "template" }.allSatisfy { $0.status == .problem }, "\(wrong.findings)")
            let spf = try #require(Self.findings(wrong, "spf").first)
            #expect(spf.summary.contains("does not allow the relay (127.0.0.1): SPF softfail"), "\(spf.summary)")
            #expect(spf.fix.contains("v=spf1 ip4:192.0.2.1 ip4:127.0.0.1 ~all"), "\(spf.fix)")
            let dkim = try #require(Self.findings(wrong, "dkim").first)
            #expect(dkim.summary.contains("is not the key the notifier signs with") && dkim.fix.contains(record), "\(dkim)")
            #expect(dkim.evidence == otherRecord)
            #expect(Self.findings(wrong, "dmarc").first?.fix.contains("_dmarc.rekey.example") == true)
            #expect(Self.findings(wrong, "mx").first?.summary.contains("neither an MX nor an address record") == true)

            // Nothing published at all: the domain does not exist.
            try dns.update([:])
            let missing = try await notifier.checkDomain(fresh)
            #expect(Self.findings(missing, "spf").first?.fix.contains("\"v=spf1 ip4:127.0.0.1 -all\"") == true, "\(missing.findings)")
            #expect(Self.findings(missing, "dkim").first?.summary.contains("no DKIM record at r1._domainkey.rekey.example") == true)
            #expect(Self.findings(missing, "mx").first?.summary.contains("does not exist in DNS") == true)
        }
        #expect(await process.stop() == 0)

        // Unsigned mail: DKIM is the problem, and DMARC passes only because SPF is aligned.
        try dns.update(good)
        let unsigned = try await NotifierExecutableTests.start(
            dataDir: folder.path + "/data2", ["--transport", "smtp", "--smtp-server", "127.0.0.1:9", "--dns-server", dns.address, "--message-id-domain", "mailhost"]
        )
        try await self.base.withNotifier(unsigned) { notifier in
            let report = try await notifier.checkDomain(.init())
            #expect(Self.findings(report, "dkim").first?.summary.contains("not DKIM-signed") == true)
            #expect(Self.findings(report, "dmarc").first?.status == .ok, "\(report.findings)")
            #expect(Self.findings(report, "template").first?.summary.contains("@mailhost, an internal host name") == true, "\(report.findings)")
        }
        #expect(await unsigned.stop() == 0)
        #expect(unsigned.log.contains("mail is not DKIM-signed"))
        #expect(unsigned.log.contains("an internal host name"))
    }

    @Test("SPF evaluation: include, redirect, a, mx, CIDR, the lookup limit, and errors in words")
    func spf() async throws {
        var zone: DNSTestServer.Zone = [
            "example.com": [("TXT", "v=spf1 include:_spf.provider.example a:relay.example.com/28 -all")],
            "_spf.provider.example": [("TXT", "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8::/32 ~all")],
            "relay.example.com": [("A", "203.0.113.5")],
            "redirected.example": [("TXT", "v=spf1 redirect=example.com")],
            "bymx.example": [("TXT", "v=spf1 mx -all"), ("MX", "10 mail.bymx.example.")],
            "mail.bymx.example": [("A", "192.0.2.7")],
            "two.example": [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")],
            "bad.example": [("TXT", "v=spf1 ip4:300.1.1.1 -all")],
            "macro.example": [("TXT", "v=spf1 exists:%{i}.spf.macro.example -all")],
        ]
        for index in 0..<12 {
            zone["l\(index).example"] = [("TXT", "v=spf1 include:l\(index + 1).example -all")]
        }
        let dns = try await DNSTestServer.start(zone: zone)
        let resolver = DNSResolver(host: "127.0.0.1", port: dns.port)
        func check(_ ip: String, _ domain: String) async -> SPF.Result {
            await SPF(resolver: resolver).check(ip: SPF.parseAddress(ip)!, domain: domain).0
        }
        #expect(await check("198.51.100.77", "example.com") == .pass, "through include")
        #expect(await check("2001:db8::25", "example.com") == .pass, "ip6 in an include")
        #expect(await check("203.0.113.14", "example.com") == .pass, "a:/28")
        #expect(await check("203.0.113.17", "example.com") == .fail)
        #expect(await check("198.51.100.77", "redirected.example") == .pass)
        #expect(await check("192.0.2.7", "bymx.example") == .pass)
        #expect(await check("192.0.2.8", "bymx.example") == .fail)
        #expect(await check("192.0.2.8", "nothing.example") == .none)
        #expect(await check("192.0.2.8", "two.example") == .permerror)
        #expect(await check("192.0.2.8", "bad.example") == .permerror)
        #expect(await check("192.0.2.8", "macro.example") == .neutral)
        let (limited, why) = await SPF(resolver: resolver).check(ip: SPF.parseAddress("192.0.2.1")!, domain: "l0.example")
        #expect(limited == .permerror && why.contains("more than 10 DNS lookups"), "\(why)")
        #expect(SPF.adding("ip4:1.2.3.4", to: "v=spf1 mx -all") == "v=spf1 mx ip4:1.2.3.4 -all")

        // A server that does not answer is an error in words, not a hang.
        let silent = DNSResolver(host: "127.0.0.1", port: try await SMTPTestServer.freePort(), timeout: .milliseconds(300))
        await #expect(throws: DNSResolver.Failure.self) { try await silent.txt("example.com") }
    }

    @Test("a reply too long for UDP comes back truncated, and the resolver asks again over TCP")
    func dnsOverTCP() async throws {
        // A 2048-bit DKIM key and a long SPF record: about 1,100 bytes, over the 512 the server sends by UDP.
        let long = "v=spf1 " + (1...60).map { "ip4:192.0.2.\($0)" }.joined(separator: " ") + " -all"
        let dns = try await DNSTestServer.start(zone: ["big.example": [("TXT", long)], "small.example": [("TXT", "v=spf1 -all")]], udpLimit: 512)
        let resolver = DNSResolver(host: "127.0.0.1", port: dns.port)
        #expect(try await resolver.txt("big.example") == [long])
        #expect(try await resolver.txt("small.example") == ["v=spf1 -all"])
        // What UDP alone gives for it: the TC bit and no answer.
        let query = try DNSResolver.query(id: 9, name: "big.example", type: .txt)
        let reply = try await offPool { try Self.udpExchange(query, port: dns.port) }
        let parsed = try DNSResolver.parse(reply, id: 9, type: .txt)
        #expect(parsed.truncated)
    }

    /// One UDP query and its reply, with plain sockets (what the resolver's first try sees).
    static func udpExchange(_ query: [UInt8], port: Int) throws -> [UInt8] {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(descriptor) }
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let sent = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(descriptor, query, query.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(sent == query.count)
        var buffer = [UInt8](repeating: 0, count: 65_535)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        try #require(count > 0)
        return Array(buffer.prefix(count))
    }

    @Test("DNS replies are data from the network: cut short, looping names, another id or random bytes are errors, never a crash")
    func dnsReplies() throws {
        let query = try DNSResolver.query(id: 7, name: "example.com", type: .txt)
        #expect(throws: DNSResolver.Failure.self) { try DNSResolver.query(id: 1, name: "a..b", type: .txt) }
        #expect(throws: DNSResolver.Failure.self) { try DNSResolver.query(id: 1, name: String(repeating: "a", count: 64) + ".com", type: .txt) }
        var answer = query
        answer[2] |= 0x80
        answer[6 ... 7] = [0, 1]
        answer.removeLast(11)  // the OPT record
        answer[10 ... 11] = [0, 0]
        // An answer whose name points at itself, then a TXT claiming more bytes than there are.
        let looping = answer + [0xC0, UInt8(answer.count), 0, 16, 0, 1, 0, 0, 0, 60, 0, 4, 3, 0x61, 0x62, 0x63]
        #expect(throws: DNSResolver.Failure.self) { try DNSResolver.parse(looping, id: 7, type: .txt) }
        let overlong = answer + [0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 4, 9, 0x61, 0x62, 0x63]
        #expect(throws: DNSResolver.Failure.self) { try DNSResolver.parse(overlong, id: 7, type: .txt) }
        let fine = answer + [0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 4, 3, 0x61, 0x62, 0x63]
        #expect(try DNSResolver.parse(fine, id: 7, type: .txt).lookup == .records([.txt("abc")]))
        #expect(throws: DNSResolver.Failure.self) { try DNSResolver.parse(fine, id: 8, type: .txt) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            var bytes = fine
            for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator) }
            _ = try? DNSResolver.parse(Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &generator))), id: 7, type: .txt)
        }
    }

    /// Sends `raw` over SMTP to the bounce listener, as a remote MTA would; the reply's code.
    static func sendBounce(port: Int, to recipient: String, _ raw: [UInt8], folder: String) async throws -> (Int32, String) {
        let file = folder + "/outgoing-\(UUID().uuidString).eml"
        try Data(raw).write(to: URL(fileURLWithPath: file))
        return try await runProgram(
            SMTPTestServer.python, [SMTPTestServer.root.appendingPathComponent("Tests/Interop/send_mail.py").path, "127.0.0.1", "\(port)", "", recipient, file]
        )
    }

    @Test("bounces that come later: VERP envelope sender; a DSN to the bounce listener and an ARF complaint in the bounce maildir are matched, recorded and suppress; strangers are refused or kept")
    func bouncesLater() async throws {
        let folder = try TemporaryFolder()
        let smtp = try await SMTPTestServer.start(folder: folder.path + "/smtp")
        let box = folder.path + "/bouncebox"
        let process = try await NotifierExecutableTests.start(
            dataDir: folder.path + "/data",
            NotifierExecutableTests.smtp(smtp.port) + ["--bounce-domain", "bounces.rekey.example", "--bounce-listen", "127.0.0.1:0", "--bounce-maildir", box]
        )
        var listening: Substring? = nil
        let ready = ContinuousClock.now + .seconds(10)
        while listening == nil, ContinuousClock.now < ready {
            listening = process.log.split(separator: "\n").first { $0.contains("bounce listener ready") }
            if listening == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let line = try #require(listening)
        let port = try #require(Int(line.split(separator: ":").last?.prefix { $0.isNumber } ?? ""))
        try await self.base.withNotifier(process) { notifier in
            let queued = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "jane@example.com"))
            let sent = try await self.base.waitFor(queued.messageID, in: notifier) { $0.state == .accepted }
            #expect(sent.state == .accepted)
            let envelope = try String(contentsOfFile: smtp.folder + "/1.envelope", encoding: .utf8)
            #expect(envelope.hasPrefix("bounces+\(queued.messageID)@bounces.rekey.example\n"), "\(envelope)")

            // The recipient's server refuses it later; the relay's DSN comes to the listener.
            let dsn = BounceCorpus.fill(BounceCorpus.postfix.replacingOccurrences(of: "m_0123", with: queued.messageID), messageID: "not-needed@elsewhere")
            let (status, reply) = try await Self.sendBounce(port: port, to: "bounces+\(queued.messageID)@bounces.rekey.example", dsn, folder: folder.path)
            #expect(status == 0 && reply.hasPrefix("250"), "\(reply)")
            var request = Rekey_Notifier_V1_GetMessageRequest()
            request.messageID = queued.messageID
            let bounced = try #require(try await notifier.getMessage(request).message)
            #expect(bounced.state == .bounced, "\(bounced)")
            #expect(bounced.reports.first?.status == "5.1.1" && bounced.reports.first?.remoteMta == "mx.example.com")
            #expect(bounced.reports.first?.diagnosticCode.contains("User unknown") == true)
            var suppressed = Rekey_Notifier_V1_ListSuppressionsRequest()
            suppressed.address = "jane@example.com"
            #expect(try await notifier.listSuppressions(suppressed).suppressions.first?.reason.hasPrefix("bounced after delivery: 5.1.1") == true)

            // Not one of our bounce addresses: refused at RCPT.
            let (refused, words) = try await Self.sendBounce(port: port, to: "postmaster@bounces.rekey.example", dsn, folder: folder.path)
            #expect(refused == 1 && words.hasPrefix("550"), "\(words)")
            // No report at all: taken, and kept for a person.
            let (plain, _) = try await Self.sendBounce(
                port: port, to: "bounces+\(queued.messageID)@bounces.rekey.example", BounceCorpus.fill(BounceCorpus.yahooPlain, messageID: ""), folder: folder.path
            )
            #expect(plain == 0)
            let kept = try FileManager.default.contentsOfDirectory(atPath: folder.path + "/data/bounces/unmatched")
            #expect(kept.count == 1 && kept[0].contains("unparsed"), "\(kept)")

            // A complaint delivered by the site's MTA into the bounce maildir.
            let second = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "kim@yahoo.com"))
            let delivered = try await self.base.waitFor(second.messageID, in: notifier) { $0.state == .accepted }
            let complaint = BounceCorpus.fill(BounceCorpus.yahooComplaint, messageID: delivered.messageIDHeader)
            try Data(complaint).write(to: URL(fileURLWithPath: box + "/tmp/1.eml"))
            try FileManager.default.moveItem(atPath: box + "/tmp/1.eml", toPath: box + "/new/1.eml")
            suppressed.address = "kim@yahoo.com"
            let deadline = ContinuousClock.now + .seconds(10)
            var reason = ""
            while ContinuousClock.now < deadline {
                reason = try await notifier.listSuppressions(suppressed).suppressions.first?.reason ?? ""
                if !reason.isEmpty { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(reason.hasPrefix("complaint: the recipient marked it as spam"), "\(reason)")
            // The suppression is recorded before the file moves: the move may come a moment later.
            let moved = ContinuousClock.now + .seconds(10)
            while try FileManager.default.contentsOfDirectory(atPath: box + "/cur").isEmpty, ContinuousClock.now < moved {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: box + "/cur").count == 1, "taken in, then moved to cur/")
        }
        #expect(await process.stop() == 0)
    }
}
