import Foundation
import RekeyClock
import RekeyCrypto
import RekeyRPC
import RekeySQLite
import RekeyTesting
import RekeyTokenService
import Testing

/// The store's rules, each test on a fresh database with the migrations applied and a clock that
/// only moves when told to.
struct TokenStoreTests {
    let folder: TemporaryFolder
    let database: SQLiteDatabase
    let clock = ManualClock()
    let store: TokenStore

    init() throws {
        self.folder = try TemporaryFolder()
        self.database = try SQLiteDatabase(path: self.folder.path + "/tokens.sqlite", migrations: TokenStore.migrations, durability: .normal)
        self.store = TokenStore(configuration: .defaults, clock: self.clock)
    }

    func run<R: Sendable>(_ body: @escaping @Sendable (TokenStore, SQLiteConnection) throws -> R) async throws -> R {
        let store = self.store
        return try await self.database.withConnection { try body(store, $0) }
    }

    func issue(_ user: String = "user-1", purpose: TokenPurpose = .passwordReset, admin: String = "", address: String = "192.0.2.1", identity: String = "") async throws -> (token: SecretToken, record: TokenRecord) {
        var request = TokenStore.IssueRequest(purpose: purpose, userID: user)
        request.requestedByAdminID = admin
        request.clientAddress = address
        request.emailIdentityID = identity
        return try await self.run { [request] store, connection in try store.issue(request, in: connection) }
    }

    @Test("a token can be peeked any number of times and redeemed once")
    func lifecycle() async throws {
        let (token, record) = try await self.issue()
        #expect(token.value.count == 43)
        #expect(record.expiresAt - record.issuedAt == 30 * 60 * 1000)
        let peeked = try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, in: c) }
        #expect(peeked?.id == record.id)
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, in: c) } != nil)
        let redeemed = try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "192.0.2.9", in: c) }
        #expect(redeemed.usedAt == self.clock.nowMilliseconds())
        await #expect(throws: TokenError.notFound) {
            try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "", in: c) }
        }
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, in: c) } == nil)
    }

    @Test("opening a link (a peek with the opener's address) is recorded in the user's history, at most 5 times per link; a plain peek is not")
    func openedEvents() async throws {
        let (token, record) = try await self.issue()
        _ = try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, in: c) }
        self.clock.advance(by: .seconds(5))
        _ = try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9", in: c) }
        await #expect(throws: TokenError.self, "a client address is checked as everywhere else") {
            try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: String(repeating: "x", count: 200), in: c) }
        }
        for _ in 0..<8 {
            self.clock.advance(by: .seconds(1))
            _ = try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: "198.51.100.7", in: c) }
        }
        _ = try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "203.0.113.9", in: c) }
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9", in: c) } == nil)
        let events = try await self.run { store, c in try store.events(userID: "user-1", since: 0, limit: 20, in: c) }
        let opened = events.filter { $0.kind == .opened }
        #expect(opened.count == TokenStore.openingsRecorded, "reloading the page again and again does not grow the history")
        #expect(opened.last?.tokenID == record.id && opened.last?.clientAddress == "203.0.113.9", "the first opening")
        #expect(events.map(\.kind) == [.redeemed] + Array(repeating: .opened, count: TokenStore.openingsRecorded) + [.issued], "newest first")
    }
    @Test("an opening keeps how it came (method, cookies, User-Agent class) and the link's state, a dead link's too; bad values are refused")
    func openingDetails() async throws {
        let (token, record) = try await self.issue()
        let scanner = TokenEventRecord.Opening(method: "HEAD", hadCookies: false, agent: "scanner")
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: "192.0.2.50", opening: scanner, in: c) } != nil)
        _ = try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "203.0.113.9", in: c) }
        let browser = TokenEventRecord.Opening(method: "GET", hadCookies: true, agent: "browser")
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9", opening: browser, in: c) } == nil)
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .emailVerification, openedFrom: "203.0.113.9", opening: browser, in: c) } == nil)
        let opened = try await self.run { store, c in try store.events(userID: "user-1", since: 0, limit: 20, in: c) }.filter { $0.kind == .opened }
        #expect(opened.count == 2, "the other purpose's peek records nothing")
        #expect(opened.map(\.tokenID) == [record.id, record.id])
        #expect(opened[0].opening == TokenEventRecord.Opening(method: "GET", hadCookies: true, agent: "browser", tokenState: "used"))
        #expect(opened[1].opening == TokenEventRecord.Opening(method: "HEAD", hadCookies: false, agent: "scanner", tokenState: "live"))
        for bad in [TokenEventRecord.Opening(method: "POST", hadCookies: false, agent: "browser"), TokenEventRecord.Opening(method: "GET", hadCookies: false, agent: "robot; drop table")] {
            await #expect(throws: TokenError.self) {
                try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, openedFrom: "203.0.113.9", opening: bad, in: c) }
            }
        }
    }


    @Test("redeeming one reset link spends every other live reset link of the user in the same step; verification links and other users' links live on")
    func redeemSpendsSiblings() async throws {
        let (first, _) = try await self.issue()
        let (second, _) = try await self.issue()
        let (verification, _) = try await self.issue(purpose: .emailVerification, identity: "e_1")
        let (otherUser, _) = try await self.issue("user-2")
        _ = try await self.run { store, c in try store.redeem(second.value, purpose: .passwordReset, clientAddress: "192.0.2.9", in: c) }
        await #expect(throws: TokenError.notFound) {
            try await self.run { store, c in try store.redeem(first.value, purpose: .passwordReset, clientAddress: "192.0.2.9", in: c) }
        }
        #expect(try await self.run { store, c in try store.peek(verification.value, purpose: .emailVerification, in: c) } != nil)
        #expect(try await self.run { store, c in try store.peek(otherUser.value, purpose: .passwordReset, in: c) } != nil)
    }

    @Test("two reset links of one user redeemed at once from many callers: exactly one succeeds")
    func concurrentSiblings() async throws {
        let (first, _) = try await self.issue()
        let (second, _) = try await self.issue()
        let successes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<100 {
                let token = index.isMultiple(of: 2) ? first.value : second.value
                group.addTask {
                    do {
                        _ = try await self.run { store, c in try store.redeem(token, purpose: .passwordReset, clientAddress: "192.0.2.9", in: c) }
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

    @Test("a token is dead once its lifetime has passed")
    func expiry() async throws {
        let (token, _) = try await self.issue()
        self.clock.advance(by: .seconds(30 * 60 - 1))
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, in: c) } != nil)
        self.clock.advance(by: .seconds(1))
        #expect(try await self.run { store, c in try store.peek(token.value, purpose: .passwordReset, in: c) } == nil)
        await #expect(throws: TokenError.notFound) {
            try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "", in: c) }
        }
    }

    @Test("verification tokens live 24 hours and confirm one identity")
    func verification() async throws {
        let (token, record) = try await self.issue(purpose: .emailVerification, identity: "identity-7")
        #expect(record.expiresAt - record.issuedAt == 24 * 3600 * 1000)
        #expect(record.emailIdentityID == "identity-7")
        // A token of one purpose is not accepted for the other.
        await #expect(throws: TokenError.notFound) {
            try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "", in: c) }
        }
        let events = try await self.run { store, c in try store.events(userID: "user-1", since: 0, limit: 10, in: c) }
        #expect(events.first?.kind == .redeemFailed)
        #expect(events.first?.detail == "the token is for email verification, not password reset")
    }

    @Test("revoking kills every live token of the user, and only those")
    func revoke() async throws {
        let first = try await self.issue()
        let second = try await self.issue()
        let other = try await self.issue("user-2")
        let revoked = try await self.run { store, c in try store.revoke(userID: "user-1", purpose: nil, reason: "password changed", in: c) }
        #expect(revoked == 2)
        for token in [first.token, second.token] {
            await #expect(throws: TokenError.notFound) {
                try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "", in: c) }
            }
        }
        _ = try await self.run { store, c in try store.redeem(other.token.value, purpose: .passwordReset, clientAddress: "", in: c) }
        let events = try await self.run { store, c in try store.events(userID: "user-1", since: 0, limit: 10, in: c) }
        #expect(events.contains { $0.kind == .redeemFailed && $0.detail == "revoked (password changed)" })
    }

    @Test("the per-user limit refuses the sixth token in an hour, says when the next is allowed, and records the refusal")
    func perUserLimit() async throws {
        for index in 0..<5 {
            _ = try await self.issue(address: "192.0.2.\(index)")
            self.clock.advance(by: .seconds(60))
        }
        await #expect(throws: TokenError.self) { try await self.issue(address: "192.0.2.99") }
        do {
            _ = try await self.issue(address: "192.0.2.99")
        } catch let error as TokenError {
            let status = error.rpcError
            #expect(status.code == .resourceExhausted)
            // The first token was issued five minutes ago: the next is allowed in 55 minutes.
            #expect(status.trailers[MetadataKey.retryAfterSeconds] == "\(55 * 60)")
            #expect(status.message.contains("5 of 5"))
        }
        let events = try await self.run { store, c in try store.events(userID: "user-1", since: 0, limit: 20, in: c) }
        #expect(events.filter { $0.kind == .rateLimited }.count == 2)
        // Another purpose has its own budget.
        _ = try await self.issue(purpose: .emailVerification, identity: "identity-1")
        // Once the oldest leaves the window, one more is allowed.
        self.clock.advance(by: .seconds(55 * 60))
        _ = try await self.issue(address: "192.0.2.99")
    }

    @Test("the per-address limit applies to users' own requests, the per-admin budget to admin sends")
    func addressAndAdminLimits() async throws {
        for index in 0..<20 {
            _ = try await self.issue("user-\(index)", address: "198.51.100.7")
        }
        await #expect(throws: TokenError.self) { try await self.issue("user-99", address: "198.51.100.7") }
        // Admins sending from that address are counted against their own budget instead.
        for index in 0..<30 {
            _ = try await self.issue("user-a\(index)", admin: "admin-1", address: "198.51.100.7")
        }
        await #expect(throws: TokenError.self) { try await self.issue("user-b", admin: "admin-1", address: "198.51.100.7") }
        let states = try await self.run { store, c in
            try store.rateLimitStatus(userID: "", purpose: nil, clientAddress: "198.51.100.7", adminID: "admin-1", in: c)
        }
        #expect(states.map(\.scope) == [.clientAddress, .admin])
        #expect(states.map(\.used) == [20, 30])
        #expect(states.allSatisfy { $0.nextAllowedAt != nil })
    }

    @Test("each limit check reads one index, never the whole table", arguments: [RateLimitState.Scope.user, .clientAddress, .admin])
    func limitChecksUseAnIndex(scope: RateLimitState.Scope) async throws {
        let bindings: [SQLiteValue] = scope == .user ? [.text("subject"), .integer(1), .integer(0), .integer(5)] : [.text("subject"), .integer(0), .integer(5)]
        let plan = try await self.run { _, c in
            try c.query("EXPLAIN QUERY PLAN " + TokenStore.limitQuery(scope), bindings).compactMap { $0.string("detail") }
        }
        #expect(plan.count == 1, "\(plan)")
        #expect(plan.allSatisfy { $0.hasPrefix("SEARCH tokens USING") && $0.contains("INDEX tokens_by_") }, "\(plan)")
    }

    @Test("lists are newest first, paginated with a cursor, and a tampered cursor is refused")
    func listing() async throws {
        var ids: [String] = []
        for _ in 0..<5 {
            ids.append(try await self.issue(address: "").record.id)
            self.clock.advance(by: .seconds(1))
        }
        let first = try await self.run { store, c in try store.listTokens(userID: "user-1", pageSize: 2, cursor: "", in: c) }
        #expect(first.tokens.map(\.id) == [ids[4], ids[3]])
        let second = try await self.run { store, c in try store.listTokens(userID: "user-1", pageSize: 2, cursor: first.next, in: c) }
        #expect(second.tokens.map(\.id) == [ids[2], ids[1]])
        let third = try await self.run { store, c in try store.listTokens(userID: "user-1", pageSize: 2, cursor: second.next, in: c) }
        #expect(third.tokens.map(\.id) == [ids[0]])
        #expect(third.next.isEmpty)
        for cursor in ["garbage!", Base64URL.encode(Array("t1|x|y".utf8)), String(first.next.dropLast(2))] {
            await #expect(throws: TokenError.self) {
                try await self.run { store, c in try store.listTokens(userID: "user-1", pageSize: 2, cursor: cursor, in: c) }
            }
        }
    }

    @Test("bad input is refused with a clear message and writes nothing", arguments: [
        ("", TokenPurpose.passwordReset, "", "", "192.0.2.1", nil as Duration?, "user_id is required"),
        ("has space", .passwordReset, "", "", "", nil, "printable ASCII"),
        ("user-1", .emailVerification, "", "", "", nil, "email_identity_id is required"),
        ("user-1", .passwordReset, "identity-1", "", "", nil, "only for email verification"),
        ("user-1", .passwordReset, "", "", "not an address", nil, "client_address"),
        ("user-1", .passwordReset, "", "", "", .seconds(73 * 3600), "lifetime_seconds"),
    ])
    func badIssue(user: String, purpose: TokenPurpose, identity: String, admin: String, address: String, lifetime: Duration?, message: String) async throws {
        var request = TokenStore.IssueRequest(purpose: purpose, userID: user)
        request.emailIdentityID = identity
        request.requestedByAdminID = admin
        request.clientAddress = address
        request.lifetime = lifetime
        await #expect {
            try await self.run { [request] store, c in try store.issue(request, in: c) }
        } throws: { error in
            guard case .invalidArgument(let text) = error as? TokenError else { return false }
            return text.contains(message)
        }
        let count = try await self.run { _, c in try c.queryFirst("SELECT (SELECT count(*) FROM tokens) + (SELECT count(*) FROM events) AS n")?.int("n") }
        #expect(count == 0)
    }

    @Test("malformed tokens are refused as malformed", arguments: ["", "short", String(repeating: "A", count: 42) + "=", String(repeating: "A", count: 44), String(repeating: "A", count: 42) + "B"])
    func malformedTokens(token: String) async throws {
        await #expect {
            try await self.run { store, c in try store.peek(token, purpose: .passwordReset, in: c) }
        } throws: { error in
            if case .invalidArgument = error as? TokenError { return true }
            return false
        }
    }

    @Test("an unknown well-formed token is NOT_FOUND, and the failed attempt is recorded")
    func unknownToken() async throws {
        let token = try SecretToken.generate()
        await #expect(throws: TokenError.notFound) {
            try await self.run { store, c in try store.redeem(token.value, purpose: .passwordReset, clientAddress: "192.0.2.5", in: c) }
        }
        let detail = try await self.run { _, c in try c.queryFirst("SELECT detail FROM events WHERE kind = 'redeem_failed'")?.string("detail") }
        #expect(detail == "unknown token")
    }

    @Test("the purge forgets what is older than the retention, and nothing newer")
    func purge() async throws {
        _ = try await self.issue()
        self.clock.advance(by: .seconds(29 * 86400))
        let recent = try await self.issue("user-2")
        self.clock.advance(by: .seconds(2 * 86400))
        let purged = try await self.run { store, c in try store.purge(in: c) }
        #expect(purged.tokens == 1)
        #expect(purged.events == 1)
        let left = try await self.run { store, c in try store.listTokens(userID: "user-2", pageSize: 10, cursor: "", in: c) }
        #expect(left.tokens.map(\.id) == [recent.record.id])
    }

    @Test("the database holds the token's hash, never the token")
    func onlyHashesAreStored() async throws {
        let (token, _) = try await self.issue()
        let stored = try await self.run { _, c in try c.queryFirst("SELECT hash FROM tokens")?.blob("hash") }
        #expect(stored == OpenSSL.sha256(Array(token.value.utf8)))
        let text = try await self.run { _, c in
            try c.query("SELECT * FROM tokens").flatMap { $0.values }.map { "\($0)" }.joined()
                + c.query("SELECT * FROM events").flatMap { $0.values }.map { "\($0)" }.joined()
        }
        #expect(!text.contains(token.value))
    }
}
