import Foundation
import NIOCore
import PostgresNIO
import RekeyClock
import RekeyCrypto
import RekeyPostgres
import RekeyRPC
import RekeySQLite
import RekeyTesting
import RekeyTokenService
import Testing

/// The backends the store's rules run on; every rule is tested on each.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { self.rawValue }
}

/// A fresh store on `backend`: a new SQLite file, or a new database on the test cluster, with the
/// migrations applied and a clock that only moves when told to.
final class StoreFixture: Sendable {
    let clock = ManualClock()
    let store: TokenStore
    private let folder: TemporaryFolder?
    private let sqlite: SQLiteDatabase?
    private let postgres: PostgresServiceDatabase?

    init(_ backend: Backend, configuration: TokenServiceConfiguration = .defaults) async throws {
        switch backend {
        case .sqlite:
            let folder = try TemporaryFolder()
            let database = try SQLiteDatabase(path: folder.path + "/tokens.sqlite", migrations: SQLiteTokenRepository.migrations, durability: .normal)
            (self.folder, self.sqlite, self.postgres) = (folder, database, nil)
            self.store = TokenStore(configuration: configuration, clock: self.clock, repository: SQLiteTokenRepository(database: database))
        case .postgres:
            let url = try await PostgresCluster.shared().makeDatabase()
            let database = try PostgresServiceDatabase(url: try PostgresURL(url), schema: PostgresTokenRepository.schema, maximumConnections: 8, logger: .init(label: "rekey.test"))
            try await database.migrate(PostgresTokenRepository.migrations)
            (self.folder, self.sqlite, self.postgres) = (nil, nil, database)
            self.store = TokenStore(configuration: configuration, clock: self.clock, repository: PostgresTokenRepository(database: database))
        }
    }

    deinit {
        self.postgres?.close()
    }

    func issue(_ user: String = "user-1", purpose: TokenPurpose = .passwordReset, admin: String = "", address: String = "192.0.2.1", identity: String = "") async throws -> (token: SecretToken, record: TokenRecord) {
        var request = TokenStore.IssueRequest(purpose: purpose, userID: user)
        request.requestedByAdminID = admin
        request.clientAddress = address
        request.emailIdentityID = identity
        return try await self.store.issue(request)
    }

    /// Every row of both tables as text, read straight from the database.
    func everything() async throws -> (tokens: Int, events: Int, text: String, hashes: [[UInt8]], failures: [String]) {
        if let sqlite {
            return try await sqlite.withConnection { c in
                let tokens = try c.query("SELECT * FROM tokens")
                let events = try c.query("SELECT * FROM events")
                let text = (tokens + events).flatMap { $0.values }.map { "\($0)" }.joined()
                return (
                    tokens.count, events.count, text, tokens.compactMap { $0.blob("hash") },
                    events.filter { $0.string("kind") == "redeem_failed" }.compactMap { $0.string("detail") }
                )
            }
        }
        let postgres = self.postgres!
        return try await postgres.withConnection { c in
            var text = ""
            var hashes: [[UInt8]] = []
            var tokens = 0
            for try await (row, hash) in try await c.query("SELECT t::text, hash FROM tokens t", logger: .init(label: "rekey.test")).decode((String, ByteBuffer).self) {
                text += row
                hashes.append(Array(hash.readableBytesView))
                tokens += 1
            }
            var events = 0
            var failures: [String] = []
            for try await (row, kind, detail) in try await c.query("SELECT e::text, kind, detail FROM events e", logger: .init(label: "rekey.test")).decode((String, String, String).self) {
                text += row
                events += 1
                if kind == "redeem_failed" { failures.append(detail) }
            }
            return (tokens, events, text, hashes, failures)
        }
    }

    /// The SQLite database, for the tests of SQLite's query plans.
    var sqliteDatabase: SQLiteDatabase? { self.sqlite }
}

/// The store's rules, each test on a fresh database of each backend.
struct TokenStoreTests {
    @Test("a token can be peeked any number of times and redeemed once", arguments: Backend.allCases)
    func lifecycle(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (token, record) = try await f.issue()
        #expect(token.value.count == 43)
        #expect(record.expiresAt - record.issuedAt == 30 * 60 * 1000)
        let peeked = try await f.store.peek(token.value, purpose: .passwordReset)
        #expect(peeked?.id == record.id)
        #expect(try await f.store.peek(token.value, purpose: .passwordReset) != nil)
        let redeemed = try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "192.0.2.9")
        #expect(redeemed.usedAt == f.clock.nowMilliseconds())
        await #expect(throws: TokenError.notFound) {
            try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "")
        }
        #expect(try await f.store.peek(token.value, purpose: .passwordReset) == nil)
    }

    @Test("opening a link (a peek with the opener's address) is recorded in the user's history, at most 5 times per link; a plain peek is not", arguments: Backend.allCases)
    func openedEvents(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (token, record) = try await f.issue()
        _ = try await f.store.peek(token.value, purpose: .passwordReset)
        f.clock.advance(by: .seconds(5))
        _ = try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9")
        await #expect(throws: TokenError.self, "a client address is checked as everywhere else") {
            try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: String(repeating: "x", count: 200))
        }
        for _ in 0..<8 {
            f.clock.advance(by: .seconds(1))
            _ = try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: "198.51.100.7")
        }
        _ = try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "203.0.113.9")
        #expect(try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9") == nil)
        let events = try await f.store.events(userID: "user-1", since: 0, limit: 20)
        let opened = events.filter { $0.kind == .opened }
        #expect(opened.count == TokenStore.openingsRecorded, "reloading the page again and again does not grow the history")
        #expect(opened.last?.tokenID == record.id && opened.last?.clientAddress == "203.0.113.9", "the first opening")
        #expect(events.map(\.kind) == [.redeemed] + Array(repeating: .opened, count: TokenStore.openingsRecorded) + [.issued], "newest first")
    }
    @Test("an opening keeps how it came (method, cookies, User-Agent class) and the link's state, a dead link's too; bad values are refused", arguments: Backend.allCases)
    func openingDetails(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (token, record) = try await f.issue()
        let scanner = TokenEventRecord.Opening(method: "HEAD", hadCookies: false, agent: "scanner")
        #expect(try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: "192.0.2.50", opening: scanner) != nil)
        _ = try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "203.0.113.9")
        let browser = TokenEventRecord.Opening(method: "GET", hadCookies: true, agent: "browser")
        #expect(try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9", opening: browser) == nil)
        #expect(try await f.store.peek(token.value, purpose: .emailVerification, openedFrom: "203.0.113.9", opening: browser) == nil)
        let opened = try await f.store.events(userID: "user-1", since: 0, limit: 20).filter { $0.kind == .opened }
        #expect(opened.count == 2, "the other purpose's peek records nothing")
        #expect(opened.map(\.tokenID) == [record.id, record.id])
        #expect(opened[0].opening == TokenEventRecord.Opening(method: "GET", hadCookies: true, agent: "browser", tokenState: "used"))
        #expect(opened[1].opening == TokenEventRecord.Opening(method: "HEAD", hadCookies: false, agent: "scanner", tokenState: "live"))
        for bad in [TokenEventRecord.Opening(method: "POST", hadCookies: false, agent: "browser"), TokenEventRecord.Opening(method: "GET", hadCookies: false, agent: "robot; drop table")] {
            await #expect(throws: TokenError.self) {
                try await f.store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9", opening: bad)
            }
        }
    }


    @Test("redeeming one reset link spends every other live reset link of the user in the same step; verification links and other users' links live on", arguments: Backend.allCases)
    func redeemSpendsSiblings(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (first, _) = try await f.issue()
        let (second, _) = try await f.issue()
        let (verification, _) = try await f.issue(purpose: .emailVerification, identity: "e_1")
        let (otherUser, _) = try await f.issue("user-2")
        _ = try await f.store.redeem(second.value, purpose: .passwordReset, clientAddress: "192.0.2.9")
        await #expect(throws: TokenError.notFound) {
            try await f.store.redeem(first.value, purpose: .passwordReset, clientAddress: "192.0.2.9")
        }
        #expect(try await f.store.peek(verification.value, purpose: .emailVerification) != nil)
        #expect(try await f.store.peek(otherUser.value, purpose: .passwordReset) != nil)
    }

    @Test("two reset links of one user redeemed at once from many callers: exactly one succeeds", arguments: Backend.allCases)
    func concurrentSiblings(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (first, _) = try await f.issue()
        let (second, _) = try await f.issue()
        let successes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<100 {
                let token = index.isMultiple(of: 2) ? first.value : second.value
                group.addTask {
                    do {
                        _ = try await f.store.redeem(token, purpose: .passwordReset, clientAddress: "192.0.2.9")
                        return true
                    } catch TokenError.notFound {
                        return false
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(successes == 1)
    }

    @Test("a token is dead once its lifetime has passed", arguments: Backend.allCases)
    func expiry(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (token, _) = try await f.issue()
        f.clock.advance(by: .seconds(30 * 60 - 1))
        #expect(try await f.store.peek(token.value, purpose: .passwordReset) != nil)
        f.clock.advance(by: .seconds(1))
        #expect(try await f.store.peek(token.value, purpose: .passwordReset) == nil)
        await #expect(throws: TokenError.notFound) {
            try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "")
        }
    }

    @Test("verification tokens live 24 hours and confirm one identity", arguments: Backend.allCases)
    func verification(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (token, record) = try await f.issue(purpose: .emailVerification, identity: "identity-7")
        #expect(record.expiresAt - record.issuedAt == 24 * 3600 * 1000)
        #expect(record.emailIdentityID == "identity-7")
        // A token of one purpose is not accepted for the other.
        await #expect(throws: TokenError.notFound) {
            try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "")
        }
        let events = try await f.store.events(userID: "user-1", since: 0, limit: 10)
        #expect(events.first?.kind == .redeemFailed)
        #expect(events.first?.detail == "the token is for email verification, not password reset")
    }

    @Test("revoking kills every live token of the user, and only those", arguments: Backend.allCases)
    func revoke(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let first = try await f.issue()
        let second = try await f.issue()
        let other = try await f.issue("user-2")
        let revoked = try await f.store.revoke(userID: "user-1", purpose: nil, reason: "password changed")
        #expect(revoked == 2)
        for token in [first.token, second.token] {
            await #expect(throws: TokenError.notFound) {
                try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "")
            }
        }
        _ = try await f.store.redeem(other.token.value, purpose: .passwordReset, clientAddress: "")
        let events = try await f.store.events(userID: "user-1", since: 0, limit: 10)
        #expect(events.contains { $0.kind == .redeemFailed && $0.detail == "revoked (password changed)" })
    }

    @Test("the per-user limit refuses the sixth token in an hour, says when the next is allowed, and records the refusal", arguments: Backend.allCases)
    func perUserLimit(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        for index in 0..<5 {
            _ = try await f.issue(address: "192.0.2.\(index)")
            f.clock.advance(by: .seconds(60))
        }
        await #expect(throws: TokenError.self) { try await f.issue(address: "192.0.2.99") }
        do {
            _ = try await f.issue(address: "192.0.2.99")
        } catch let error as TokenError {
            let status = error.rpcError
            #expect(status.code == .resourceExhausted)
            // The first token was issued five minutes ago: the next is allowed in 55 minutes.
            #expect(status.trailers[MetadataKey.retryAfterSeconds] == "\(55 * 60)")
            #expect(status.message.contains("5 of 5"))
        }
        let events = try await f.store.events(userID: "user-1", since: 0, limit: 20)
        #expect(events.filter { $0.kind == .rateLimited }.count == 2)
        // Another purpose has its own budget.
        _ = try await f.issue(purpose: .emailVerification, identity: "identity-1")
        // Once the oldest leaves the window, one more is allowed.
        f.clock.advance(by: .seconds(55 * 60))
        _ = try await f.issue(address: "192.0.2.99")
    }

    @Test("the per-address limit applies to users' own requests, the per-admin budget to admin sends", arguments: Backend.allCases)
    func addressAndAdminLimits(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        for index in 0..<20 {
            _ = try await f.issue("user-\(index)", address: "198.51.100.7")
        }
        await #expect(throws: TokenError.self) { try await f.issue("user-99", address: "198.51.100.7") }
        // Admins sending from that address are counted against their own budget instead.
        for index in 0..<30 {
            _ = try await f.issue("user-a\(index)", admin: "admin-1", address: "198.51.100.7")
        }
        await #expect(throws: TokenError.self) { try await f.issue("user-b", admin: "admin-1", address: "198.51.100.7") }
        let states = try await f.store.rateLimitStatus(userID: "", purpose: nil, clientAddress: "198.51.100.7", adminID: "admin-1")
        #expect(states.map(\.scope) == [.clientAddress, .admin])
        #expect(states.map(\.used) == [20, 30])
        #expect(states.allSatisfy { $0.nextAllowedAt != nil })
    }

    @Test("each limit check reads one index, never the whole table (SQLite's plans)", arguments: [RateLimitState.Scope.user, .clientAddress, .admin])
    func limitChecksUseAnIndex(scope: RateLimitState.Scope) async throws {
        let f = try await StoreFixture(.sqlite)
        let bindings: [SQLiteValue] = scope == .user ? [.text("subject"), .integer(1), .integer(0), .integer(5)] : [.text("subject"), .integer(0), .integer(5)]
        let plan = try await f.sqliteDatabase!.withConnection { c in
            try c.query("EXPLAIN QUERY PLAN " + SQLiteTokenRepository.limitQuery(scope), bindings).compactMap { $0.string("detail") }
        }
        #expect(plan.count == 1, "\(plan)")
        #expect(plan.allSatisfy { $0.hasPrefix("SEARCH tokens USING") && $0.contains("INDEX tokens_by_") }, "\(plan)")
    }

    @Test("lists are newest first, paginated with a cursor, and a tampered cursor is refused", arguments: Backend.allCases)
    func listing(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        var ids: [String] = []
        for _ in 0..<5 {
            ids.append(try await f.issue(address: "").record.id)
            f.clock.advance(by: .seconds(1))
        }
        let first = try await f.store.listTokens(userID: "user-1", pageSize: 2, cursor: "")
        #expect(first.tokens.map(\.id) == [ids[4], ids[3]])
        let second = try await f.store.listTokens(userID: "user-1", pageSize: 2, cursor: first.next)
        #expect(second.tokens.map(\.id) == [ids[2], ids[1]])
        let third = try await f.store.listTokens(userID: "user-1", pageSize: 2, cursor: second.next)
        #expect(third.tokens.map(\.id) == [ids[0]])
        #expect(third.next.isEmpty)
        for cursor in ["garbage!", Base64URL.encode(Array("t1|x|y".utf8)), String(first.next.dropLast(2))] {
            await #expect(throws: TokenError.self) {
                try await f.store.listTokens(userID: "user-1", pageSize: 2, cursor: cursor)
            }
        }
    }

    @Test("bad input is refused with a clear message and writes nothing", arguments: Backend.allCases, [
        ("", TokenPurpose.passwordReset, "", "", "192.0.2.1", nil as Duration?, "user_id is required"),
        ("has space", .passwordReset, "", "", "", nil, "printable ASCII"),
        ("user-1", .emailVerification, "", "", "", nil, "email_identity_id is required"),
        ("user-1", .passwordReset, "identity-1", "", "", nil, "only for email verification"),
        ("user-1", .passwordReset, "", "", "not an address", nil, "client_address"),
        ("user-1", .passwordReset, "", "", "", .seconds(73 * 3600), "lifetime_seconds"),
    ])
    func badIssue(backend: Backend, input: (String, TokenPurpose, String, String, String, Duration?, String)) async throws {
        let (user, purpose, identity, admin, address, lifetime, message) = input
        let f = try await StoreFixture(backend)
        var request = TokenStore.IssueRequest(purpose: purpose, userID: user)
        request.emailIdentityID = identity
        request.requestedByAdminID = admin
        request.clientAddress = address
        request.lifetime = lifetime
        await #expect {
            try await f.store.issue(request)
        } throws: { error in
            guard case .invalidArgument(let text) = error as? TokenError else { return false }
            return text.contains(message)
        }
        let stored = try await f.everything()
        #expect(stored.tokens + stored.events == 0)
    }

    @Test("malformed tokens are refused as malformed", arguments: ["", "short", String(repeating: "A", count: 42) + "=", String(repeating: "A", count: 44), String(repeating: "A", count: 42) + "B"])
    func malformedTokens(token: String) async throws {
        let f = try await StoreFixture(.sqlite)
        await #expect {
            try await f.store.peek(token, purpose: .passwordReset)
        } throws: { error in
            if case .invalidArgument = error as? TokenError { return true }
            return false
        }
    }

    @Test("an unknown well-formed token is NOT_FOUND, and the failed attempt is recorded", arguments: Backend.allCases)
    func unknownToken(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let token = try SecretToken.generate()
        await #expect(throws: TokenError.notFound) {
            try await f.store.redeem(token.value, purpose: .passwordReset, clientAddress: "192.0.2.5")
        }
        #expect(try await f.everything().failures == ["unknown token"])
    }

    @Test("the purge forgets what is older than the retention, and nothing newer", arguments: Backend.allCases)
    func purge(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        _ = try await f.issue()
        f.clock.advance(by: .seconds(29 * 86400))
        let recent = try await f.issue("user-2")
        f.clock.advance(by: .seconds(2 * 86400))
        let purged = try await f.store.purge()
        #expect(purged.tokens == 1)
        #expect(purged.events == 1)
        let left = try await f.store.listTokens(userID: "user-2", pageSize: 10, cursor: "")
        #expect(left.tokens.map(\.id) == [recent.record.id])
    }

    @Test("the database holds the token's hash, never the token", arguments: Backend.allCases)
    func onlyHashesAreStored(backend: Backend) async throws {
        let f = try await StoreFixture(backend)
        let (token, _) = try await f.issue()
        let stored = try await f.everything()
        #expect(stored.hashes == [OpenSSL.sha256(Array(token.value.utf8))])
        #expect(!stored.text.isEmpty)
        let text = stored.text
        #expect(!text.contains(token.value))
    }
}
