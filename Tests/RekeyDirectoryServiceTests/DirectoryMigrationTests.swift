import Foundation
import Logging
import RekeyClock
import RekeyDirectoryService
import RekeyPostgres
import RekeySQLite
import RekeyTesting
import Testing

@Suite("rekey-directory on PostgreSQL, the executable")
struct DirectoryMigrationTests {
    static let credential = "directory-postgres-test-credential-0123456789"

    @Test("a database URL that cannot be used, a wrong password or nobody listening stops serve and the offline commands at once, never showing the password")
    func unusableDatabase() async throws {
        let cluster = try await PostgresCluster.shared()
        let folder = try TemporaryFolder()
        let cases: [(String, String)] = [
            ("mysql://rekey:s3cret-pw@db/rekey", "must start with postgres://"),
            ("postgres://rekey:s3cret-pw@db:99999/rekey", "port that is not a number from 1 to 65535"),
            ("postgres://rekey:s3cret-pw@db", "names no database"),
            ("postgres://\(cluster.user):s3cret-pw@127.0.0.1:\(cluster.port)/postgres?sslmode=disable", "password authentication failed for user \"rekey\" (SQLSTATE 28P01)"),
            ("postgres://\(cluster.user):s3cret-pw@127.0.0.1:1/postgres?sslmode=disable", "Connection refused"),
        ]
        for (url, expected) in cases {
            for arguments in [["serve", "--listen", "127.0.0.1:0"], ["bootstrap-admin", "--email", "o@example.com", "--name", "O"]] {
                let (status, output) = try await offPool {
                    try ServiceProcess.run(
                        "rekey-directory", arguments + ["--data-dir", folder.path, "--scrypt-log-n", "10"],
                        environment: ["REKEY_DIRECTORY_CREDENTIALS": Self.credential, "REKEY_DIRECTORY_DATABASE": url]
                    )
                }
                #expect(status != 0)
                #expect(output.contains(expected), "\(arguments[0]) with \(url): \(output)")
                #expect(!output.contains("s3cret-pw"), "\(arguments[0]) with \(url): \(output)")
            }
        }
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/directory.sqlite"), "no SQLite file was made instead")
    }

    @Test("migrate-to copies a SQLite directory into PostgreSQL: users, keys, sessions, roles and the audit trail alike, search gives the same pages, new users continue after the copied ones, and a second copy is refused")
    func migrateTo() async throws {
        let folder = try TemporaryFolder()
        let clock = ManualClock()
        let store = DirectoryStore(clock: clock)
        let sqlite = DirectoryDatabase.sqlite(try SQLiteDatabase(path: folder.path + "/directory.sqlite", migrations: DirectoryStore.migrations))
        // A directory with a bit of everything, written by the store on SQLite.
        let (owner, key, session) = try await sqlite.withConnection { c in
            var new = DirectoryStore.NewUser(name: "Olive Owner", role: "owner", email: "olive@example.com")
            new.emailVerified = true
            let owner = try store.createUser(new, actor: .system, in: c)
            let (key, _) = try store.createAPIKey(owner.id, name: "laptop", lifetime: nil, actor: .system, in: c)
            let acme = try store.createOrganization(name: "Acme", domains: ["acme.example"], actor: ActorInfo(userID: owner.id), in: c)
            _ = try store.createRole(name: "helpdesk", permissions: ["users.manage"], staff: true, actor: .system, in: c)
            for (index, name) in ["Jane Doe", "Janet Smith", "John Jansen", "Ada Lovelace", "Zoë Janvier"].enumerated() {
                var user = DirectoryStore.NewUser(name: name, role: index == 1 ? "helpdesk" : "customer", email: "user\(index)@example.com")
                user.organizationID = index == 0 ? acme.id : ""
                let created = try store.createUser(user, actor: ActorInfo(userID: owner.id, clientAddress: "192.0.2.9"), in: c)
                if index == 0 {
                    _ = try store.addEmail(created.id, address: "jd@jane.example", verified: false, actor: .system, in: c)
                }
            }
            _ = try store.reserveSignIn(clientAddress: "198.51.100.1", email: "nobody@example.com", in: c)
            let session = try store.createSession(owner.id, in: c)
            return (owner, key, session.token)
        }
        func snapshot(_ database: DirectoryDatabase) async throws -> [String] {
            try await database.withConnection { c in
                let users = try store.listUsers(filter: .init(), pageSize: 500, pageToken: "", in: c).users.map { "\($0)" }
                let searches = try ["ja", "jan", "zo", "jane doe", "example", "acme"].flatMap { query in
                    try [true, false].map { staff in
                        "\(query) \(staff): " + (try store.search(query, staffOnly: staff, pageSize: 3, pageToken: "", in: c).users.map(\.name).joined(separator: ", "))
                    }
                }
                let audit = try store.auditRecords(target: "", pageSize: 500, pageToken: "", in: c).records.map { "\($0)" }
                let rest = try [
                    "\(try store.organizations(in: c))", "\(try store.roles(in: c))",
                    "\(try store.authenticateAPIKey(key, in: c)?.user.id ?? "no key")", "\(try store.validateSession(session, in: c)?.user.id ?? "no session")",
                    "\(try store.findUser(byEmail: "JD@jane.example", in: c)?.user.name ?? "nobody")",
                ]
                return users + searches + audit + rest
            }
        }
        let before = try await snapshot(sqlite)

        let cluster = try await PostgresCluster.shared()
        let url = try await cluster.makeDatabase()
        let copy = try await offPool { try ServiceProcess.run("rekey-directory", ["migrate-to", url, "--data-dir", folder.path]) }
        #expect(copy.status == 0, "\(copy.output)")
        #expect(copy.output.contains("6 users, 7 email addresses, 1 API keys, 1 sessions, 10 audit lines"), "\(copy.output)")
        #expect(copy.output.contains("the counts match"), "\(copy.output)")
        #expect(!copy.output.contains(cluster.password))
        let again = try await offPool { try ServiceProcess.run("rekey-directory", ["migrate-to", url, "--data-dir", folder.path]) }
        #expect(again.status != 0 && again.output.contains("the target already holds a directory"), "\(again.output)")
        let nothing = try await offPool { try ServiceProcess.run("rekey-directory", ["migrate-to", url, "--data-dir", folder.path + "/nowhere"]) }
        #expect(nothing.status != 0 && nothing.output.contains("there is no \(folder.path)/nowhere/directory.sqlite to copy"), "\(nothing.output)")

        let logger = Logger(label: "rekey.test")
        let target = try PostgresServiceDatabase(url: try PostgresURL(url), schema: DirectoryStore.postgresSchema, maximumConnections: 2, logger: logger)
        defer { target.close() }
        try await target.migrate(DirectoryStore.postgresMigrations)
        let postgres = DirectoryDatabase.postgres(PostgresSQLDatabase(database: target, threads: 2, logger: logger))
        let after = try await snapshot(postgres)
        #expect(after.count == before.count)
        for (old, new) in zip(before, after) {
            #expect(old == new)
        }
        // New rows continue after the copied ones: the next user lists last.
        let next = try await postgres.withConnection { c in
            try store.createUser(.init(name: "Janice New", role: "customer", email: "new@example.com"), actor: ActorInfo(userID: owner.id), in: c)
        }
        let listed = try await postgres.withConnection { c in try store.listUsers(filter: .init(), pageSize: 500, pageToken: "", in: c).users }
        #expect(listed.last?.id == next.id)
        let found = try await postgres.withConnection { c in try store.search("jan", staffOnly: false, pageSize: 10, pageToken: "", in: c).users.map(\.name) }
        #expect(found == ["Jane Doe", "Janet Smith", "Janice New", "John Jansen", "Zoë Janvier"])
    }
}
