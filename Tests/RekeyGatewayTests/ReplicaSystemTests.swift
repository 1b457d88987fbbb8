import Foundation
import RekeyGatewayTesting
import RekeyTestTraits
import RekeyTesting
import Synchronization
import Testing

/// The real gateway over real service replicas sharing one PostgreSQL database.
@Suite("The gateway over service replicas", .serialized, .processSlots)
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
        defer { system.stopInBackground() }
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

    @Test("on PostgreSQL, two directory replicas: admin sends and searches spread over both; with one stopped under traffic, none fails and the other takes all")
    func directoryReplicaStoppedUnderTraffic() async throws {
        let database = try await PostgresCluster.shared().makeDatabase()
        let system = try await RekeySystem.start(
            tokens: ["--limit-per-user", "100000", "--limit-per-admin", "1000000"],
            directoryReplicas: 2,
            extraEnvironment: ["REKEY_DIRECTORY_DATABASE": database]
        )
        defer { system.stopInBackground() }
        let api = Browser(base: system.base)
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let created = try await api.send("POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8))
        #expect(created.status == 200, "\(created.body)")
        let userID = try #require((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String)

        // Each round: a send (the key checked, the user read) and a search, both on the directory.
        let load = Load()
        let senders = (0..<4).map { lane in
            Task {
                let sender = Browser(base: system.base)
                while load.running.load(ordering: .relaxed) {
                    let page = lane % 2 == 0
                        ? try? await sender.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth)
                        : try? await sender.send("GET", "/api/admin/v1/users/search?scope=all&q=ja", headers: auth)
                    if lane % 2 == 1, page?.status == 200, page?.body.contains(userID) != true {
                        load.statuses.withLock { $0.append(-1) }  // answered, but without Jane
                    }
                    load.statuses.withLock { $0.append(page?.status ?? 0) }
                }
            }
        }
        try await load.waitFor(accepted: 60)
        let servedBefore = try await Self.requests(servedBy: system.directoryReplicas)
        #expect(servedBefore.allSatisfy { $0 > 5 }, "both replicas took calls: \(servedBefore)")

        let stopped = system.directoryReplicas[0]
        #expect(try await offPool { stopped.stop() } == 0)
        let acceptedAtStop = load.accepted
        try await load.waitFor(accepted: acceptedAtStop + 80)
        load.running.store(false, ordering: .relaxed)
        for sender in senders { await sender.value }

        let statuses = load.statuses.withLock { $0 }
        #expect(statuses.allSatisfy { $0 == 200 }, "every call answered 200 with the right answer: \(Dictionary(grouping: statuses, by: { $0 }).mapValues(\.count))")
        let servedAfter = try await Self.requests(servedBy: [system.directoryReplicas[1]])
        #expect(servedAfter[0] > servedBefore[1] + 40, "the remaining replica took the calls after the stop: \(servedBefore) → \(servedAfter)")
    }

    /// `rekey_rpc_server_requests_total` of each replica (every method), from its metrics endpoint.
    static func requests(servedBy replicas: [ServiceProcess]) async throws -> [Int] {
        try await Self.metric("rekey_rpc_server_requests_total", of: replicas)
    }

    /// `rekey_tokens_issued_total` of each replica, from its metrics endpoint.
    static func issued(by replicas: [ServiceProcess]) async throws -> [Int] {
        try await Self.metric("rekey_tokens_issued_total", of: replicas)
    }

    /// A counter of each process, summed over its labels, from its metrics endpoint.
    static func metric(_ name: String, of replicas: [ServiceProcess]) async throws -> [Int] {
        var counts: [Int] = []
        for replica in replicas {
            let port = try await offPool { try replica.metricsPort() }
            let page = try await Browser(base: "http://127.0.0.1:\(port)").send("GET", "/metrics")
            let total = page.body.split(separator: "\n")
                .filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
                .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
                .reduce(0, +)
            counts.append(Int(total))
        }
        return counts
    }

    /// Admin sends shared by several senders: the next send's number, the answers, the ids of
    /// the messages queued.
    final class Sends: Sendable {
        let next = Atomic<Int>(0)
        let statuses = Mutex<[Int: Int]>([:])
        let accepted = Mutex<[String]>([])
    }

    @Test("on PostgreSQL, two gateways over two directory, two reset-token and three notifier replicas: 2,000 admin sends, one notifier killed with kill -9 and another stopped and started mid-run; every accepted send is delivered, twice only what was taken over")
    func wholeSystemOnPostgres() async throws {
        let database = try await PostgresCluster.shared().makeDatabase()
        let folder = try TemporaryFolder()
        let smtp = try await SMTPTestServer.start(folder: folder.path + "/smtp")
        let arrived = MailArrivals(smtp, header: "X-Rekey-Message")
        let system = try await RekeySystem.start(
            // Idle workers poll once a second (new mail wakes them through the database), so that
            // twelve of them leave the machine to the other tests.
            notifier: [
                "--transport", "smtp", "--smtp-server", "127.0.0.1:\(smtp.port)", "--smtp-timeout", "5s", "--retry-schedule", "200ms", "--claim-lease", "3s",
                "--poll-interval", "1s",
            ],
            // Limits that 2,000 sends by one admin to one user pass, counted over a short window
            // (each issue reads the issue times within the window).
            tokens: ["--limit-per-user", "100000", "--limit-per-admin", "1000000", "--limit-window", "1s"],
            directoryReplicas: 2, tokenReplicas: 2, notifierReplicas: 3, gateways: 2,
            // The three services' schemas in one database, as one PostgreSQL server would hold them.
            extraEnvironment: ["REKEY_DIRECTORY_DATABASE": database, "REKEY_RESET_TOKEN_DATABASE": database, "REKEY_NOTIFIER_DATABASE": database]
        )
        defer { system.stopInBackground() }
        let auth = ["Authorization": "Bearer \(system.apiKey)", "Content-Type": "application/json"]
        let created = try await Browser(base: system.base).send(
            "POST", "/api/admin/v1/users", headers: auth, body: Data(#"{"name": "Jane Doe", "email": "jane@example.com", "role": "customer"}"#.utf8)
        )
        #expect(created.status == 200, "\(created.body)")
        let userID = try #require((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String)

        // 2,000 sends from 8 senders over both gateways; the ids of the messages they queued.
        let sends = Sends()
        let gateways = system.gateways.map { "http://127.0.0.1:\($0.port)" }
        let senders = (0..<8).map { lane in
            Task {
                let sender = Browser(base: gateways[lane % gateways.count])
                while sends.next.add(1, ordering: .relaxed).oldValue < 2000 {
                    let page = try? await sender.send("POST", "/api/admin/v1/users/\(userID)/password-reset", headers: auth)
                    sends.statuses.withLock { $0[page?.status ?? 0, default: 0] += 1 }
                    if page?.status == 200, let id = (try? JSONSerialization.jsonObject(with: Data(page!.body.utf8)) as? [String: Any])?["message_id"] as? String {
                        sends.accepted.withLock { $0.append(id) }
                    }
                }
            }
        }
        // Mid-run, counted in deliveries: one notifier killed, another stopped and started again.
        try await Self.waitUntil("300 deliveries") { arrived.counts().count >= 300 }
        // (The killed one leaves the system's list: it ended badly on purpose.)
        let killed = system.notifierReplicas.removeFirst()
        try await offPool { killed.kill9() }
        let stopped = system.notifierReplicas[0]
        #expect(try await offPool { stopped.stop() } == 0)
        system.notifierReplicas[0] = try await offPool { try system.restart("rekey-notifier", port: stopped.port) }
        for sender in senders { await sender.value }

        let ids = Set(sends.accepted.withLock { $0 })
        let answers = sends.statuses.withLock { $0 }
        #expect(answers[200] == 2000, "every send answered 200: \(answers)")
        #expect(ids.count == answers[200] ?? 0)
        try await Self.waitUntil("every accepted send delivered") { ids.isSubset(of: arrived.counts().keys) }
        let arrivals = arrived.counts()
        #expect(Set(arrivals.keys) == ids, "nothing else arrived")
        let duplicates = arrivals.values.reduce(0) { $0 + $1 - 1 }
        let takeovers = ([stopped] + system.notifierReplicas).map { $0.log.components(separatedBy: "took over a message whose worker stopped renewing its claim").count - 1 }.reduce(0, +)
        #expect(duplicates <= takeovers && takeovers <= 4, "duplicates \(duplicates), takeovers \(takeovers)")
        print("whole system on PostgreSQL: \(ids.count) sends delivered, \(takeovers) taken over from the killed notifier, \(duplicates) delivered twice")
    }

    /// Waits until `done` says so; 180 s bound for a loaded machine, not a timing the test relies on.
    static func waitUntil(_ what: String, _ done: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(180)
        while try !done() {
            guard ContinuousClock.now < deadline else {
                Issue.record("gave up waiting: \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }
}
