import Foundation
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What ops see of a running system: Prometheus metrics from each process, and logs that carry
/// the request id everywhere and never a secret.
@Suite("Metrics and logs of the four processes", .serialized, .processSlots)
struct ObservabilityTests {
    /// A forgot-password (known and unknown address), a second one refused by the per-user limit,
    /// the reset with its link, a wrong and a right sign-in; each request with its own request id.
    struct Traffic {
        var token = ""
        var wrongPassword = "a wrong guess at the passphrase"
        var newPassword = "a long and new passphrase 42"
        var mails: [String] = []
    }

    func run(_ system: RekeySystem) async throws -> Traffic {
        var traffic = Traffic()
        let admin = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let created = try await admin.send(
            "POST", "/api/admin/v1/users", headers: auth,
            body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8)
        )
        #expect(created.status == 200, "\(created.body)")
        let browser = Browser(base: system.base)
        let csrf = Browser.csrf(in: try await browser.send("GET", "/password/forgot"))
        _ = try await browser.send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf], headers: ["X-Request-Id": "req-forgot-known-1"])
        _ = try await browser.send("POST", "/password/forgot", form: ["email": "nobody@example.com", "csrf": csrf], headers: ["X-Request-Id": "req-forgot-unknown"])
        _ = try await browser.send("POST", "/password/forgot", form: ["email": "jane@example.com", "csrf": csrf], headers: ["X-Request-Id": "req-forgot-known-2"])
        let mails = try await system.waitForMail(count: 1)
        let link = try #require(mails.first?.link("/password/reset"))
        traffic.token = String(link.split(separator: "=").last!)
        let path = String(link.dropFirst("https://sso.example.test".count))
        #expect(try await browser.send("GET", path).status == 200)
        let changed = try await browser.send(
            "POST", "/password/reset", form: ["token": traffic.token, "password": traffic.newPassword, "confirm": traffic.newPassword, "csrf": csrf],
            headers: ["X-Request-Id": "req-reset"]
        )
        #expect(changed.status == 303)
        #expect(try await browser.send("POST", "/signin", form: ["email": "jane@example.com", "password": traffic.wrongPassword, "csrf": csrf]).status == 401)
        #expect(try await browser.send("POST", "/signin", form: ["email": "jane@example.com", "password": traffic.newPassword, "csrf": csrf]).status == 303)
        traffic.mails = try await system.waitForMail(count: 2)
        #expect(traffic.mails.count == 2)
        return traffic
    }

    /// A line of a PEM private key's base64 body.
    static func keyLine(_ path: String) throws -> String {
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("-----") }
        return String(try #require(lines.first))
    }

    func scrape(_ port: Int) async throws -> String {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        #expect((response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        return String(decoding: data, as: UTF8.self)
    }

    @Test("each process serves Prometheus metrics on its own port: RPC calls, latency, connections and its domain figures")
    func metrics() async throws {
        let system = try await RekeySystem.start(tokens: ["--limit-per-user", "1"])
        defer { system.stopInBackground() }
        _ = try await self.run(system)

        let directory = try await self.scrape(try system.directory.metricsPort())
        #expect(directory.contains(#"rekey_rpc_server_requests_total{method="/rekey.directory.v1.Directory/FindUserByEmail",code="OK"} 2"#), "\(directory)")
        #expect(directory.contains(#"rekey_rpc_server_request_duration_seconds_bucket{method="/rekey.directory.v1.Directory/VerifyPassword",le="#))
        #expect(directory.contains("rekey_rpc_server_requests_in_flight 0"))
        #expect(directory.contains("rekey_rpc_server_connections 1"), "the gateway keeps one connection")
        #expect(directory.contains(#"rekey_directory_sign_ins_total{result="refused"} 1"#))
        #expect(directory.contains(#"rekey_directory_sign_ins_total{result="ok"} 1"#))
        #expect(directory.contains("process_resident_memory_bytes "))
        #expect(directory.contains("process_cpu_seconds_total "))

        let tokens = try await self.scrape(try system.tokens.metricsPort())
        #expect(tokens.contains(#"rekey_tokens_issued_total{purpose="password_reset"} 1"#), "\(tokens)")
        #expect(tokens.contains(#"rekey_tokens_rate_limited_total{scope="user"} 1"#))
        #expect(tokens.contains(#"rekey_tokens_redeemed_total{purpose="password_reset"} 1"#))
        #expect(tokens.contains(#"rekey_rpc_server_requests_total{method="/rekey.tokens.v1.Tokens/IssueToken",code="RESOURCE_EXHAUSTED"} 1"#))

        let notifier = try await self.scrape(try system.notifier.metricsPort())
        #expect(notifier.contains(#"rekey_notifier_enqueued_total{status="queued"} 2"#), "\(notifier)")
        #expect(notifier.contains(#"rekey_notifier_delivery_attempts_total{outcome="accepted"} 2"#))
        #expect(notifier.contains(#"rekey_notifier_messages_finished_total{state="accepted"} 2"#))
        #expect(notifier.contains("rekey_notifier_queue_depth 0"))
        #expect(notifier.contains("rekey_notifier_oldest_queued_age_seconds 0"))
        #expect(notifier.contains("rekey_notifier_delivery_duration_seconds_count 2"))

        let gateway = try await self.scrape(try system.gateway.metricsPort())
        #expect(gateway.contains(#"rekey_gateway_forgot_password_total{outcome="sent"} 1"#), "\(gateway)")
        #expect(gateway.contains(#"rekey_gateway_forgot_password_total{outcome="no_account"} 1"#))
        #expect(gateway.contains(#"rekey_gateway_forgot_password_total{outcome="rate_limited"} 1"#))
        #expect(gateway.contains(#"hb_requests{http_route="/password/forgot",http_request_method="POST",http_response_status_code="200"} 3"#))

        // Anything but /metrics is not found; the metrics port serves nothing else.
        let (_, other) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(try system.notifier.metricsPort())/")!)
        #expect((other as? HTTPURLResponse)?.statusCode == 404)
    }

    @Test("with every process at trace level in JSON: the request id is in each service's lines for that request, and no line carries a secret")
    func logs() async throws {
        let verbose = ["--log-level", "trace", "--log-format", "json"]
        let system = try await RekeySystem.start(directory: verbose, notifier: verbose, tokens: verbose + ["--limit-per-user", "1"], gateway: verbose)
        let traffic = try await self.run(system)
        let processes = ["rekey-directory": system.directory, "rekey-reset-token": system.tokens, "rekey-notifier": system.notifier, "rekey-gateway": system.gateway]
        try await system.stopAndWait()

        for (name, process) in processes {
            let lines = process.log.split(separator: "\n")
            #expect(lines.count > 3, "\(name) logged")
            for line in lines {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["message"] is String, "\(name) writes one JSON object per line: \(line)")
            }
            let forgot = lines.filter { $0.contains("req-forgot-known-1") }
            #expect(!forgot.isEmpty, "\(name) logs the request id of the forgot-password request")
            // Every call's line says which request it served.
            for line in lines where line.contains("\"rpc finished\"") {
                #expect(line.contains("\"request.id\""), "\(name): \(line)")
            }

            let secrets = [
                ("the reset token", traffic.token), ("a wrong password", traffic.wrongPassword), ("the new password", traffic.newPassword),
                ("the API key", system.apiKey), ("the form secret", RekeySystem.credential),
                ("the gateway's private key", try Self.keyLine(system.certificates + "/gateway-key.pem")),
            ]
            for (what, secret) in secrets {
                #expect(!process.log.contains(secret), "\(name) logged \(what)")
            }
            for body in ["Someone asked to reset", "If it was not you"] {
                #expect(!process.log.contains(body), "\(name) logged a mail body")
            }
        }
        // The bodies checked above are really in the mail, so the check is not vacuous.
        #expect(traffic.mails.joined().contains("Someone asked to reset"))
        #expect(traffic.mails.joined().contains("If it was not you"))
    }
}
