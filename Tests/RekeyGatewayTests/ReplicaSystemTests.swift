import Foundation
import RekeyGatewayTesting
import RekeyTesting
import Synchronization
import Testing

/// The real gateway over two real `rekey-reset-token` replicas sharing one PostgreSQL database.
@Suite("The gateway over service replicas")
struct ReplicaSystemTests {
    /// Statuses of the admin sends, and when to stop sending.
    final class Load: Sendable {
        let running = Atomic<Bool>(true)
        let statuses = Mutex<[Int]>([])

        var accepted: Int { self.statuses.withLock { $0.filter { $0 == 200 }.count } }

        func waitFor(accepted: Int) async throws {
            while self.accepted < accepted {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    @Test("admin sends through the gateway go to both replicas; with one stopped under traffic, none fails and the other takes all")
    func tokenReplicaStoppedUnderTraffic() async throws {
        let database = try await PostgresCluster.shared().makeDatabase()
        let system = try await RekeySystem.start(
            tokens: ["--limit-per-user", "100000", "--limit-per-admin", "1000000"],
            tokenReplicas: 2,
            extraEnvironment: ["REKEY_RESET_TOKEN_DATABASE": database]
        )
        defer { system.stop() }
        let api = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let created = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200, "\(created.body)")
        let userID = try #require((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String)

        let load = Load()
        let senders = (0..<4).map { _ in
            Task {
                let sender = Browser(base: system.base)
                while load.running.load(ordering: .relaxed) {
                    let status = (try? await sender.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth).status) ?? 0
                    load.statuses.withLock { $0.append(status) }
                }
            }
        }
        // Counted in answers, not in time: a busy machine only makes it take longer.
        try await load.waitFor(accepted: 40)
        let issuedBefore = try await Self.issued(by: system.tokenReplicas)
        #expect(issuedBefore.allSatisfy { $0 > 0 }, "both replicas took sends: \(issuedBefore)")

        // SIGTERM to one replica: it drains and exits while the senders keep going.
        let stopped = system.tokenReplicas[0]
        #expect(try await offPool { stopped.stop() } == 0)
        let acceptedAtStop = load.accepted
        try await load.waitFor(accepted: acceptedAtStop + 60)
        load.running.store(false, ordering: .relaxed)
        for sender in senders { await sender.value }

        let statuses = load.statuses.withLock { $0 }
        #expect(statuses.allSatisfy { $0 == 200 }, "every send answered 200: \(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
        let issuedAfter = try await Self.issued(by: [system.tokenReplicas[1]])
        #expect(issuedAfter[0] > issuedBefore[1], "the remaining replica took the sends after the stop")
        #expect(system.gateway.log.contains("a replica is unavailable; calls go to the others"), "the gateway said so")
    }

    /// `rekey_tokens_issued_total` of each replica, from its metrics endpoint.
    static func issued(by replicas: [ServiceProcess]) async throws -> [Int] {
        var counts: [Int] = []
        for replica in replicas {
            let port = try await offPool { try replica.metricsPort() }
            let page = try await Browser(base: "http://127.0.0.1:\(port)").send("GET", "/metrics")
            let total = page.body.split(separator: "\n")
                .filter { $0.hasPrefix("rekey_tokens_issued_total") }
                .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
                .reduce(0, +)
            counts.append(Int(total))
        }
        return counts
    }
}
