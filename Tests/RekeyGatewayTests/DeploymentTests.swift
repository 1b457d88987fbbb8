import Foundation
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The deployment files and what ops do with the executables: each service on its own address
/// with its own data, the gateway pointed at them by configuration only, health checks, and a
/// restart and an upgrade of the notifier under traffic.
@Suite("Deploying each service on its own", .serialized, .processSlots)
struct DeploymentTests {
    static let credential = "deployment-test-credential-0123456789"

    @Test("compose.yaml, alone and with compose.postgres.yaml, is valid for docker-compose, and every service, port and variable they and the Dockerfiles name exists in the code")
    func compose() async throws {
        // Many processes to run: off the concurrency pool, which the in-process tests need.
        let (status, text) = try await offPool {
            try ServiceProcess.run(
                SMTPTestServer.python,
                [SMTPTestServer.root.appendingPathComponent("Tests/Interop/check_compose.py").path, SMTPTestServer.root.path, ServiceProcess.productsDirectory.path],
                inheritingEnvironment: true
            )
        }
        #expect(status == 0, "\(text)")
        #expect(text.contains("0 problems"), "\(text)")
    }

    @Test("each example config in services/ is accepted by its executable, and its values are used", arguments: [
        ("rekey-directory", "directory", "scrypt cost"),
        ("rekey-reset-token", "reset-token", "\"db.schema_version\""),
        ("rekey-notifier", "notifier", "relay.internal:587"),
        ("rekey-gateway", "gateway", "https://sso.example.com"),
    ])
    func exampleConfig(executable: String, folder: String, logged: String) async throws {
        let data = try TemporaryFolder()
        let certificates = try TemporaryFolder()
        // Blocking work (processes to run and wait for) goes off the concurrency pool.
        try await offPool { try RekeySystem.makeCertificates(in: certificates.path) }
        let config = SMTPTestServer.root.appendingPathComponent("services/\(folder)/\(folder).conf").path
        // Only what cannot work on a test machine is overridden: the addresses, the folder and
        // where the certificates are.
        var arguments = ["serve", "--config", config, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]
            + ["--tls-ca", certificates.path + "/ca.pem", "--tls-cert", certificates.path + "/\(folder).pem", "--tls-key", certificates.path + "/\(folder)-key.pem"]
        if executable != "rekey-gateway" { arguments += ["--data-dir", data.path] }
        if executable == "rekey-directory" { arguments += ["--scrypt-log-n", "10"] }
        let gateway = executable == "rekey-gateway"
        // Secrets come from the environment, as the example says; TLS is on, as in the file.
        let service = folder.uppercased().replacingOccurrences(of: "-", with: "_")
        var environment = ["REKEY_\(service)_TLS": "required"]
        if executable == "rekey-notifier" { environment["REKEY_NOTIFIER_SMTP_PASSWORD"] = "relay-password" }
        if gateway { environment["REKEY_GATEWAY_FORM_SECRET"] = Self.credential }
        let process = try await offPool { [arguments, environment] in
            try ServiceProcess(
                executable, arguments: arguments, environment: environment,
                portPattern: gateway ? #"http\.port[=":]+\d+"# : #"rpc\.port[=":]+\d+"#,
                readyLine: gateway ? "http server listening" : "rpc server listening"
            )
        }
        #expect(process.log.contains("mutual TLS on RPC connections"), "\(process.log)")
        #expect(process.log.contains(logged), "\(process.log)")
        #expect(process.log.hasPrefix("{"), "the example asks for JSON logs")
        // Stopped off the concurrency pool, and killed if SIGTERM has not ended it in 20 s: a
        // notifier started from its example config was twice seen not to exit on SIGTERM in full
        // runs (not reproduced alone; under investigation), and a wait on the pool would starve
        // every other test. Said on stderr rather than failed until it is understood.
        if try await !offPool({ process.stop(within: 20) }) {
            FileHandle.standardError.write(Data("warning: \(executable) did not exit within 20 s of SIGTERM; killed. The end of its log:\n\(process.log.suffix(4000))\n".utf8))
        }
    }

    /// The images run every process as uid 10001. The RPC client and server once set TCP_NODELAY
    /// at the socket level, which is SO_DEBUG there: root may set it, anyone else is refused, so
    /// every call between unprivileged processes failed ("setsockopt: Permission denied").
    /// Found by `make check-images`; this keeps it found in `make test`.
    @Test("a service serves, and its health check calls it, as an unprivileged user, as the images run them")
    func unprivilegedUser() async throws {
        let user: UInt32 = 10001
        let data = try TemporaryFolder()
        let certificates = try TemporaryFolder()
        try await offPool { try RekeySystem.makeCertificates(in: certificates.path) }
        if geteuid() == 0 {
            for folder in [data.path, certificates.path] {
                for name in ["."] + (try FileManager.default.contentsOfDirectory(atPath: folder)) {
                    #expect(chown(folder + "/" + name, user, user) == 0)
                }
            }
        }
        let environment = [
            "REKEY_RESET_TOKEN_TLS": "required", "REKEY_RESET_TOKEN_TLS_CA": certificates.path + "/ca.pem",
            "REKEY_RESET_TOKEN_TLS_CERT": certificates.path + "/reset-token.pem", "REKEY_RESET_TOKEN_TLS_KEY": certificates.path + "/reset-token-key.pem",
        ]
        let tokens = try await offPool {
            try ServiceProcess(
                "rekey-reset-token", arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", data.path], environment: environment, runAs: user
            )
        }
        let check = try await offPool {
            try ServiceProcess.run("rekey-reset-token", ["healthcheck", "--address", "127.0.0.1:\(tokens.port)"], environment: environment, runAs: user)
        }
        #expect(check.status == 0, "\(check.output)\n--- the service's log ---\n\(tokens.log)")
        #expect(try await offPool { tokens.stop(within: 20) })

        // A key file the user cannot read is named as such (it was once called "not a PEM key").
        if geteuid() == 0 {
            #expect(chown(certificates.path + "/reset-token-key.pem", 0, 0) == 0)
            #expect(chmod(certificates.path + "/reset-token-key.pem", 0o600) == 0)
            let refused = try await offPool {
                try ServiceProcess.run(
                    "rekey-reset-token", ["serve", "--listen", "127.0.0.1:0", "--data-dir", data.path], environment: environment, runAs: user
                )
            }
            #expect(refused.status != 0)
            #expect(refused.output.contains("reset-token-key.pem: permission denied to this process (uid 10001)"), "\(refused.output)")
        }
    }

    @Test("services on 127.0.0.2-4 and the gateway on 127.0.0.5 with mutual TLS, configured by a file; health checks; the notifier restarted and upgraded under traffic: only clean 503s, no accepted message lost")
    func independentServices() async throws {
        let directoryData = try TemporaryFolder()
        let tokensData = try TemporaryFolder()
        let notifierData = try TemporaryFolder()
        let bootstrap = try await Self.run("rekey-directory", ["bootstrap-admin", "--data-dir", directoryData.path, "--email", "owner@example.com", "--name", "Olive Owner"])
        #expect(bootstrap.status == 0, "\(bootstrap.output)")
        let apiKey = try #require(bootstrap.output.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines))

        // Mutual TLS between them, as `make run` sets it up: a CA and a certificate per process.
        let certificates = try TemporaryFolder()
        try await offPool { try RekeySystem.makeCertificates(in: certificates.path) }
        func tls(_ service: String, _ workload: String) -> [String: String] {
            [
                "REKEY_\(service)_TLS": "required", "REKEY_\(service)_TLS_CA": certificates.path + "/ca.pem",
                "REKEY_\(service)_TLS_CERT": certificates.path + "/\(workload).pem", "REKEY_\(service)_TLS_KEY": certificates.path + "/\(workload)-key.pem",
            ]
        }
        let directoryEnvironment = tls("DIRECTORY", "directory").merging(["REKEY_DIRECTORY_METRICS_LISTEN": "127.0.0.2:0"]) { $1 }
        let directory = try await offPool { try ServiceProcess(
            "rekey-directory", arguments: ["serve", "--listen", "127.0.0.2:0", "--data-dir", directoryData.path, "--scrypt-log-n", "10"],
            environment: directoryEnvironment
        ) }
        defer { directory.stopInBackground() }
        #expect(directory.log.contains("mutual TLS on RPC connections"), "\(directory.log)")
        let tokensEnvironment = tls("RESET_TOKEN", "reset-token").merging(["REKEY_RESET_TOKEN_METRICS_LISTEN": "127.0.0.3:0"]) { $1 }
        let tokens = try await offPool { try ServiceProcess(
            "rekey-reset-token",
            arguments: ["serve", "--listen", "127.0.0.3:0", "--data-dir", tokensData.path, "--limit-per-admin", "100000", "--limit-per-user", "100000"],
            environment: tokensEnvironment
        ) }
        defer { tokens.stopInBackground() }
        let notifierEnvironment = tls("NOTIFIER", "notifier").merging(["REKEY_NOTIFIER_METRICS_LISTEN": "127.0.0.4:0"]) { $1 }
        var notifier = try await offPool { try ServiceProcess(
            "rekey-notifier", arguments: ["serve", "--listen", "127.0.0.4:0", "--data-dir", notifierData.path, "--poll-interval", "50ms"],
            environment: notifierEnvironment
        ) }
        let notifierPort = notifier.port
        let notifierArguments = ["serve", "--listen", "127.0.0.4:\(notifierPort)", "--data-dir", notifierData.path, "--poll-interval", "50ms"]
        defer { notifier.stopInBackground() }

        // The gateway learns where everything is from its config file alone.
        let gatewayFolder = try TemporaryFolder()
        let config = gatewayFolder.path + "/gateway.conf"
        try """
        listen = 127.0.0.5:0
        metrics_listen = 127.0.0.5:0
        public_url = https://sso.example.test
        directory = 127.0.0.2:\(directory.port)
        reset_token = 127.0.0.3:\(tokens.port)
        notifier = 127.0.0.4:\(notifierPort)
        tls_ca = \(certificates.path)/ca.pem
        tls_cert = \(certificates.path)/gateway.pem
        tls_key = \(certificates.path)/gateway-key.pem
        form_secret = \(Self.credential)

        """.write(toFile: config, atomically: true, encoding: .utf8)
        let gateway = try await offPool { try ServiceProcess(
            "rekey-gateway", arguments: ["serve", "--config", config], environment: ["REKEY_GATEWAY_TLS": "required"],
            portPattern: #"http\.port[=":]+\d+"#, readyLine: "http server listening"
        ) }
        defer { gateway.stopInBackground() }
        let base = "http://127.0.0.5:\(gateway.port)"

        // Health checks, as a container runtime would run them.
        // (over mutual TLS, with each service's own certificate).
        #expect(try await Self.run("rekey-directory", ["healthcheck", "--address", "127.0.0.2:\(directory.port)"], environment: directoryEnvironment).status == 0)
        #expect(try await Self.run("rekey-reset-token", ["healthcheck", "--address", "127.0.0.3:\(tokens.port)"], environment: tokensEnvironment).status == 0)
        #expect(try await Self.run("rekey-notifier", ["healthcheck", "--address", "127.0.0.4:\(notifierPort)"], environment: notifierEnvironment).status == 0)
        let plain = try await Self.run("rekey-directory", ["healthcheck", "--address", "127.0.0.2:\(directory.port)", "--tls", "off"])
        #expect(plain.status == 1, "a plaintext health check is refused: \(plain.output)")
        #expect(try await Self.run("rekey-gateway", ["healthcheck", "--url", base]).status == 0)
        #expect(try await Self.run("rekey-gateway", ["healthcheck", "--url", base, "--ready"]).status == 0)

        // The forgot-password flow across the four addresses.
        let api = Browser(base: base)
        let auth = ["Authorization": "Bearer \(apiKey)", "Content-Type": "application/json"]
        let created = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200, "\(created.body)")
        let userID = try #require((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String)
        let browser = Browser(base: base)
        let csrf = Browser.csrf(in: try await browser.send("GET", "/password/forgot"))
        #expect(try await browser.send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf]).status == 200)
        let mailDir = notifierData.path + "/mail/new"
        let first = try await Self.waitForFiles(in: mailDir, count: 1)
        #expect(first.count == 1)
        #expect(first.first.flatMap { try? String(contentsOfFile: mailDir + "/" + $0, encoding: .utf8) }?.contains("https://sso.example.test/password/reset?token=") == true)

        // Traffic that keeps going while the notifier is restarted and then upgraded.
        let running = RunningFlag()
        let load = Task { () -> [(status: Int, messageID: String?)] in
            var results: [(Int, String?)] = []
            let sender = Browser(base: base)
            while running.isOn {
                do {
                    let page = try await sender.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth)
                    let id = (try? JSONSerialization.jsonObject(with: Data(page.body.utf8)) as? [String: Any])?["message_id"] as? String
                    results.append((page.status, id))
                    if page.status == 200 { running.countAccepted() }
                } catch {
                    results.append((0, "\(error)"))
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
            return results
        }

        // Restart: while it is down, every answer is a clean 503 that names the service.
        let flowing = running.acceptedCount
        #expect(await RekeySystem.eventually { running.acceptedCount >= flowing + 3 }, "traffic is going through before the restart")
        _ = try await offPool { [notifier] in notifier.stop() }
        let gap = try await api.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth)
        #expect(gap.status == 503)
        #expect(gap.body.contains("notifier"), "\(gap.body)")
        let page = try await browser.send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf])
        #expect(page.status == 503)
        #expect(page.body.contains("try again"), "\(page.body)")
        #expect(try await Self.run("rekey-notifier", ["healthcheck", "--address", "127.0.0.4:\(notifierPort)"], environment: notifierEnvironment).status == 1)
        #expect(try await Self.run("rekey-gateway", ["healthcheck", "--url", base, "--ready"]).status == 1)
        #expect(try await Self.run("rekey-gateway", ["healthcheck", "--url", base]).status == 0, "the gateway itself is alive")
        notifier = try await offPool { try ServiceProcess("rekey-notifier", arguments: notifierArguments, environment: notifierEnvironment) }
        try await Self.waitUntilAnswered(api, userID: userID, auth: auth)

        // Upgrade: stop, start another build (a copy of the executable stands in) on the same data.
        let newBuild = try TemporaryFolder()
        let upgraded = newBuild.path + "/rekey-notifier"
        try FileManager.default.copyItem(atPath: ServiceProcess.productsDirectory.appendingPathComponent("rekey-notifier").path, toPath: upgraded)
        let flowingAgain = running.acceptedCount
        #expect(await RekeySystem.eventually { running.acceptedCount >= flowingAgain + 3 }, "traffic is going through before the upgrade")
        _ = try await offPool { [notifier] in notifier.stop() }
        #expect(try await api.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth).status == 503)
        notifier = try await offPool { try ServiceProcess(upgraded, arguments: notifierArguments, environment: notifierEnvironment) }
        #expect(notifier.log.contains("db.schema_version"))
        try await Self.waitUntilAnswered(api, userID: userID, auth: auth)
        // Traffic after the upgrade too; however loaded the machine, until enough went through.
        let before = running.acceptedCount
        let enough = ContinuousClock.now + .seconds(20)
        while running.acceptedCount < max(11, before + 3), ContinuousClock.now < enough {
            try await Task.sleep(for: .milliseconds(50))
        }
        running.turnOff()
        let results = await load.value

        let statuses = Set(results.map(\.status))
        #expect(statuses.isSubset(of: [200, 503]), "nothing worse than a clean 503: \(results.filter { $0.status != 200 && $0.status != 503 })")
        let accepted = results.filter { $0.status == 200 }.compactMap(\.messageID)
        #expect(accepted.count > 10, "the traffic went on around the restarts")
        // Every message the gateway said was queued is delivered.
        let deadline = ContinuousClock.now + .seconds(30)
        var undelivered = accepted
        while !undelivered.isEmpty, ContinuousClock.now < deadline {
            var still: [String] = []
            for id in undelivered {
                let message = try await api.send("GET", "/api/admin/v1/messages/\(id)", headers: auth)
                let state = (try? JSONSerialization.jsonObject(with: Data(message.body.utf8)) as? [String: Any])?["state"] as? String
                if state != "accepted" { still.append(id) }
            }
            undelivered = still
            if !undelivered.isEmpty { try await Task.sleep(for: .milliseconds(200)) }
        }
        #expect(undelivered.isEmpty, "accepted but not delivered: \(undelivered)")
        let files = try FileManager.default.contentsOfDirectory(atPath: mailDir)
        #expect(files.count >= accepted.count + 1)
    }

    /// `ServiceProcess.run` off the concurrency pool (it waits for the process).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        try await offPool { try ServiceProcess.run(executable, arguments, environment: environment) }
    }

    /// Waits until a reset send through the gateway succeeds again (the notifier is back).
    static func waitUntilAnswered(_ api: Browser, userID: String, auth: [String: String]) async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if try await api.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth).status == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("the gateway did not reach the restarted notifier")
    }

    static func waitForFiles(in folder: String, count: Int) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            if files.count >= count { return files }
            try await Task.sleep(for: .milliseconds(50))
        }
        return []
    }
}

/// Tells a loop to finish its current request and stop (cancelling would cancel the request).
final class RunningFlag: @unchecked Sendable {
    // @unchecked: `on` and `accepted` are only touched under `lock`.
    private let lock = NSLock()
    private var on = true
    private var accepted = 0

    var isOn: Bool { self.lock.withLock { self.on } }
    var acceptedCount: Int { self.lock.withLock { self.accepted } }

    func turnOff() { self.lock.withLock { self.on = false } }
    func countAccepted() { self.lock.withLock { self.accepted += 1 } }
}
