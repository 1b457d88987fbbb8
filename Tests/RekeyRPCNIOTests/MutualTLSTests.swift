import Foundation
import Logging
import RekeyPKI
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import Synchronization
import Testing

/// Mutual TLS on RPC connections, over loopback, with throw-away certificates made in the test
/// the way `rekey certs` makes them.
@Suite("Mutual TLS between services")
struct MutualTLSTests {
    /// A deployment CA and the certificates it issued, as files in a temporary folder.
    final class PKI: Sendable {
        let folder: TemporaryFolder
        let ca: DeploymentPKI.Issued

        init(trustDomain: String = "rekey") throws {
            self.folder = try TemporaryFolder()
            self.ca = try DeploymentPKI.makeCA(trustDomain: trustDomain)
            try Self.write(self.ca.certificatePEM, to: self.folder.path + "/ca.pem")
        }

        /// Issues a certificate for `workload` into `<name>.pem` and `<name>-key.pem` (replacing
        /// them atomically, as `rekey certs issue --force` does).
        @discardableResult
        func issue(_ workload: String, as name: String? = nil, validity: TimeInterval = 86_400, now: Date = Date()) throws -> RPCTLS.Files {
            let name = name ?? workload
            let issued = try DeploymentPKI.issue(
                workload: workload, caCertificatePEM: self.ca.certificatePEM, caKeyPEM: self.ca.keyPEM, validity: validity, now: now
            )
            let files = RPCTLS.Files(ca: self.folder.path + "/ca.pem", certificate: self.folder.path + "/\(name).pem", key: self.folder.path + "/\(name)-key.pem")
            try Self.write(issued.certificatePEM, to: files.certificate)
            try Self.write(issued.keyPEM, to: files.key)
            return files
        }

        func tls(_ workload: String, validity: TimeInterval = 86_400, now: Date = Date()) throws -> RPCTLS {
            try RPCTLS(files: self.issue(workload, validity: validity, now: now), trustDomain: "rekey")
        }

        static func write(_ text: String, to path: String) throws {
            try text.write(toFile: path + ".new", atomically: false, encoding: .utf8)
            guard rename(path + ".new", path) == 0 else { throw RPCTLS.Failure("cannot rename \(path)") }
        }
    }

    /// What the test server allows: the gateway may echo.
    static let policy = CallerPolicy(["gateway": [Rekey_Testing_V1_Echo.Method.Echo.descriptor]])

    func withServer<R>(_ tls: RPCTLS, logs: LogCapture = LogCapture(), _ body: (Int) async throws -> R) async throws -> R {
        var configuration = RPCServer.Configuration.defaults
        configuration.tls = tls
        // Once a peer per hour: however slow the machine, the calls of one test are one window.
        configuration.handshakeLogInterval = .seconds(3600)
        let interceptor = CallerPolicyInterceptor(policy: Self.policy, refusals: RefusalLogLimiter(interval: .seconds(3600)))
        return try await withRPCServer(
            services: [EchoService()], interceptors: [interceptor], configuration: configuration,
            logger: logs.logger(label: "rekey.test.server", level: .info)
        ) { _, port in
            try await body(port)
        }
    }

    /// One echo call on a new connection.
    func echo(port: Int, tls: RPCTLS?, server: String? = "directory", credential: String? = nil) async throws -> String {
        try await withRPCClient(port: port, credential: credential, configure: { $0.tls = tls; $0.serverIdentity = server }) { client in
            try await Self.echo(client)
        }
    }

    static func echo(_ client: RPCClient, _ text: String = "hello") async throws -> String {
        var request = Rekey_Testing_V1_EchoRequest()
        request.text = text
        // A generous deadline: a loaded test machine is slow, and slowness is not what is tested.
        return try await Rekey_Testing_V1_Echo.Client(wrapping: client).echo(request, options: CallOptions(timeout: .seconds(60))).text
    }

    @Test("the gateway's certificate gets through to a method it may call, and so does any peer's health check")
    func allowed() async throws {
        let pki = try PKI()
        let server = try pki.tls("directory")
        try await self.withServer(server) { port in
            #expect(try await self.echo(port: port, tls: try pki.tls("gateway")) == "hello")
            // Health needs a certificate from the CA, whoever it names.
            let notifier = try pki.tls("notifier")
            let status = await HealthCheckProbe.check(port: port, tls: notifier, server: "directory")
            #expect(status == "SERVING")
        }
    }

    @Test("a valid notifier certificate calling a method only the gateway may call gets PERMISSION_DENIED, naming no policy; it is counted and logged once")
    func permissionDenied() async throws {
        let pki = try PKI()
        let logs = LogCapture()
        try await self.withServer(try pki.tls("directory"), logs: logs) { port in
            let notifier = try pki.tls("notifier")
            for _ in 0..<3 {
                let error = await #expect(throws: RPCError.self) { try await self.echo(port: port, tls: notifier) }
                #expect(error?.code == .permissionDenied, "\(String(describing: error))")
                #expect(error.map { !$0.message.contains("gateway") && !$0.message.contains("notifier") } == true, "\(String(describing: error))")
            }
        }
        let refusals = logs.lines.filter { $0.contains("refused a call this caller may not make") }
        #expect(refusals.count == 1, "\(logs.lines)")
        #expect(refusals.first?.contains("rpc.peer_identity=notifier") == true)
    }

    @Test("refused at the handshake, the log saying why once per peer: a plaintext client, a certificate from another CA, an expired certificate")
    func refusedPeers() async throws {
        let pki = try PKI()
        let other = try PKI()
        let logs = LogCapture()
        try await self.withServer(try pki.tls("directory"), logs: logs) { port in
            // Plaintext, with the old shared credential: nothing but a closed connection.
            for _ in 0..<3 {
                let error = await #expect(throws: RPCError.self) { try await self.echo(port: port, tls: nil, credential: testCredential) }
                #expect(error?.code == .unavailable, "\(String(describing: error))")
            }
            let foreign = try other.tls("gateway")
            await #expect(throws: RPCError.self) { try await self.echo(port: port, tls: foreign) }
            let expired = try pki.tls("gateway", validity: 30 * 86_400, now: Date().addingTimeInterval(-40 * 86_400))
            await #expect(throws: RPCError.self) { try await self.echo(port: port, tls: expired) }
            // And the server still serves the right caller.
            #expect(try await self.echo(port: port, tls: try pki.tls("gateway")) == "hello")
        }
        let handshakes = logs.lines.filter { $0.contains("refused a connection: the TLS handshake failed") }
        // One line per peer address and interval: all came from 127.0.0.1, so the first one.
        #expect(handshakes.count == 1, "\(logs.lines)")
        #expect(handshakes.first?.contains("does not speak TLS") == true, "\(handshakes)")
    }

    @Test("each refusal reason in words, from the server's side")
    func refusalReasons() async throws {
        let pki = try PKI()
        let other = try PKI()
        // A client that trusts our CA but holds a certificate from another one.
        let foreign = try other.issue("gateway")
        let cases: [(String, RPCTLS?, String)] = [
            ("another CA", try RPCTLS(files: .init(ca: pki.folder.path + "/ca.pem", certificate: foreign.certificate, key: foreign.key), trustDomain: "rekey"), "does not chain to our CA"),
            ("expired", try pki.tls("gateway", validity: 30 * 86_400, now: Date().addingTimeInterval(-40 * 86_400)), "has expired"),
            // And a client that does not trust us: it hangs up, and the server says so.
            ("distrusting", try other.tls("gateway"), "the peer refused the TLS handshake"),
        ]
        for (name, client, reason) in cases {
            let logs = LogCapture()
            try await self.withServer(try pki.tls("directory"), logs: logs) { port in
                await #expect(throws: RPCError.self) { try await self.echo(port: port, tls: client) }
                // The client may know before the server has logged it.
                for _ in 0..<1000 where !logs.lines.contains(where: { $0.contains("refused a connection") }) {
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            let line = logs.lines.first { $0.contains("refused a connection") }
            #expect(line?.contains(reason) == true, "\(name): \(logs.lines)")
        }
    }

    @Test("the client refuses a server whose certificate names another service, before sending anything")
    func wrongServer() async throws {
        let pki = try PKI()
        try await self.withServer(try pki.tls("notifier")) { port in
            let error = await #expect(throws: RPCError.self) { try await self.echo(port: port, tls: try pki.tls("gateway"), server: "directory") }
            #expect(error?.code == .unavailable)
            #expect(error?.message.contains("the peer is not directory: its certificate names spiffe://rekey/notifier") == true, "\(String(describing: error))")
        }
    }

    @Test("certificates rotated under steady traffic: no call fails; new connections get the new certificate, open ones go on")
    func rotation() async throws {
        let pki = try PKI()
        let server = try RPCTLS(files: try pki.issue("directory"), trustDomain: "rekey")
        let client = try RPCTLS(files: try pki.issue("gateway"), trustDomain: "rekey")
        let before = server.notValidAfter
        try await self.withServer(server) { port in
            let tally = Tally()
            let configure: @Sendable (inout RPCClient.Configuration) -> Void = {
                $0.tls = client
                $0.serverIdentity = "directory"
            }
            try await withRPCClient(port: port, credential: nil, configure: configure) { longLived in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in 0..<4 {
                        group.addTask {
                            while tally.running.load(ordering: .relaxed) {
                                do {
                                    // Half on the long-lived connection, half on new ones.
                                    if worker % 2 == 0 {
                                        _ = try await Self.echo(longLived)
                                    } else {
                                        _ = try await withRPCClient(port: port, credential: nil, configure: configure) { try await Self.echo($0) }
                                    }
                                    tally.calls.add(1, ordering: .relaxed)
                                } catch {
                                    tally.failures.add(1, ordering: .relaxed)
                                    Issue.record("a call failed during rotation: \(error)")
                                }
                            }
                        }
                    }
                    for round in 1...3 {
                        let seen = tally.calls.load(ordering: .relaxed)
                        while tally.calls.load(ordering: .relaxed) < seen + 20 { try await Task.sleep(for: .milliseconds(5)) }
                        // New certificates for both sides, a second longer-lived each time.
                        try pki.issue("directory", validity: 86_400 + Double(round))
                        try pki.issue("gateway", validity: 86_400 + Double(round))
                        #expect(try server.reloadIfChanged())
                        #expect(try client.reloadIfChanged())
                        #expect(try !server.reloadIfChanged(), "nothing changed since")
                    }
                    let seen = tally.calls.load(ordering: .relaxed)
                    while tally.calls.load(ordering: .relaxed) < seen + 20 { try await Task.sleep(for: .milliseconds(5)) }
                    tally.running.store(false, ordering: .relaxed)
                    try await group.waitForAll()
                }
            }
            #expect(tally.failures.load(ordering: .relaxed) == 0)
            #expect(tally.calls.load(ordering: .relaxed) > 80)
        }
        #expect(server.notValidAfter > before)

        // A broken file does not replace what works.
        try "not a certificate".write(toFile: server.files.certificate, atomically: true, encoding: .utf8)
        #expect(throws: RPCTLS.Failure.self) { try server.reloadIfChanged() }
        #expect(server.workload == "directory")
    }

    @Test("a Python client (the ssl module) calls over mutual TLS with the gateway's certificate, and refuses a server that names another service")
    func pythonClient() async throws {
        let generated = try await InteropTests.generatePython()
        defer { try? FileManager.default.removeItem(at: generated) }
        let pki = try PKI()
        let gateway = try pki.issue("gateway")
        var configuration = RPCServer.Configuration.defaults
        configuration.tls = try pki.tls("directory")
        try await withRPCServer(services: [], interceptors: [CallerPolicyInterceptor(policy: Self.policy)], configuration: configuration) { _, port in
            func run(_ expected: String) async throws -> (Int32, String) {
                try await offPool {
                    try ServiceProcess.run(
                        InteropTests.python,
                        [InteropTests.root.appendingPathComponent("Tests/Interop/health_client.py").path, generated.path, "\(port)",
                         "--tls", gateway.ca, gateway.certificate, gateway.key, expected]
                    )
                }
            }
            let (status, text) = try await run("spiffe://rekey/directory")
            #expect(status == 0, "\(text)")
            #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == "SERVING SERVICE_UNKNOWN")
            let (refused, why) = try await run("spiffe://rekey/notifier")
            #expect(refused != 0)
            #expect(why.contains("the server is not spiffe://rekey/notifier: its certificate names spiffe://rekey/directory"), "\(why)")
        }
    }

    @Test("certificate files that cannot work are refused, naming the file and what is wrong")
    func badFiles() throws {
        let pki = try PKI()
        let good = try pki.issue("gateway")
        let other = try pki.issue("notifier")
        try "junk".write(toFile: pki.folder.path + "/junk.pem", atomically: true, encoding: .utf8)
        let cases: [(RPCTLS.Files, String, String)] = [
            (.init(ca: good.ca, certificate: good.certificate, key: other.key), "rekey", "does not belong to the certificate"),
            (.init(ca: good.ca, certificate: pki.folder.path + "/junk.pem", key: good.key), "rekey", "holds no PEM certificate"),
            (.init(ca: good.ca, certificate: good.certificate, key: pki.folder.path + "/missing.pem"), "rekey", "cannot read"),
            (good, "example.org", "names no workload in trust domain `example.org`"),
            (good, "Not Valid", "trust domain"),
        ]
        for (files, trustDomain, expected) in cases {
            let error = #expect(throws: RPCTLS.Failure.self) { try RPCTLS(files: files, trustDomain: trustDomain) }
            #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
        }
    }
}

/// Calls made and failed by the workers of the rotation test.
final class Tally: Sendable {
    let calls = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let running = Atomic<Bool>(true)
}

/// Health over mutual TLS, as `healthcheck` asks it.
enum HealthCheckProbe {
    static func check(port: Int, tls: RPCTLS, server: String) async -> String {
        do {
            return try await withRPCClient(port: port, credential: nil, configure: { $0.tls = tls; $0.serverIdentity = server }) { client in
                "\(try await Rekey_Health_V1_Health.Client(wrapping: client).check(.init()).status)".uppercased()
            }
        } catch {
            return "\(error)"
        }
    }
}
