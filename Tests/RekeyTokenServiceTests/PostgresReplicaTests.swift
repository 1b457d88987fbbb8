import Foundation
import Logging
import Synchronization
import RekeyRPC
import RekeyRPCNIO
import RekeyTestTraits
import RekeyTesting
import RekeyTokensAPI
import Testing

/// Two real `rekey-reset-token` processes sharing one PostgreSQL database, as replicas behind a
/// gateway run: what one spends or counts, the other sees.
@Suite("rekey-reset-token replicas on PostgreSQL", .processSlots)
struct PostgresReplicaTests {
    static let credential = ResetTokenExecutableTests.credential

    static func startReplicas(_ count: Int, database: String, folder: TemporaryFolder) async throws -> [ServiceProcess] {
        var replicas: [ServiceProcess] = []
        for index in 0..<count {
            replicas.append(try await offPool {
                try ServiceProcess(
                    "rekey-reset-token",
                    arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path + "/replica-\(index)"],
                    environment: ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential, "REKEY_RESET_TOKEN_DATABASE": database]
                )
            })
        }
        return replicas
    }

    @Test("of 200 redeems of one token spread over two replicas exactly one succeeds; the per-user limit and the history are shared")
    func sharedState() async throws {
        let cluster = try await PostgresCluster.shared()
        let database = try await cluster.makeDatabase()
        let folder = try TemporaryFolder()
        let replicas = try await Self.startReplicas(2, database: database, folder: folder)
        defer { for replica in replicas { replica.stopInBackground() } }
        for replica in replicas {
            #expect(replica.log.contains("db.schema=rekey_tokens"), "\(replica.log)")
            #expect(!replica.log.contains(cluster.password), "the password is never logged")
        }
        try await withRPCClient(port: replicas[0].port, credential: Self.credential) { first in
            try await withRPCClient(port: replicas[1].port, credential: Self.credential) { second in
                let clients = [Rekey_Tokens_V1_Tokens.Client(wrapping: first), Rekey_Tokens_V1_Tokens.Client(wrapping: second)]

                // One token, 200 redeems at once, alternating replicas.
                let issued = try await clients[0].issueToken(ResetTokenExecutableTests.issueRequest(user: "user-race"))
                var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
                redeem.token = issued.token
                redeem.purpose = .passwordReset
                redeem.clientAddress = "192.0.2.7"
                let outcomes = try await withThrowingTaskGroup(of: RPCError.Code.self) { group in
                    for index in 0..<200 {
                        group.addTask { [redeem] in
                            do {
                                _ = try await clients[index % 2].redeemToken(redeem)
                                return .ok
                            } catch let error as RPCError {
                                return error.code
                            }
                        }
                    }
                    return try await group.reduce(into: [RPCError.Code]()) { $0.append($1) }
                }
                #expect(outcomes.filter { $0 == .ok }.count == 1)
                #expect(outcomes.filter { $0 == .notFound }.count == 199, "\(Set(outcomes.map { "\($0)" }))")

                // Five reset tokens an hour per user: five issued at once over both replicas with
                // five more, and exactly five of the ten get through.
                let issues = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for index in 0..<10 {
                        group.addTask {
                            do {
                                _ = try await clients[index % 2].issueToken(ResetTokenExecutableTests.issueRequest(user: "user-limit", address: "198.51.100.\(index)"))
                                return true
                            } catch let error as RPCError where error.code == .resourceExhausted {
                                return false
                            }
                        }
                    }
                    return try await group.reduce(into: [Bool]()) { $0.append($1) }
                }
                #expect(issues.filter { $0 }.count == 5)

                // The history written by both replicas, read from either.
                var history = Rekey_Tokens_V1_ListUserEventsRequest()
                history.userID = "user-race"
                history.limit = 500
                let events = try await clients[1].listUserEvents(history).events
                #expect(events.filter { $0.kind == .redeemed }.count == 1)
                #expect(events.filter { $0.kind == .redeemFailed }.count == 199)
                #expect(events.filter { $0.kind == .issued }.count == 1)
            }
        }
    }

    @Test("a replica stopped under traffic: no read fails and no issue fails, the calls move to the other replica")
    func replicaStoppedUnderTraffic() async throws {
        let database = try await PostgresCluster.shared().makeDatabase()
        let folder = try TemporaryFolder()
        let replicas = try await Self.startReplicas(2, database: database, folder: folder)
        defer { for replica in replicas { replica.stopInBackground() } }
        let clients = replicas.map { replica in
            RPCClient(configuration: .init(host: "127.0.0.1", port: replica.port, credential: Self.credential, caller: "tests"), logger: Logger(label: "rekey.test.client"))
        }
        let set = ReplicaSet(
            zip(replicas, clients).map { ReplicaSet.Replica(name: "127.0.0.1:\($0.port)", transport: $1) },
            isSafeToRepeat: { ["PeekToken", "GetRateLimitStatus", "ListUserEvents"].contains($0.method) },
            logger: Logger(label: "rekey.test.replicas")
        )
        let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: set)
        let issued = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-traffic"))
        var peek = Rekey_Tokens_V1_PeekTokenRequest()
        peek.token = issued.token
        peek.purpose = .passwordReset
        var status = Rekey_Tokens_V1_GetRateLimitStatusRequest()
        status.userID = "user-traffic"

        let traffic = Traffic()
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            // Eight callers reading as fast as they can.
            for _ in 0..<8 {
                group.addTask { [peek, status] in
                    var calls = 0
                    while !traffic.stop.load(ordering: .relaxed) {
                        do {
                            _ = try await tokens.peekToken(peek)
                            _ = try await tokens.getRateLimitStatus(status)
                        } catch {
                            traffic.failures.withLock { $0.append("read: \(error)") }
                        }
                        calls += 2
                        traffic.calls.add(2, ordering: .relaxed)
                    }
                    return calls
                }
            }
            // One caller issuing tokens, one after the other.
            group.addTask {
                var calls = 0
                while !traffic.stop.load(ordering: .relaxed) {
                    do {
                        _ = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-\(calls)", address: ""))
                    } catch {
                        traffic.failures.withLock { $0.append("issue: \(error)") }
                    }
                    calls += 1
                    traffic.calls.add(1, ordering: .relaxed)
                }
                return calls
            }
            // Counted in calls, not in time, so that a busy machine changes only how long it takes.
            try await traffic.waitFor(calls: 200)
            // SIGTERM: the replica drains, refuses new calls (not started), closes, and exits.
            let status = try await offPool { replicas[0].stop() }
            #expect(status == 0)
            try await traffic.waitFor(calls: traffic.calls.load(ordering: .relaxed) + 400)
            traffic.stop.store(true, ordering: .relaxed)
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        for client in clients { await client.close() }
        #expect(traffic.failures.withLock { $0 }.isEmpty, "\(traffic.failures.withLock { $0.prefix(5) })")
        #expect(counts.allSatisfy { $0 > 0 }, "every caller made calls: \(counts)")
        #expect(replicas[1].log.contains("rpc server listening"))
    }

    @Test("PostgreSQL lost while the service runs: health turns NOT_SERVING and calls UNAVAILABLE at once; both recover by themselves")
    func databaseLostAndBack() async throws {
        let cluster = try await PostgresCluster.shared()
        let url = try await cluster.makeDatabase()
        let database = String(url.split(separator: "/").last!.split(separator: "?").first!)
        // A role of the service's own, which the test can lock out and let back in.
        let role = "r_" + database.dropFirst(2).prefix(20)
        try await cluster.execute("CREATE ROLE \(role) LOGIN PASSWORD 'role-password'")
        try await cluster.execute("GRANT CREATE, CONNECT ON DATABASE \(database) TO \(role)")
        let folder = try TemporaryFolder()
        let environment = [
            "REKEY_RESET_TOKEN_CREDENTIALS": Self.credential,
            "REKEY_RESET_TOKEN_DATABASE": "postgres://\(role):role-password@127.0.0.1:\(cluster.port)/\(database)?sslmode=disable",
        ]
        let replica = try await offPool {
            try ServiceProcess("rekey-reset-token", arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path], environment: environment)
        }
        defer { replica.stopInBackground() }
        func healthy() async throws -> Bool {
            try await offPool {
                try ServiceProcess.run("rekey-reset-token", ["healthcheck", "--address", "127.0.0.1:\(replica.port)", "--data-dir", folder.path], environment: environment).status == 0
            }
        }
        try await withRPCClient(port: replica.port, credential: Self.credential) { client in
            let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: client)
            _ = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-before"))
            #expect(try await healthy())

            // Locked out, every session ended: the pool cannot connect again.
            try await cluster.execute("ALTER ROLE \(role) NOLOGIN")
            try await cluster.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(role)'")
            #expect(await RekeyTestWait.until { try await !healthy() }, "health turned NOT_SERVING")
            let refused = await #expect(throws: RPCError.self) {
                try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-during"))
            }
            #expect(refused?.code == .unavailable && refused?.message == "the service's database is unavailable; try again")
            #expect(replica.log.contains("the database does not answer; answering NOT_SERVING until it does"))

            // Let back in: health and calls come back without a restart.
            try await cluster.execute("ALTER ROLE \(role) LOGIN")
            #expect(await RekeyTestWait.until { try await healthy() }, "health turned SERVING again")
            _ = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-after"))
            #expect(replica.log.contains("the database answers again; serving"))
            #expect(!replica.log.contains("role-password"))
        }
    }

    @Test("migrate-to copies a SQLite store into PostgreSQL: links keep working, the history is whole, and a second copy is refused")
    func migrateTo() async throws {
        let folder = try TemporaryFolder()
        let environment = ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential]
        // A store with a used link, a live link and their history, written by the SQLite service.
        let sqlite = try await offPool {
            try ServiceProcess("rekey-reset-token", arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path], environment: environment)
        }
        var redeem = Rekey_Tokens_V1_RedeemTokenRequest()
        redeem.purpose = .passwordReset
        let (used, live, history) = try await withRPCClient(port: sqlite.port, credential: Self.credential) { client in
            let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: client)
            let used = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-a")).token
            let live = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-b")).token
            redeem.token = used
            _ = try await tokens.redeemToken(redeem)
            var events = Rekey_Tokens_V1_ListUserEventsRequest()
            events.userID = "user-a"
            return (used, live, try await tokens.listUserEvents(events).events)
        }
        #expect(try await offPool { sqlite.stop() } == 0)

        let cluster = try await PostgresCluster.shared()
        let url = try await cluster.makeDatabase()
        let copy = try await offPool { try ServiceProcess.run("rekey-reset-token", ["migrate-to", url, "--data-dir", folder.path]) }
        #expect(copy.status == 0, "\(copy.output)")
        #expect(copy.output.contains("copied 2 tokens and 3 history lines"), "\(copy.output)")
        #expect(!copy.output.contains(cluster.password))
        let again = try await offPool { try ServiceProcess.run("rekey-reset-token", ["migrate-to", url, "--data-dir", folder.path]) }
        #expect(again.status != 0 && again.output.contains("the target already holds 5 tokens and events"), "\(again.output)")
        let nothing = try await offPool { try ServiceProcess.run("rekey-reset-token", ["migrate-to", url, "--data-dir", folder.path + "/nowhere"]) }
        #expect(nothing.status != 0 && nothing.output.contains("there is no \(folder.path)/nowhere/tokens.sqlite to copy"), "\(nothing.output)")

        let replicas = try await Self.startReplicas(1, database: url, folder: folder)
        defer { for replica in replicas { replica.stopInBackground() } }
        try await withRPCClient(port: replicas[0].port, credential: Self.credential) { client in
            let tokens = Rekey_Tokens_V1_Tokens.Client(wrapping: client)
            redeem.token = used
            let spent = await #expect(throws: RPCError.self) { try await tokens.redeemToken(redeem) }
            #expect(spent?.code == .notFound, "a used link stays used")
            redeem.token = live
            #expect(try await tokens.redeemToken(redeem).info?.state == .used, "a live link works on PostgreSQL")
            var events = Rekey_Tokens_V1_ListUserEventsRequest()
            events.userID = "user-a"
            let copied = try await tokens.listUserEvents(events).events
            // Newest first: the refused redeem just now, then what was copied, unchanged.
            #expect(copied.first?.kind == .redeemFailed)
            #expect(Array(copied.dropFirst()) == history, "the history came along: \(copied.map(\.kind))")
            _ = try await tokens.issueToken(ResetTokenExecutableTests.issueRequest(user: "user-c"))
        }
    }

    @Test("a database URL that cannot be used stops the start-up with a message that never shows the password")
    func badDatabaseURL() async throws {
        let folder = try TemporaryFolder()
        let cases: [(String, String)] = [
            ("mysql://rekey:s3cret-pw@db/rekey", "must start with postgres://"),
            ("postgres://rekey:s3cret-pw@db:99999/rekey", "port that is not a number from 1 to 65535"),
            ("postgres://rekey:s3cret-pw@db/rekey?sslmode=sometimes", "sslmode=sometimes"),
            ("postgres://rekey:s3cret-pw@db/rekey?ssl=true", "the parameter ssl"),
            ("postgres://rekey:s3cret-pw@db", "names no database"),
        ]
        for (url, expected) in cases {
            let (status, output) = try await offPool {
                try ServiceProcess.run(
                    "rekey-reset-token", ["serve", "--data-dir", folder.path],
                    environment: ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential, "REKEY_RESET_TOKEN_DATABASE": url]
                )
            }
            #expect(status != 0)
            #expect(output.contains(expected) && output.contains("REKEY_RESET_TOKEN_DATABASE"), "for \(url): \(output)")
            #expect(!output.contains("s3cret-pw"), "for \(url): \(output)")
        }
    }

    @Test("a wrong password, or a database nobody listens for, stops the start-up at once saying so")
    func unreachableDatabase() async throws {
        let cluster = try await PostgresCluster.shared()
        let folder = try TemporaryFolder()
        let cases = [
            ("postgres://\(cluster.user):not-the-password@127.0.0.1:\(cluster.port)/postgres?sslmode=disable", "password authentication failed for user \"rekey\" (SQLSTATE 28P01)"),
            ("postgres://\(cluster.user):not-the-password@127.0.0.1:1/postgres?sslmode=disable", "Connection refused"),
        ]
        for (url, expected) in cases {
            let (status, output) = try await offPool {
                try ServiceProcess.run(
                    "rekey-reset-token", ["serve", "--listen", "127.0.0.1:0", "--data-dir", folder.path],
                    environment: ["REKEY_RESET_TOKEN_CREDENTIALS": Self.credential, "REKEY_RESET_TOKEN_DATABASE": url]
                )
            }
            #expect(status != 0)
            #expect(!output.contains("not-the-password"), "\(output)")
            #expect(output.contains("cannot open the database at postgres://rekey:***@127.0.0.1:") && output.contains(expected), "\(output)")
        }
    }
}

/// What the traffic of a test shares: when to stop, and what failed.
final class Traffic: Sendable {
    let stop = Atomic<Bool>(false)
    let calls = Atomic<Int>(0)
    let failures = Mutex<[String]>([])

    func waitFor(calls: Int) async throws {
        while self.calls.load(ordering: .relaxed) < calls {
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Waiting on a condition instead of sleeping for a fixed time.
enum RekeyTestWait {
    /// Whether `condition` came true within `timeout`, looking every 100 ms.
    static func until(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}
