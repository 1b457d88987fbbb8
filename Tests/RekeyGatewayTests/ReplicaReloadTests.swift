import Foundation
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Testing

/// A replica comes and goes without the gateway restarting: its lists are read again from its
/// config file on SIGHUP and when the file changes.
@Suite("The gateway's replica lists, changed while it runs", .serialized, .processSlots)
struct ReplicaReloadTests {
    @Test("a notifier replica added on SIGHUP takes calls; the first one removed by editing the file alone, then stopped: no send fails; a broken edit and a restart-only setting are logged and change nothing")
    func replicasComeAndGo() async throws {
        let system = try await RekeySystem.start(tokens: ["--limit-per-user", "100000", "--limit-per-admin", "1000000"])
        defer { system.stopInBackground() }

        // A second notifier with its own store and maildir, as a replica on another host would be.
        let second = try TemporaryFolder()
        let tls = [
            "REKEY_NOTIFIER_TLS": "required", "REKEY_NOTIFIER_TLS_CA": system.certificates + "/ca.pem",
            "REKEY_NOTIFIER_TLS_CERT": system.certificates + "/notifier.pem", "REKEY_NOTIFIER_TLS_KEY": system.certificates + "/notifier-key.pem",
        ]
        let notifier2 = try await offPool {
            try ServiceProcess(
                "rekey-notifier",
                arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", second.path, "--mail-dir", second.path + "/mail", "--poll-interval", "50ms"],
                environment: tls
            )
        }
        defer { notifier2.killInBackground() }
        let first = "127.0.0.1:\(system.notifier.port)"
        let added = "127.0.0.1:\(notifier2.port)"

        // A gateway configured by its file alone (a flag would outrank the file).
        let folder = try TemporaryFolder()
        let config = folder.path + "/gateway.conf"
        func write(notifier: String, publicURL: String = "https://sso.example.test") throws {
            try """
            listen = 127.0.0.1:0
            metrics_listen = 127.0.0.1:0
            public_url = \(publicURL)
            directory = 127.0.0.1:\(system.directory.port)
            reset_token = 127.0.0.1:\(system.tokens.port)
            notifier = \(notifier)
            tls_ca = \(system.certificates)/ca.pem
            tls_cert = \(system.certificates)/gateway.pem
            tls_key = \(system.certificates)/gateway-key.pem
            form_secret = \(RekeySystem.credential)

            """.write(toFile: config, atomically: true, encoding: .utf8)
        }
        try write(notifier: first)
        let gateway = try await offPool {
            try ServiceProcess(
                "rekey-gateway", arguments: ["serve", "--config", config], environment: ["REKEY_GATEWAY_TLS": "required"],
                portPattern: #"http\.port[=":]+\d+"#, readyLine: "http server listening"
            )
        }
        defer { gateway.killInBackground() }

        let api = Browser(base: "http://127.0.0.1:\(gateway.port)")
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let created = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200, "\(created.body)")
        let userID = try #require((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String)
        func send(_ count: Int) async throws {
            for _ in 0..<count {
                let answer = try await api.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth)
                #expect(answer.status == 200, "\(answer.body)")
            }
        }
        func mails(_ folder: String) -> Int {
            (try? FileManager.default.contentsOfDirectory(atPath: folder).count) ?? 0
        }
        /// Waits until `total` mails arrived in both maildirs together; what each one has.
        func waitForMails(total: Int) async throws -> (first: Int, second: Int) {
            let arrived = await RekeySystem.eventually(timeout: .seconds(30)) {
                mails(system.mailDir) + mails(second.path + "/mail/new") == total
            }
            #expect(arrived, "mails: first \(mails(system.mailDir)), second \(mails(second.path + "/mail/new")); expected \(total) in all")
            return (mails(system.mailDir), mails(second.path + "/mail/new"))
        }
        func waitForLog(_ text: String, after count: Int) async throws {
            let logged = await RekeySystem.eventually(timeout: .seconds(30)) {
                gateway.log.components(separatedBy: text).count - 1 > count
            }
            #expect(logged, "the gateway logs \"\(text)\":\n\(gateway.log.suffix(3000))")
        }
        func occurrences(_ text: String) -> Int { gateway.log.components(separatedBy: text).count - 1 }

        // One replica listed: every send goes to it.
        try await send(6)
        var counts = try await waitForMails(total: 6)
        #expect(counts == (6, 0))

        // Both listed, then SIGHUP: the new one takes its share at once.
        var changes = occurrences("replicas changed")
        var hangups = (config: occurrences("config.reason=SIGHUP"), tls: occurrences("tls.reason=SIGHUP"))
        try write(notifier: "\(first),\(added)")
        kill(gateway.processIdentifier, SIGHUP)
        try await waitForLog("replicas changed", after: changes)
        // Both listeners hear every SIGHUP: the config file's and the TLS files'.
        try await waitForLog("config.reason=SIGHUP", after: hangups.config)
        try await waitForLog("tls.reason=SIGHUP", after: hangups.tls)
        #expect(gateway.log.contains("rpc.added=\(added)") || gateway.log.contains(#""rpc.added":"\#(added)""#), "\(gateway.log.suffix(2000))")
        try await send(10)
        counts = try await waitForMails(total: 16)
        #expect(counts.first > 6 && counts.second > 0, "both replicas take calls: \(counts)")

        // A broken edit changes nothing; the calls go on to both.
        let errors = occurrences("cannot use the changed config file")
        try write(notifier: "\(first),not an address")
        hangups = (config: occurrences("config.reason=SIGHUP"), tls: occurrences("tls.reason=SIGHUP"))
        kill(gateway.processIdentifier, SIGHUP)
        try await waitForLog("cannot use the changed config file", after: errors)
        try await waitForLog("config.reason=SIGHUP", after: hangups.config)
        try await waitForLog("tls.reason=SIGHUP", after: hangups.tls)
        let before = counts
        try await send(4)
        counts = try await waitForMails(total: 20)
        #expect(counts.first > before.first && counts.second > before.second, "both replicas still take calls: \(counts)")

        // The first one removed by editing the file alone (seen within the 10 s check), with a
        // setting that needs a restart changed beside it; then the removed one is stopped.
        changes = occurrences("replicas changed")
        let restartOnly = occurrences("take effect at the next restart")
        try write(notifier: added, publicURL: "https://login.example.test")
        try await waitForLog("replicas changed", after: changes)
        // Logged just after the replicas' line: waited for, not expected at once.
        try await waitForLog("take effect at the next restart", after: restartOnly)
        #expect(gateway.log.contains("public_url"), "\(gateway.log.suffix(2000))")
        #expect(try await offPool { system.notifier.stop(within: 20) })
        let removed = counts
        try await send(6)
        counts = try await waitForMails(total: 26)
        #expect(counts == (removed.first, removed.second + 6), "only the listed replica takes calls: \(counts)")
        #expect(!gateway.log.contains("a replica is unavailable"), "no call went to the removed replica:\n\(gateway.log.suffix(2000))")
    }
}
