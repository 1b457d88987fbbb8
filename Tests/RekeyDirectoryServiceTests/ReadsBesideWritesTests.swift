import Foundation
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyDirectoryService
import RekeyRPC
import RekeyTesting
import Testing

@Suite("Reads beside a long write")
struct ReadsBesideWritesTests {
    @Test("on SQLite, while a long write holds the writer (a large import), the forgot flow's and the console's reads answer: find-by-email, get, search, a session, an API key")
    func readsAnswerDuringAWrite() async throws {
        let directory = try await DirectoryFixture(.sqlite)
        let jane = try await directory.create("Jane Doe", "jane@example.com")
        let admin = try await directory.create("Ada Admin", "ada@example.com", role: "admin")
        let session = try await directory.run { store, c in try store.createSession(admin.id, in: c) }
        let (key, _) = try await directory.run { store, c in try store.createAPIKey(admin.id, name: "laptop", lifetime: nil, actor: .system, in: c) }
        // The key's first use is noted; later ones within the minute only read.
        _ = try await directory.run { store, c in try store.authenticateAPIKey(key, in: c) }

        let service = DirectoryService(
            database: directory.database, store: directory.store,
            hashing: HashingPool(hasher: PasswordHasher(parameters: .init(logN: 10, r: 8, p: 1)), threads: 1)
        )
        let writing = Latch()
        let readsDone = Latch()
        // Holds the writer until the reads are done, or a minute has passed: reads queued behind
        // it would fail the test rather than hang it.
        let writer = Task {
            try await directory.database.withConnection { connection -> Bool in
                _ = try connection.run("UPDATE users SET name = 'Jane Changing' WHERE id = ?", .text(jane.id))
                writing.open()
                return readsDone.waitBlocking()
            }
        }
        try await writing.wait()

        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                let directoryClient = Rekey_Directory_V1_Directory.Client(wrapping: client)
                var find = Rekey_Directory_V1_FindUserByEmailRequest()
                find.email = "JANE@example.com"
                let found = try await directoryClient.findUserByEmail(find)
                #expect(found.user?.id == jane.id)
                #expect(found.user?.name == "Jane Doe", "the write is not committed yet")

                var get = Rekey_Directory_V1_GetUserRequest()
                get.userID = jane.id
                #expect(try await directoryClient.getUser(get).user?.id == jane.id)

                var search = Rekey_Directory_V1_SearchUsersRequest()
                search.query = "ja"
                search.scope = .all
                #expect(try await directoryClient.searchUsers(search).users.map(\.id) == [jane.id])

                var validate = Rekey_Directory_V1_ValidateSessionRequest()
                validate.token = session.token
                #expect(try await directoryClient.validateSession(validate).user?.id == admin.id)

                var authenticate = Rekey_Directory_V1_AuthenticateApiKeyRequest()
                authenticate.key = key
                #expect(try await directoryClient.authenticateApiKey(authenticate).user?.id == admin.id)
            }
        }
        readsDone.open()
        #expect(try await writer.value, "every read answered while the write held the writer")
        let after = try await directory.database.read { c in try c.queryFirst("SELECT name FROM users WHERE id = ?", .text(jane.id))?.string("name") }
        #expect(after == "Jane Changing")
    }

    @Test("a session's idle deadline and an API key's last use are still written, once a minute", arguments: Backend.allCases)
    func touchesStillWritten(backend: Backend) async throws {
        let directory = try await DirectoryFixture(backend)
        let admin = try await directory.create("Ada Admin", "ada@example.com", role: "admin")
        let session = try await directory.run { store, c in try store.createSession(admin.id, in: c) }
        let (key, record) = try await directory.run { store, c in try store.createAPIKey(admin.id, name: "laptop", lifetime: nil, actor: .system, in: c) }
        let service = DirectoryService(
            database: directory.database, store: directory.store,
            hashing: HashingPool(hasher: PasswordHasher(parameters: .init(logN: 10, r: 8, p: 1)), threads: 1)
        )
        let created = directory.clock.nowMilliseconds()
        try await withRPCServer(services: [service]) { _, port in
            try await withRPCClient(port: port) { client in
                let directoryClient = Rekey_Directory_V1_Directory.Client(wrapping: client)
                var validate = Rekey_Directory_V1_ValidateSessionRequest()
                validate.token = session.token
                var authenticate = Rekey_Directory_V1_AuthenticateApiKeyRequest()
                authenticate.key = key
                _ = try await directoryClient.authenticateApiKey(authenticate)
                directory.clock.advance(by: .seconds(61))
                _ = try await directoryClient.validateSession(validate)
                _ = try await directoryClient.authenticateApiKey(authenticate)
            }
        }
        let lastSeen = try await directory.run { _, c in try c.queryFirst("SELECT last_seen_at FROM sessions WHERE id = ?", .text(session.id))?.int("last_seen_at") }
        let lastUsed = try await directory.run { _, c in try c.queryFirst("SELECT last_used_at FROM api_keys WHERE id = ?", .text(record.id))?.int("last_used_at") }
        #expect(lastSeen == created + 61_000)
        #expect(lastUsed == created + 61_000)
    }
}
