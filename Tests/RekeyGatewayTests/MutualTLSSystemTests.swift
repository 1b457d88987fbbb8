import Foundation
import RekeyDirectoryAPI
import RekeyGatewayTesting
import RekeyPKI
import RekeyRPC
import RekeyRPCNIO
import RekeyTestTraits
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Mutual TLS between the real executables, as `RekeySystem` (and `make run`) starts them.
@Suite("Mutual TLS between the real services", .processSlots)
struct MutualTLSSystemTests {
    static func tls(_ system: RekeySystem, _ workload: String) throws -> RPCTLS {
        try RPCTLS(
            files: .init(ca: system.certificates + "/ca.pem", certificate: system.certificates + "/\(workload).pem", key: system.certificates + "/\(workload)-key.pem"),
            trustDomain: "rekey"
        )
    }

    @Test("the notifier's valid certificate calling Directory/SetPassword gets PERMISSION_DENIED, counted; a plaintext client is refused, the directory saying why once")
    func realDirectory() async throws {
        let system = try await RekeySystem.start()
        defer { system.stopInBackground() }
        var request = Rekey_Directory_V1_SetPasswordRequest()
        request.userID = "u_00000000000000000000000000000000"
        request.password = "a long enough new password 1"
        let notifier = try Self.tls(system, "notifier")
        try await withRPCClient(port: system.directory.port, credential: nil, configure: { $0.tls = notifier; $0.serverIdentity = "directory" }) { client in
            let error = await #expect(throws: RPCError.self) {
                _ = try await Rekey_Directory_V1_Directory.Client(wrapping: client).setPassword(request)
            }
            #expect(error?.code == .permissionDenied, "\(String(describing: error))")
        }
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(try system.directory.metricsPort())/metrics")!)
        let metrics = String(decoding: data, as: UTF8.self)
        #expect(metrics.contains(#"rekey_rpc_server_calls_denied_total{method="/rekey.directory.v1.Directory/SetPassword"} 1"#), "\(metrics)")

        // The old way in, a plaintext client with a credential, no longer gets in at all.
        for _ in 0..<3 {
            await #expect(throws: RPCError.self) {
                try await withRPCClient(port: system.directory.port, credential: RekeySystem.credential) { client in
                    _ = try await Rekey_Directory_V1_Directory.Client(wrapping: client).setPassword(request)
                }
            }
        }
        func refusals() -> [Substring] {
            system.directory.log.split(separator: "\n").filter { $0.contains("refused a connection: the TLS handshake failed") }
        }
        await RekeySystem.eventually { !refusals().isEmpty }
        // One line per peer address and 10 s, whatever the number of attempts.
        #expect(refusals().count == 1 || refusals().count < 3, "\(system.directory.log)")
        #expect(refusals().first?.contains("does not speak TLS 1.3") == true, "\(refusals())")

        // And the gateway, whose certificate it is, goes on working.
        let browser = Browser(base: system.base)
        #expect(try await browser.send("GET", "/readyz").status == 200)
    }

    @Test("a certificate ending within 7 days is warned about at start and shows in the expiry gauge; SIGHUP reads the files again; an expired certificate fails the healthcheck")
    func certificateLifecycle() async throws {
        let certificates = try TemporaryFolder()
        let data = try TemporaryFolder()
        try await offPool { try RekeySystem.makeCertificates(in: certificates.path, days: 3) }
        @Sendable func environment(certificate: String = "directory") -> [String: String] {
            [
                "REKEY_DIRECTORY_TLS": "required", "REKEY_DIRECTORY_TLS_CA": certificates.path + "/ca.pem",
                "REKEY_DIRECTORY_TLS_CERT": certificates.path + "/\(certificate).pem", "REKEY_DIRECTORY_TLS_KEY": certificates.path + "/\(certificate)-key.pem",
            ]
        }
        let directory = try await offPool {
            try ServiceProcess("rekey-directory", arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", data.path, "--scrypt-log-n", "10"], environment: environment())
        }
        defer { directory.stopInBackground() }
        #expect(await RekeySystem.eventually { directory.log.contains("expires within 7 days: issue a new one") }, "\(directory.log)")
        let (data2, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(try directory.metricsPort())/metrics")!)
        let gauge = String(decoding: data2, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("rekey_tls_certificate_expiry_seconds ") }
        let seconds = gauge.flatMap { Double($0.split(separator: " ").last ?? "") }
        #expect(seconds.map { (2 * 86_400...3 * 86_400).contains($0) } == true, "\(String(describing: gauge))")

        // SIGHUP: read again at once (here the same files), logged with the reason.
        kill(directory.processIdentifier, SIGHUP)
        #expect(await RekeySystem.eventually { directory.log.contains("TLS files read again") && directory.log.contains("tls.reason=SIGHUP") }, "\(directory.log)")
        let healthy = try await offPool { try ServiceProcess.run("rekey-directory", ["healthcheck", "--address", "127.0.0.1:\(directory.port)"], environment: environment()) }
        #expect(healthy.status == 0, "\(healthy.output)")

        // An expired certificate: the health check says so instead of vouching for the service.
        let ca = try String(contentsOfFile: certificates.path + "/ca.pem", encoding: .utf8)
        let caKey = try String(contentsOfFile: certificates.path + "/ca-key.pem", encoding: .utf8)
        let expired = try DeploymentPKI.issue(workload: "directory", caCertificatePEM: ca, caKeyPEM: caKey, validity: 86_400, now: Date().addingTimeInterval(-3 * 86_400))
        try expired.certificatePEM.write(toFile: certificates.path + "/expired.pem", atomically: true, encoding: .utf8)
        try expired.keyPEM.write(toFile: certificates.path + "/expired-key.pem", atomically: true, encoding: .utf8)
        let stale = try await offPool {
            try ServiceProcess.run("rekey-directory", ["healthcheck", "--address", "127.0.0.1:\(directory.port)"], environment: environment(certificate: "expired"))
        }
        #expect(stale.status == 1)
        #expect(stale.output.contains("TLS certificate (\(certificates.path)/expired.pem) has expired"), "\(stale.output)")
    }
}
