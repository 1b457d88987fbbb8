import Foundation
import RekeyDirectoryAPI
import RekeyGatewayTesting
import RekeyRPC
import RekeyRPCNIO
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Mutual TLS between the real executables, as `RekeySystem` (and `make run`) starts them.
@Suite("Mutual TLS between the real services")
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
        defer { system.stop() }
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
}
