import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import PostgresNIO
import RekeyClock
import RekeyNotifierAPI
import RekeyNotifierService
import RekeyPostgres
import RekeyRPC
import RekeyRPCNIO
import RekeyTestTraits
import RekeyTesting
import Testing

/// Real `rekey-notifier` processes sharing one PostgreSQL outbox and one SMTP server (aiosmtpd),
/// which keeps every message it accepts: what arrives, and how often, is counted by Message-ID.
@Suite("rekey-notifier replicas on PostgreSQL", .serialized, .processSlots)
struct NotifierReplicaTests {
    static let credential = NotifierExecutableTests.credential

    static func start(_ name: String, database: String, smtp: Int, folder: TemporaryFolder) async throws -> ServiceProcess {
        try await offPool {
            try ServiceProcess(
                "rekey-notifier",
                arguments: [
                    "serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path + "/" + name, "--from-address", "no-reply@rekey.example",
                    "--poll-interval", "200ms", "--claim-lease", "3s", "--retry-schedule", "200ms",
                ] + NotifierExecutableTests.smtp(smtp),
                environment: ["REKEY_NOTIFIER_CREDENTIALS": Self.credential, "REKEY_NOTIFIER_DATABASE": database]
            )
        }
    }

    /// Enqueues `count` messages, spread over `replicas` round-robin, 16 at a time; returns their
    /// Message-ID headers.
    static func enqueue(_ count: Int, prefix: String, over replicas: [ServiceProcess]) async throws -> [String] {
        try await withThrowingTaskGroup(of: [String].self) { group in
            for lane in 0..<16 {
                group.addTask {
                    try await withRPCClient(port: replicas[lane % replicas.count].port, credential: Self.credential) { client in
                        let notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: client)
                        var headers: [String] = []
                        for index in stride(from: lane, to: count, by: 16) {
                            let response = try await notifier.enqueue(
                                NotifierExecutableTests.resetRequest(to: "\(prefix)-\(index)@example.com", key: "\(prefix)-\(index)")
                            )
                            #expect(response.status == .queued)
                            headers.append(response.messageIDHeader)
                        }
                        return headers
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }

    /// Waits until `done` says so; 120 s bound for a loaded machine, not a timing the test relies on.
    static func waitUntil(_ what: String, _ done: () throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while try !done() {
            guard ContinuousClock.now < deadline else {
                Issue.record("gave up waiting: \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    @Test("three replicas, one killed with kill -9 mid-run and one stopped and started: every accepted message is delivered, duplicates only of messages in flight at the kill, and counted")
    func killed() async throws {
        let cluster = try await PostgresCluster.shared()
        let url = try await cluster.makeDatabase()
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp")
        let arrived = MailArrivals(server, header: "Message-ID")
        var replicas: [ServiceProcess] = []
        for index in 0..<3 {
            replicas.append(try await Self.start("replica-\(index)", database: url, smtp: server.port, folder: folder))
        }
        defer { for replica in replicas { replica.killInBackground() } }
        for replica in replicas {
            #expect(replica.log.contains("db.schema=rekey_notifier"), "\(replica.log)")
            #expect(!replica.log.contains(cluster.password), "the password is never logged")
        }

        let first = try await Self.enqueue(600, prefix: "first", over: replicas)
        #expect(Set(first).count == 600)
        // Mid-run: some delivered, most not.
        try await Self.waitUntil("the first 100 deliveries") { arrived.counts().count >= 100 }
        let (killed, stopped) = (replicas[0], replicas[1])
        try await offPool { killed.kill9() }
        #expect(try await offPool { stopped.stop() } == 0, "SIGTERM drains and exits 0")
        replicas[1] = try await Self.start("replica-1b", database: url, smtp: server.port, folder: folder)
        let second = try await Self.enqueue(150, prefix: "second", over: Array(replicas[1...]))

        let expected = Set(first + second)
        try await Self.waitUntil("every accepted message delivered") { expected.isSubset(of: arrived.counts().keys) }
        let arrivals = arrived.counts()
        #expect(Set(arrivals.keys) == expected, "nothing else arrived")
        let duplicates = arrivals.values.reduce(0) { $0 + $1 - 1 }
        let takeovers = ([stopped] + replicas[1...]).map { $0.log.components(separatedBy: "took over a message whose worker stopped renewing its claim").count - 1 }.reduce(0, +)
        #expect(duplicates <= takeovers, "a message goes out twice only when it was taken over (duplicates \(duplicates), takeovers \(takeovers))")
        #expect(takeovers <= 4, "only what the killed replica's four workers held is taken over")
        print("killed replica: \(takeovers) messages taken over, \(duplicates) delivered twice, of \(expected.count)")

        // The outbox agrees: every message accepted, none held, and the takeovers' attempts
        // recorded as interrupted by an expired lease.
        let database = try PostgresServiceDatabase(url: try PostgresURL(url), schema: PostgresOutboxRepository.schema, maximumConnections: 1, logger: .init(label: "rekey.test"))
        defer { database.close() }
        let (notAccepted, held, interrupted) = try await database.withConnection { connection in
            var figures: (Int64, Int64, Int64) = (0, 0, 0)
            for try await row in try await connection.query(
                """
                SELECT (SELECT count(*) FROM messages WHERE state <> 3), (SELECT count(*) FROM messages WHERE claimed_by IS NOT NULL),
                    (SELECT count(*) FROM attempts WHERE error = \(OutboxStore.leaseExpired))
                """,
                logger: .init(label: "rekey.test")
            ).decode((Int64, Int64, Int64).self) {
                figures = row
            }
            return figures
        }
        #expect(notAccepted == 0)
        #expect(held == 0)
        #expect(Int(interrupted) == takeovers)
    }

    @Test("a message queued at one replica wakes another's idle workers (LISTEN/NOTIFY) instead of waiting for their next poll")
    func notify() async throws {
        let cluster = try await PostgresCluster.shared()
        let url = try await cluster.makeDatabase()
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp")
        // A replica whose workers poll once a minute.
        let deliverer = try await offPool {
            try ServiceProcess(
                "rekey-notifier",
                arguments: [
                    "serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path + "/deliverer", "--from-address", "no-reply@rekey.example",
                    "--poll-interval", "60s",
                ] + NotifierExecutableTests.smtp(server.port),
                environment: ["REKEY_NOTIFIER_CREDENTIALS": Self.credential, "REKEY_NOTIFIER_DATABASE": url]
            )
        }
        defer { deliverer.killInBackground() }
        try await Self.waitUntil("the deliverer listening") { deliverer.log.contains("listening for new messages on the database") }

        // The other replica is this test: the same store code on the same database.
        let database = try PostgresServiceDatabase(url: try PostgresURL(url), schema: PostgresOutboxRepository.schema, maximumConnections: 2, logger: .init(label: "rekey.test"))
        defer { database.close() }
        let store = OutboxStore(
            configuration: .init(fromAddress: "no-reply@rekey.example", messageIDDomain: "rekey.example"), templates: try MailTemplates(),
            clock: SystemWallClock(), repository: PostgresOutboxRepository(database: database)
        )
        var new = OutboxStore.NewMessage(template: "password_changed", toAddress: "woken@example.com", idempotencyKey: "notify-1")
        new.toName = "Woken"
        guard case .queued(let message) = try await store.enqueue(new) else {
            Issue.record("not queued")
            return
        }
        try await Self.waitUntil("the delivery") { MailArrivals(server, header: "Message-ID").counts()[message.messageIDHeader] == 1 }
        let port = try await offPool { try deliverer.metricsPort() }
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        let received = String(decoding: data, as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("rekey_notifier_outbox_notifications_total ") }
            .flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0
        #expect(received >= 1, "the deliverer was woken by the database's notification")
    }

    @Test("migrate-to copies a SQLite outbox into PostgreSQL: history and suppressions whole, a waiting message goes out from PostgreSQL, a second copy is refused")
    func migrateTo() async throws {
        let folder = try TemporaryFolder()
        let server = try await SMTPTestServer.start(folder: folder.path + "/smtp", options: ["--reject", "gone@example.com", "--defer", "later@example.com:1"])
        // On SQLite: one message delivered, one refused (its address suppressed), one deferred
        // for an hour by a 451.
        let sqlite = try await NotifierExecutableTests.start(dataDir: folder.path + "/data", NotifierExecutableTests.smtp(server.port, retry: "1h"))
        let (delivered, refused, waiting) = try await withRPCClient(port: sqlite.port, credential: Self.credential) { client in
            let notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: client)
            var ids: [String] = []
            for address in ["jane@example.com", "gone@example.com", "later@example.com"] {
                ids.append(try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: address)).messageID)
            }
            var request = Rekey_Notifier_V1_GetMessageRequest()
            for id in ids {
                request.messageID = id
                let deadline = ContinuousClock.now + .seconds(60)
                while try await notifier.getMessage(request).message?.state == .queued, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            return (ids[0], ids[1], ids[2])
        }
        #expect(try await offPool { sqlite.stop() } == 0)

        let cluster = try await PostgresCluster.shared()
        let url = try await cluster.makeDatabase()
        let copy = try await offPool { try ServiceProcess.run("rekey-notifier", ["migrate-to", url, "--data-dir", folder.path + "/data"]) }
        #expect(copy.status == 0, "\(copy.output)")
        #expect(copy.output.contains("copied 3 messages") && copy.output.contains("and 1 suppressions"), "\(copy.output)")
        #expect(!copy.output.contains(cluster.password))
        let again = try await offPool { try ServiceProcess.run("rekey-notifier", ["migrate-to", url, "--data-dir", folder.path + "/data"]) }
        #expect(again.status != 0 && again.output.contains("the target already holds"), "\(again.output)")
        let nothing = try await offPool { try ServiceProcess.run("rekey-notifier", ["migrate-to", url, "--data-dir", folder.path + "/nowhere"]) }
        #expect(nothing.status != 0 && nothing.output.contains("there is no \(folder.path)/nowhere/notifier.sqlite to copy"), "\(nothing.output)")

        let replica = try await Self.start("postgres", database: url, smtp: server.port, folder: folder)
        defer { replica.killInBackground() }
        try await withRPCClient(port: replica.port, credential: Self.credential) { client in
            let notifier = Rekey_Notifier_V1_Notifier.Client(wrapping: client)
            var request = Rekey_Notifier_V1_GetMessageRequest()
            request.messageID = delivered
            #expect(try await notifier.getMessage(request).message?.state == .accepted)
            request.messageID = refused
            let failed = try #require(try await notifier.getMessage(request).message)
            #expect(failed.state == .failed && failed.attempts.count == 1 && failed.attempts[0].replyCode == 550)
            #expect(try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "gone@example.com")).status == .suppressed, "the suppression came along")
            request.messageID = waiting
            let deferred = try #require(try await notifier.getMessage(request).message)
            #expect(deferred.state == .deferred && deferred.attempts.map(\.replyCode) == [451], "the schedule came along")
            let fresh = try await notifier.enqueue(NotifierExecutableTests.resetRequest(to: "new@example.com"))
            #expect(fresh.status == .queued)
            try await Self.waitUntil("the new message delivered from PostgreSQL") { MailArrivals(server, header: "Message-ID").counts()[fresh.messageIDHeader] == 1 }
        }
    }

    @Test("a database URL that cannot be used, or a pool too small for the workers, stops the start-up with a message that never shows the password")
    func badDatabaseSettings() async throws {
        let folder = try TemporaryFolder()
        let cases: [([String], String, String)] = [
            ([], "mysql://rekey:s3cret-pw@db/rekey", "must start with postgres://"),
            ([], "postgres://rekey:s3cret-pw@db/rekey?sslmode=sometimes", "sslmode=sometimes"),
            (["--concurrency", "16", "--database-pool-size", "10"], "postgres://rekey:s3cret-pw@db/rekey", "database_pool_size (10) must be at least concurrency + 2 (18)"),
            (["--claim-lease", "1s"], "postgres://rekey:s3cret-pw@db/rekey", "claim_lease"),
        ]
        for (arguments, url, expected) in cases {
            let (status, output) = try await offPool {
                try ServiceProcess.run(
                    "rekey-notifier", ["serve", "--data-dir", folder.path] + arguments,
                    environment: ["REKEY_NOTIFIER_CREDENTIALS": Self.credential, "REKEY_NOTIFIER_DATABASE": url]
                )
            }
            #expect(status != 0)
            #expect(output.contains(expected), "for \(arguments) \(url): \(output)")
            #expect(!output.contains("s3cret-pw"), "for \(url): \(output)")
        }
    }
}
