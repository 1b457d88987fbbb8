import Foundation
import RekeyDirectoryAPI
import RekeyRPC
import RekeyRPCNIO
import RekeyTestTraits
import RekeyTesting
import Testing

/// Drives the real `rekey-directory` executable, as ops and the gateway will.
@Suite("rekey-directory, the executable", .processSlots)
struct DirectoryExecutableTests {
    static let credential = "directory-test-credential-012345"
    /// A small scrypt cost for tests; production uses 17.
    static let scrypt = ["--scrypt-log-n", "10"]

    /// Runs the executable to completion, off the concurrency pool (it waits for the process).
    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        try await offPool { try ServiceProcess.run("rekey-directory", arguments, environment: environment) }
    }

    static func start(dataDir: String) async throws -> ServiceProcess {
        try await ServiceProcess.start(
            "rekey-directory",
            arguments: ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir] + Self.scrypt,
            environment: ["REKEY_DIRECTORY_CREDENTIALS": Self.credential]
        )
    }

    func withDirectory<R>(_ process: ServiceProcess, _ body: (Rekey_Directory_V1_Directory.Client) async throws -> R) async throws -> R {
        try await withRPCClient(port: process.port, credential: Self.credential) { client in
            try await body(Rekey_Directory_V1_Directory.Client(wrapping: client))
        }
    }

    @Test("bootstrap-admin makes the first owner and an API key that the running service accepts")
    func bootstrapAndAuthenticate() async throws {
        let folder = try TemporaryFolder()
        let bootstrap = try await Self.run(["bootstrap-admin", "--data-dir", folder.path, "--email", "owner@example.com", "--name", "Olive Owner"])
        #expect(bootstrap.status == 0, "\(bootstrap.output)")
        let key = try #require(bootstrap.output.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        #expect(key.hasPrefix("rk_"))
        let again = try await Self.run(["bootstrap-admin", "--data-dir", folder.path, "--email", "x@example.com", "--name", "X"])
        #expect(again.status != 0)
        #expect(again.output.contains("an owner exists already"))

        let process = try await Self.start(dataDir: folder.path)
        try await self.withDirectory(process) { directory in
            var request = Rekey_Directory_V1_AuthenticateApiKeyRequest()
            request.key = key
            let authenticated = try await directory.authenticateApiKey(request)
            #expect(authenticated.user?.role == "owner")
            #expect(authenticated.permissions == ["users.manage"])
            request.key = "rk_" + String(repeating: "x", count: 43)
            let refused = await #expect(throws: RPCError.self) { try await directory.authenticateApiKey(request) }
            #expect(refused?.code == .unauthenticated)
        }
        #expect(await process.stop() == 0)
    }

    @Test("users are created, found by any address, and sign in with a password that follows the policy")
    func usersAndPasswords() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await self.withDirectory(process) { directory in
            var create = Rekey_Directory_V1_CreateUserRequest()
            create.name = "Jane Doe"
            create.role = "customer"
            create.email = "Jane@Example.com"
            let user = try #require(try await directory.createUser(create).user)
            var add = Rekey_Directory_V1_AddEmailRequest()
            add.userID = user.id
            add.address = "jd@other.example"
            _ = try await directory.addEmail(add)
            let duplicate = await #expect(throws: RPCError.self) { try await directory.createUser(create) }
            #expect(duplicate?.code == .alreadyExists)

            var find = Rekey_Directory_V1_FindUserByEmailRequest()
            find.email = "JD@other.example"
            let found = try await directory.findUserByEmail(find)
            #expect(found.user?.id == user.id)
            #expect(found.matched?.address == "jd@other.example")
            #expect(found.primary?.address == "Jane@Example.com")

            var set = Rekey_Directory_V1_SetPasswordRequest()
            set.userID = user.id
            for (password, problem) in [("short", "at least 12"), ("1QAZ2wsx3edc", "most common"), ("jane@example.com", "name or email")] {
                set.password = password
                let refused = await #expect(throws: RPCError.self) { try await directory.setPassword(set) }
                #expect(refused?.code == .invalidArgument)
                #expect(refused?.message.contains(problem) == true, "\(refused?.message ?? "")")
            }
            set.password = "correct horse battery staple"
            #expect(try await directory.setPassword(set).passwordChangedAtUnixMs > 0)

            var verify = Rekey_Directory_V1_VerifyPasswordRequest()
            verify.email = "jane@EXAMPLE.com"
            verify.password = "correct horse battery staple"
            #expect(try await directory.verifyPassword(verify).user?.id == user.id)
            for (email, password) in [("jane@example.com", "wrong password here"), ("nobody@example.com", "correct horse battery staple")] {
                verify.email = email
                verify.password = password
                let refused = await #expect(throws: RPCError.self) { try await directory.verifyPassword(verify) }
                #expect(refused == RPCError(.unauthenticated, "the email address or the password is not right"))
            }
        }
        await process.stop()
    }

    @Test("the staff directory and unified search answer over RPC")
    func searchOverRPC() async throws {
        let folder = try TemporaryFolder()
        let process = try await Self.start(dataDir: folder.path)
        try await self.withDirectory(process) { directory in
            for (name, role) in [("Jane Agent", "agent"), ("Janet Customer", "customer")] {
                var create = Rekey_Directory_V1_CreateUserRequest()
                create.name = name
                create.role = role
                create.email = name.replacingOccurrences(of: " ", with: ".") + "@example.com"
                _ = try await directory.createUser(create)
            }
            var search = Rekey_Directory_V1_SearchUsersRequest()
            search.query = "jan"
            search.scope = .staff
            let staff = try await directory.searchUsers(search)
            #expect(staff.users.map(\.name) == ["Jane Agent"])
            search.scope = .all
            let all = try await directory.searchUsers(search)
            #expect(all.users.map(\.name).sorted() == ["Jane Agent", "Janet Customer"])
            search.scope = .unspecified
            let refused = await #expect(throws: RPCError.self) { try await directory.searchUsers(search) }
            #expect(refused?.code == .invalidArgument)
        }
        await process.stop()
    }

    @Test("import works offline on the database, all-or-nothing, and over RPC with a per-row report")
    func importFile() async throws {
        let folder = try TemporaryFolder()
        let bad = folder.path + "/bad.csv"
        try "name,email,role,organization\nAnn,ann@example.com,customer,\nBob,bob@,customer,\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let refused = try await Self.run(["import", bad, "--data-dir", folder.path])
        #expect(refused.status == 1)
        #expect(refused.output.contains("line 3: email `bob@` is not an email address"), "\(refused.output)")
        #expect(refused.output.contains("Nothing was written: 1 of 2 rows refused"), "\(refused.output)")
        let partial = try await Self.run(["import", bad, "--partial", "--data-dir", folder.path])
        #expect(partial.status == 0, "\(partial.output)")
        #expect(partial.output.contains("Created 1 users; 1 rows refused"), "\(partial.output)")
        let missing = try await Self.run(["import", folder.path + "/missing.csv", "--data-dir", folder.path])
        #expect(missing.status != 0)
        #expect(missing.output.contains("cannot read"))

        let process = try await Self.start(dataDir: folder.path)
        try await self.withDirectory(process) { directory in
            var find = Rekey_Directory_V1_FindUserByEmailRequest()
            find.email = "ANN@example.com"
            #expect(try await directory.findUserByEmail(find).user?.name == "Ann")

            var createAdmin = Rekey_Directory_V1_CreateUserRequest()
            createAdmin.name = "Ada Admin"
            createAdmin.email = "ada@example.com"
            createAdmin.role = "admin"
            let admin = try #require(try await directory.createUser(createAdmin).user)
            var request = Rekey_Directory_V1_ImportUsersRequest()
            request.csv = Array("name,email,role\nCid,cid@example.com,agent\nAnn Again,ann@example.com,customer\n".utf8)
            request.actor = Rekey_Directory_V1_Actor()
            request.actor?.userID = admin.id
            let report = try await directory.importUsers(request)
            #expect(!report.committed)
            #expect(report.rows.map(\.line) == [2, 3])
            #expect(report.rows[1].error.contains("belongs to another user"))
            request.partial = true
            let second = try await directory.importUsers(request)
            #expect(second.committed)
            #expect(second.created == 1)
            #expect(second.rows[0].userID.hasPrefix("u_"))

            var audit = Rekey_Directory_V1_ListAuditRecordsRequest()
            audit.pageSize = 1
            let records = try await directory.listAuditRecords(audit)
            #expect(records.records.first?.action == "user.import")
            #expect(records.records.first?.actorUserID == admin.id)
            #expect(!records.nextPageToken.isEmpty)
        }
        #expect(await process.stop() == 0)
    }

    @Test("start-up refuses bad settings with a message naming the key")
    func badSettings() async throws {
        let folder = try TemporaryFolder()
        let cases: [([String], [String: String], String)] = [
            ([], [:], "missing setting `credentials`"),
            (["--scrypt-log-n", "40"], ["REKEY_DIRECTORY_CREDENTIALS": Self.credential], "`scrypt_log_n`"),
            ([], ["REKEY_DIRECTORY_CREDENTIALS": Self.credential, "REKEY_DIRECTORY_SESSION_LIFETIME": "soon"], "REKEY_DIRECTORY_SESSION_LIFETIME"),
        ]
        for (arguments, environment, expected) in cases {
            let result = try await Self.run(["serve", "--data-dir", folder.path] + arguments, environment: environment)
            #expect(result.status != 0)
            #expect(result.output.contains(expected), "\(result.output)")
        }
    }
}
