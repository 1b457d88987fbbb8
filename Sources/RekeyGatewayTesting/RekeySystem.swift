import Foundation
import RekeyRPCNIO
import RekeyTesting

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The whole system as ops run it: the three services and the gateway as separate executables on
/// loopback, the notifier writing mail to a maildir; a browser's requests made by hand.
package final class RekeySystem: @unchecked Sendable {
    // @unchecked: the processes are only touched by the test that owns this object.
    package static let credential = "system-test-credential-0123456789"
    package let folder: TemporaryFolder
    package let apiKey: String
    /// Every replica of rekey-directory; more than one only with a shared database
    /// (`REKEY_DIRECTORY_DATABASE` in `extraEnvironment`).
    package var directoryReplicas: [ServiceProcess]
    /// The first (usually the only) replica of rekey-directory.
    package var directory: ServiceProcess {
        get { self.directoryReplicas[0] }
        set { self.directoryReplicas[0] = newValue }
    }
    /// Every replica of rekey-reset-token; more than one only with a shared database
    /// (`REKEY_RESET_TOKEN_DATABASE` in `extraEnvironment`).
    package var tokenReplicas: [ServiceProcess]
    /// The first (usually the only) replica of rekey-reset-token.
    package var tokens: ServiceProcess {
        get { self.tokenReplicas[0] }
        set { self.tokenReplicas[0] = newValue }
    }
    /// Every replica of rekey-notifier; more than one only with a shared database
    /// (`REKEY_NOTIFIER_DATABASE` in `extraEnvironment`).
    package var notifierReplicas: [ServiceProcess]
    /// The first (usually the only) replica of rekey-notifier.
    package var notifier: ServiceProcess {
        get { self.notifierReplicas[0] }
        set { self.notifierReplicas[0] = newValue }
    }
    private let environment: [String: String]
    private let arguments: [String: [String]]
    /// Every gateway, each over every replica of each service.
    package let gateways: [ServiceProcess]
    /// The first (usually the only) gateway.
    package var gateway: ServiceProcess { self.gateways[0] }
    package let gatewayPort: Int
    /// The DNS the notifier's domain check asks: example.test with SPF, DMARC and MX published.
    package let dns: DNSTestServer
    /// Whether the processes talk mutual TLS (the default), with certificates from `rekey certs`
    /// in ``certificates``; else plaintext with ``credential``.
    package let tls: Bool
    package var certificates: String { self.folder.path + "/certs" }
    /// The processes and the workloads their certificates name.
    package static let workloads = [("DIRECTORY", "directory"), ("RESET_TOKEN", "reset-token"), ("NOTIFIER", "notifier"), ("GATEWAY", "gateway")]

    package var mailDir: String { self.folder.path + "/mail/new" }
    package var base: String { "http://127.0.0.1:\(self.gatewayPort)" }

    /// Extra arguments for the notifier (by default it writes to a maildir), the reset-token
    /// service and the gateway.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: use start()")
    package init(
        directory directoryArguments: [String] = [], notifier notifierArguments: [String] = [], tokens tokenArguments: [String] = [],
        gateway gatewayArguments: [String] = [],
        gatewayListen: String = "127.0.0.1:0",
        publicURL: String = "https://sso.example.test",
        tls: Bool = true,
        directoryReplicas: Int = 1,
        tokenReplicas: Int = 1,
        notifierReplicas: Int = 1,
        gateways: Int = 1,
        extraEnvironment: [String: String] = [:]
    ) throws {
        self.folder = try TemporaryFolder()
        self.tls = tls
        let data = self.folder.path
        let bootstrap = Process()
        bootstrap.executableURL = ServiceProcess.productsDirectory.appendingPathComponent("rekey-directory")
        bootstrap.arguments = ["bootstrap-admin", "--data-dir", data, "--email", "owner@example.com", "--name", "Olive Owner"]
        // On the directory's database, wherever the replicas will keep it.
        bootstrap.environment = ProcessInfo.processInfo.environment.merging(extraEnvironment.filter { $0.key.hasPrefix("REKEY_DIRECTORY_") }) { $1 }
        let output = Pipe()
        bootstrap.standardOutput = output
        try bootstrap.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waitForExit(bootstrap)
        self.apiKey = text.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        var environment: [String: String] = [:]
        if tls {
            // As `make run` does: a CA and a certificate per process, and no shared credential.
            try Self.makeCertificates(in: data + "/certs")
            for (service, workload) in Self.workloads {
                environment["REKEY_\(service)_TLS"] = "required"
                environment["REKEY_\(service)_TLS_CA"] = data + "/certs/ca.pem"
                environment["REKEY_\(service)_TLS_CERT"] = data + "/certs/\(workload).pem"
                environment["REKEY_\(service)_TLS_KEY"] = data + "/certs/\(workload)-key.pem"
            }
            environment["REKEY_GATEWAY_FORM_SECRET"] = Self.credential
        } else {
            environment = [
                "REKEY_DIRECTORY_CREDENTIALS": Self.credential, "REKEY_RESET_TOKEN_CREDENTIALS": Self.credential,
                "REKEY_NOTIFIER_CREDENTIALS": Self.credential, "REKEY_GATEWAY_SERVICE_CREDENTIAL": Self.credential,
            ]
        }
        let common = ["--data-dir", data]
        self.dns = try DNSTestServer(zone: [
            "example.test": [("TXT", "v=spf1 -all"), ("MX", "10 mx.example.test.")],
            "_dmarc.example.test": [("TXT", "v=DMARC1; p=quarantine")],
        ])
        environment.merge(extraEnvironment) { $1 }
        self.environment = environment
        self.arguments = [
            "rekey-directory": ["serve", "--scrypt-log-n", "10"] + common + directoryArguments,
            "rekey-reset-token": ["serve"] + common + tokenArguments,
            "rekey-notifier": ["serve", "--poll-interval", "50ms", "--mail-dir", data + "/mail", "--from-address", "no-reply@example.test", "--dns-server", self.dns.address]
                + common + notifierArguments,
        ]
        let any = ["--listen", "127.0.0.1:0"]
        let directoryArguments = self.arguments["rekey-directory"]! + any
        self.directoryReplicas = try (0..<max(1, directoryReplicas)).map { _ in
            try ServiceProcess("rekey-directory", arguments: directoryArguments, environment: environment)
        }
        let tokenArguments = self.arguments["rekey-reset-token"]! + any
        self.tokenReplicas = try (0..<max(1, tokenReplicas)).map { _ in
            try ServiceProcess("rekey-reset-token", arguments: tokenArguments, environment: environment)
        }
        let notifierArguments = self.arguments["rekey-notifier"]! + any
        self.notifierReplicas = try (0..<max(1, notifierReplicas)).map { _ in
            try ServiceProcess("rekey-notifier", arguments: notifierArguments, environment: environment)
        }
        let backends = [
            "--directory", self.directoryReplicas.map { "127.0.0.1:\($0.port)" }.joined(separator: ","), "--reset-token", self.tokenReplicas.map { "127.0.0.1:\($0.port)" }.joined(separator: ","),
            "--notifier", self.notifierReplicas.map { "127.0.0.1:\($0.port)" }.joined(separator: ","),
        ]
        self.gateways = try (0..<max(1, gateways)).map { index in
            try ServiceProcess(
                "rekey-gateway",
                arguments: ["serve", "--listen", index == 0 ? gatewayListen : "127.0.0.1:0", "--public-url", publicURL] + backends + gatewayArguments,
                environment: environment,
                portPattern: #"http\.port[=":]+\d+"#,
                readyLine: "http server listening"
            )
        }
        self.gatewayPort = self.gateways[0].port
    }

    /// Starts the system on a thread of its own: starting processes and waiting for them to say
    /// they listen blocks, and must not hold one of the few threads of Swift's concurrency pool
    /// (the in-process tests running beside it would wait for it).
    package static func start(
        directory: [String] = [], notifier: [String] = [], tokens: [String] = [], gateway: [String] = [],
        gatewayListen: String = "127.0.0.1:0", publicURL: String = "https://sso.example.test", tls: Bool = true,
        directoryReplicas: Int = 1, tokenReplicas: Int = 1, notifierReplicas: Int = 1, gateways: Int = 1, extraEnvironment: [String: String] = [:]
    ) async throws -> RekeySystem {
        try await offPool {
            try RekeySystem(
                directory: directory, notifier: notifier, tokens: tokens, gateway: gateway, gatewayListen: gatewayListen, publicURL: publicURL, tls: tls,
                directoryReplicas: directoryReplicas, tokenReplicas: tokenReplicas, notifierReplicas: notifierReplicas, gateways: gateways,
                extraEnvironment: extraEnvironment
            )
        }
    }

    /// `rekey certs init` and `rekey certs issue` for every process, into `folder`.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package static func makeCertificates(in folder: String, days: Int = 30) throws {
        let commands = [["certs", "init", "--out", folder]]
            + Self.workloads.map { ["certs", "issue", $0.1, "--ca", folder, "--out", folder, "--days", "\(days)", "--dns", "localhost", "--ip", "127.0.0.1"] }
        for arguments in commands {
            let (status, output) = try ServiceProcess.run("rekey", arguments)
            guard status == 0 else {
                throw ServiceProcessError(message: "rekey \(arguments.joined(separator: " ")) failed: \(output)")
            }
        }
    }

    /// What a test calling a service directly presents: the gateway's certificate (or nothing
    /// with plaintext; use ``credential`` then).
    package func gatewayTLS() throws -> RPCTLS? {
        guard self.tls else { return nil }
        return try RPCTLS(
            files: .init(ca: self.certificates + "/ca.pem", certificate: self.certificates + "/gateway.pem", key: self.certificates + "/gateway-key.pem"),
            trustDomain: "rekey"
        )
    }

    /// Creates a custom staff role with `rekey-directory create-role`, as ops would (on the
    /// running directory's database).
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func createRole(_ name: String, permissions: [String]) throws {
        let process = Process()
        process.executableURL = ServiceProcess.productsDirectory.appendingPathComponent("rekey-directory")
        process.arguments = ["create-role", "--data-dir", self.folder.path, "--name", name, "--staff"] + permissions.flatMap { ["--permission", $0] }
        process.environment = ProcessInfo.processInfo.environment.merging(self.environment.filter { $0.key.hasPrefix("REKEY_DIRECTORY_DATABASE") }) { $1 }
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        waitForExit(process)
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "RekeySystem", code: Int(process.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "create-role \(name) failed"])
        }
    }

    /// Starts a stopped service again on the port it had, as ops would.
    @available(*, noasync, message: "it blocks one of the few threads of the concurrency pool: from async code, use its async variant where there is one, or offPool")
    package func restart(_ executable: String, port: Int) throws -> ServiceProcess {
        try ServiceProcess(executable, arguments: self.arguments[executable]! + ["--listen", "127.0.0.1:\(port)"], environment: self.environment)
    }

    /// Stops every process and returns once all have exited (their logs complete).
    package func stopAndWait() async throws {
        let processes = self.gateways + self.notifierReplicas + self.tokenReplicas + self.directoryReplicas
        for process in processes {
            process.terminate()
        }
        try await offPool {
            for process in processes {
                process.stop()
            }
        }
    }

    /// Stops every process without waiting for them to exit (see ``stopAndWait()``): for `defer`.
    package func stopInBackground() {
        let processes = self.gateways + self.notifierReplicas + self.tokenReplicas + self.directoryReplicas
        for process in processes where process.endedBadly {
            // It failed before the test was done with it (a crash): its last words help.
            FileHandle.standardError.write(Data("a process of the system ended badly; the end of its log:\n\(process.log.suffix(8000))\n".utf8))
        }
        // All at once, and waited for on a thread of its own: each takes a second or two to drain,
        // and a test's `defer { system.stopInBackground() }` runs on one of the two threads of Swift's
        // concurrency pool, which the in-process tests beside it need. The thread keeps the
        // system (and its folders) alive until every process has exited.
        for process in processes {
            process.terminate()
        }
        Thread {
            for process in processes {
                process.stop()
            }
            self.dns.stop()
        }.start()
    }

    /// Waits until `condition` holds, looking every 50 ms for up to `timeout`; whether it did.
    /// What tests wait on instead of sleeping for a fixed time.
    @discardableResult
    package static func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return try await condition()
    }

    /// The newest mail in the maildir, parsed, waiting for it up to 10 s.
    package func waitForMail(count: Int) async throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: self.mailDir)) ?? []).sorted()
            if files.count >= count {
                return try files.map { try String(contentsOfFile: self.mailDir + "/" + $0, encoding: .utf8) }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return []
    }
}

/// A browser's worth of HTTP: no redirects followed, cookies kept by hand.
package final class Browser: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    package struct Page {
        package var status: Int
        package var headers: [String: String]
        package var body: String
    }

    private lazy var session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpShouldSetCookies = false
        configuration.httpCookieStorage = nil
        return URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }()
    package var cookies: [String: String] = [:]
    package let base: String

    package init(base: String) {
        self.base = base
    }

    package func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    package func send(_ method: String, _ path: String, form: [String: String]? = nil, headers: [String: String] = [:], body: Data? = nil) async throws -> Page {
        var request = URLRequest(url: URL(string: self.base + path)!)
        request.httpMethod = method
        if !self.cookies.isEmpty {
            request.setValue(self.cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "), forHTTPHeaderField: "Cookie")
        }
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        if let form {
            request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            request.httpBody = Data(form.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)" }.joined(separator: "&").utf8)
        } else if let body {
            request.httpBody = body
        }
        let (data, response) = try await self.session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            headers[String(describing: key).lowercased()] = String(describing: value)
        }
        if let setCookie = headers["set-cookie"] {
            for cookie in setCookie.components(separatedBy: ", ") {
                let pair = cookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                if pair.count == 2 { self.cookies[String(pair[0])] = String(pair[1]) } else if pair.count == 1 { self.cookies[String(pair[0])] = nil }
            }
        }
        return Page(status: http.statusCode, headers: headers, body: String(decoding: data, as: UTF8.self))
    }

    /// The CSRF token the last page's form carries.
    package static func csrf(in page: Page) -> String {
        Self.csrf(in: page.body)
    }

    /// The CSRF token of the first form in `html`.
    package static func csrf(in html: String) -> String {
        guard let range = html.range(of: #"name="csrf" value="([^"]+)""#, options: .regularExpression) else { return "" }
        return String(html[range].dropFirst(#"name="csrf" value=""#.count).dropLast())
    }
}

extension String {
    /// The reset or verification link in a maildir message (quoted-printable undone).
    package func link(_ path: String) -> String? {
        let unfolded = self.replacingOccurrences(of: "=\r\n", with: "").replacingOccurrences(of: "=3D", with: "=")
        guard let range = unfolded.range(of: #"https://sso\.example\.test"# + path + #"\?token=[A-Za-z0-9_-]+"#, options: .regularExpression) else { return nil }
        return String(unfolded[range])
    }
}

