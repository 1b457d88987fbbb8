import Foundation
import RekeyClock
import RekeyCrypto
import RekeyDirectoryService
import RekeyInput
import RekeySQLite
import RekeyTesting
import Testing

/// The directory's rules, each test on a fresh database of each backend with the migrations applied.
/// One test at a time: dozens of fresh PostgreSQL databases at once in the suite's first minute
/// were seen to starve the other tests' connections past their time limits.
@Suite(.serialized)
struct DirectoryStoreTests {
    @Test("a user is found by any of their addresses, in any case, and mail goes to the primary", arguments: Backend.allCases)
    func findByEmail(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let user = try await t.create("Jane Doe", "Jane.Doe@Example.com")
        let withSecond = try await t.run { store, c in try store.addEmail(user.id, address: "jd@personal.example", verified: false, actor: .system, in: c) }
        #expect(withSecond.emails.count == 2)
        let found = try #require(try await t.run { store, c in try store.findUser(byEmail: "JD@PERSONAL.example", in: c) })
        #expect(found.user.id == user.id)
        #expect(found.matched.address == "jd@personal.example")
        #expect(!found.matched.isPrimary)
        #expect(found.user.primaryEmail?.address == "Jane.Doe@Example.com", "the original spelling is kept")
        #expect(found.user == withSecond, "the same user, addresses in the same order, as a read by id gives")
        let byPrimary = try #require(try await t.run { store, c in try store.findUser(byEmail: "jane.doe@example.com", in: c) })
        #expect(byPrimary.user == withSecond)
        #expect(byPrimary.matched.isPrimary)
        #expect(try await t.run { store, c in try store.findUser(byEmail: "nobody@example.com", in: c) } == nil)
    }

    @Test("an address belongs to one user at most, whatever its case, and the error names the field", arguments: Backend.allCases)
    func duplicates(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let user = try await t.create("Jane", "jane@example.com")
        await t.expectError({ store, c in try store.createUser(.init(name: "Other", role: "customer", email: "JANE@example.com"), actor: .system, in: c) }) {
            $0 == .alreadyExists("the email address jane@example.com belongs to another user (email)")
        }
        let other = try await t.create("Other", "other@example.com")
        await t.expectError({ store, c in try store.addEmail(other.id, address: "Jane@Example.COM", verified: false, actor: .system, in: c) }) {
            if case .alreadyExists(let message) = $0 { return message.hasSuffix("(address)") }
            return false
        }
        #expect(try await t.run { store, c in try store.user(user.id, in: c) }.emails.count == 1)
    }

    @Test("two callers adding the same address at once: exactly one wins", arguments: Backend.allCases)
    func concurrentAdds(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let first = try await t.create("First", "first@example.com")
        let second = try await t.create("Second", "second@example.com")
        let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
            for user in [first, second] {
                group.addTask {
                    do {
                        _ = try await t.run { store, c in try store.addEmail(user.id, address: "shared@example.com", verified: false, actor: .system, in: c) }
                        return true
                    } catch DirectoryError.alreadyExists {
                        return false
                    }
                }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        let owners = try await t.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM emails WHERE normalized = 'shared@example.com'")?.int("n") }
        #expect(owners == 1)
    }

    @Test("the primary address and a user's last address cannot be removed; the primary can move", arguments: Backend.allCases)
    func emailRules(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let user = try await t.create("Jane", "jane@example.com")
        let primary = try #require(user.primaryEmail)
        await t.expectError({ store, c in try store.removeEmail(user.id, emailID: primary.id, actor: .system, in: c) }) {
            if case .failedPrecondition(let message) = $0 { return message.contains("only email address") }
            return false
        }
        let unverified = try await t.run { store, c in try store.addEmail(user.id, address: "j3@example.com", verified: false, actor: .system, in: c) }
        await t.expectError({ store, c in try store.setPrimaryEmail(user.id, emailID: unverified.emails.first { $0.address == "j3@example.com" }!.id, actor: .system, in: c) }) {
            if case .failedPrecondition(let message) = $0 { return message.contains("is not verified") }
            return false
        }
        _ = try await t.run { store, c in try store.removeEmail(user.id, emailID: unverified.emails.first { $0.address == "j3@example.com" }!.id, actor: .system, in: c) }
        let second = try await t.run { store, c in try store.addEmail(user.id, address: "j2@example.com", verified: true, actor: .system, in: c) }
        let secondary = try #require(second.emails.first { !$0.isPrimary })
        await t.expectError({ store, c in try store.removeEmail(user.id, emailID: primary.id, actor: .system, in: c) }) {
            if case .failedPrecondition(let message) = $0 { return message.contains("primary address") }
            return false
        }
        let moved = try await t.run { store, c in try store.setPrimaryEmail(user.id, emailID: secondary.id, actor: .system, in: c) }
        #expect(moved.primaryEmail?.id == secondary.id)
        #expect(moved.emails.filter(\.isPrimary).count == 1)
        let verified = try await t.run { store, c in try store.markEmailVerified(user.id, emailID: secondary.id, actor: .system, in: c) }
        #expect(verified.emails.first { $0.id == secondary.id }?.verified == true)
        let removed = try await t.run { store, c in try store.removeEmail(user.id, emailID: primary.id, actor: .system, in: c) }
        #expect(removed.emails.map(\.address) == ["j2@example.com"])
    }

    @Test("the last active owner cannot be disabled or demoted; disabling revokes sessions", arguments: Backend.allCases)
    func owners(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let owner = try await t.create("Olive", "olive@example.com", role: "owner")
        await t.expectError({ store, c in try store.setState(owner.id, .disabled, actor: .system, in: c) }) {
            if case .failedPrecondition(let message) = $0 { return message.contains("last active owner") }
            return false
        }
        var demote = DirectoryStore.UserChanges()
        demote.role = "agent"
        await t.expectError({ [demote] store, c in try store.updateUser(owner.id, changes: demote, actor: .system, in: c) }) {
            if case .failedPrecondition = $0 { return true }
            return false
        }
        _ = try await t.create("Otto", "otto@example.com", role: "owner")
        let session = try await t.run { store, c in try store.createSession(owner.id, in: c) }
        let disabled = try await t.run { store, c in try store.setState(owner.id, .disabled, actor: .system, in: c) }
        #expect(disabled.state == .disabled)
        #expect(try await t.run { store, c in try store.validateSession(session.token, in: c) } == nil)
        await t.expectError({ store, c in try store.createSession(owner.id, in: c) }) {
            if case .failedPrecondition = $0 { return true }
            return false
        }
    }

    @Test("search matches word prefixes of names and addresses; the staff directory leaves customers out", arguments: Backend.allCases)
    func search(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        try await t.create("Jane Doe", "jane.doe@example.com", role: "agent")
        try await t.create("Janet Smith", "jsmith@example.com", role: "customer")
        try await t.create("Bob Jansen", "bob@example.org", role: "admin")
        try await t.create("Zoë Müller", "zoe@example.com", role: "collaborator")
        func names(_ query: String, staff: Bool) async throws -> [String] {
            try await t.run { store, c in try store.search(query, staffOnly: staff, pageSize: 20, pageToken: "", in: c) }.users.map(\.name).sorted()
        }
        #expect(try await names("jan", staff: false) == ["Bob Jansen", "Jane Doe", "Janet Smith"])
        #expect(try await names("jan", staff: true) == ["Bob Jansen", "Jane Doe"])
        #expect(try await names("j d", staff: false) == ["Jane Doe"])
        #expect(try await names("example.org", staff: false) == ["Bob Jansen"])
        #expect(try await names("muller", staff: true) == ["Zoë Müller"], "diacritics are ignored")
        #expect(try await names("zo", staff: true) == ["Zoë Müller"])
        #expect(try await names("", staff: true) == ["Bob Jansen", "Jane Doe", "Zoë Müller"])
        #expect(try await names("xyz", staff: false).isEmpty)
        #expect(try await names("\"*) NEAR (", staff: false).isEmpty, "query syntax is not interpreted")
        #expect(try await names("\"jane\" OR xyz", staff: false).isEmpty, "OR is just a word here")
    }

    @Test("results are ranked: the name's start, then another word of the name, then only an address; then by name", arguments: Backend.allCases)
    func ranking(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        try await t.create("Ann Zimmer", "zed@example.com")
        try await t.create("Bea Annand", "bea@example.com")
        try await t.create("Cy Young", "annie.cy@example.com")
        try await t.create("Anna Able", "aa@example.com")
        try await t.create("Éric Annan", "eric@example.com")
        for query in ["an", "ann", "anni cy", "an cy", "annan"] {
            let names = try await t.run { store, c in try store.search(query, staffOnly: false, pageSize: 20, pageToken: "", in: c) }.users.map(\.name)
            switch query {
            case "an", "ann": #expect(names == ["Ann Zimmer", "Anna Able", "Bea Annand", "Éric Annan", "Cy Young"], "\(query)")
            case "anni cy", "an cy": #expect(names == ["Cy Young"])
            default: #expect(names == ["Bea Annand", "Éric Annan"])
            }
        }
        // Short queries read the prefix index, longer ones FTS: pages continue across either.
        for query in ["a", "example"] {
            var seen: [String] = []
            var token = ""
            repeat {
                let page = try await t.run { [token] store, c in try store.search(query, staffOnly: false, pageSize: 2, pageToken: token, in: c) }
                seen += page.users.map(\.name)
                token = page.next
            } while !token.isEmpty
            let all = try await t.run { store, c in try store.search(query, staffOnly: false, pageSize: 20, pageToken: "", in: c) }.users.map(\.name)
            #expect(seen == all, "\(query)")
            #expect(Set(seen).count == 5)
        }
    }

    @Test("renaming a user or changing their addresses moves them in search; the index can be rebuilt", arguments: Backend.allCases)
    func searchFollowsChanges(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let user = try await t.create("Old Name", "old@example.com", role: "agent")
        var changes = DirectoryStore.UserChanges()
        changes.name = "New Person"
        changes.role = "customer"
        _ = try await t.run { [changes] store, c in try store.updateUser(user.id, changes: changes, actor: .system, in: c) }
        func names(_ query: String, staff: Bool = false) async throws -> [String] {
            try await t.run { store, c in try store.search(query, staffOnly: staff, pageSize: 20, pageToken: "", in: c) }.users.map(\.name)
        }
        #expect(try await names("ol").isEmpty == false, "old@ is still an address")
        #expect(try await names("new") == ["New Person"])
        #expect(try await names("ne", staff: true).isEmpty, "no longer staff")
        _ = try await t.run { store, c in try store.addEmail(user.id, address: "xavier@example.com", verified: false, actor: .system, in: c) }
        #expect(try await names("xa") == ["New Person"])
        let count = try await t.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM search_prefixes")?.int("n") ?? 0 }

        try await t.run { _, c in
            try c.run("DELETE FROM search_prefixes")
            try c.run("INSERT INTO directory_meta VALUES ('search_prefixes_pending', '1')")
        }
        #expect(try await t.run { store, c in try store.rebuildSearchPrefixesIfNeeded(in: c) } == 1)
        #expect(try await t.run { store, c in try store.rebuildSearchPrefixesIfNeeded(in: c) } == 0)
        #expect(try await t.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM search_prefixes")?.int("n") ?? 0 } == count)
        #expect(try await names("xa") == ["New Person"])
    }

    @Test("search and list pages follow on from each other, and tampered tokens are refused", arguments: Backend.allCases)
    func pagination(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        for index in 0..<7 {
            try await t.create("Person \(index)", "p\(index)@example.com", role: index % 2 == 0 ? "agent" : "customer")
        }
        let first = try await t.run { store, c in try store.search("person", staffOnly: false, pageSize: 3, pageToken: "", in: c) }
        let second = try await t.run { store, c in try store.search("person", staffOnly: false, pageSize: 3, pageToken: first.next, in: c) }
        let third = try await t.run { store, c in try store.search("person", staffOnly: false, pageSize: 3, pageToken: second.next, in: c) }
        #expect(Set((first.users + second.users + third.users).map(\.id)).count == 7)
        #expect(third.next.isEmpty)
        await t.expectError({ store, c in try store.search("other", staffOnly: false, pageSize: 3, pageToken: first.next, in: c) }) {
            if case .invalidArgument = $0 { return true }
            return false
        }

        var filter = DirectoryStore.ListFilter()
        filter.role = "agent"
        let agents = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: "", in: c) }
        #expect(agents.users.map(\.name) == ["Person 0", "Person 2"])
        try await t.create("Person 8", "p8@example.com", role: "agent")
        let rest = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 10, pageToken: agents.next, in: c) }
        #expect(rest.users.map(\.name) == ["Person 4", "Person 6", "Person 8"])
        for token in ["nope", Base64URL.encode(Array("l1|-4".utf8))] {
            await t.expectError({ [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: token, in: c) }) {
                if case .invalidArgument = $0 { return true }
                return false
            }
        }
    }

    @Test("custom roles grant chosen permissions; disabled users hold none", arguments: Backend.allCases)
    func roles(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let role = try await t.run { store, c in try store.createRole(name: "helpdesk-lead", permissions: ["users.manage"], staff: true, actor: .system, in: c) }
        #expect(role.permissions == ["users.manage"])
        let lead = try await t.create("Lea", "lea@example.com", role: "helpdesk-lead")
        let agent = try await t.create("Al", "al@example.com", role: "agent")
        #expect(lead.staff)
        #expect(try await t.run { store, c in try store.hasPermission(lead.id, "users.manage", in: c) })
        #expect(try await t.run { store, c in try store.hasPermission(agent.id, "users.manage", in: c) } == false)
        await t.expectError({ store, c in try store.createRole(name: "x2", permissions: ["users.delete"], staff: false, actor: .system, in: c) }) {
            if case .invalidArgument(let message) = $0 { return message.contains("unknown permission") }
            return false
        }
        await t.expectError({ store, c in try store.createRole(name: "admin", permissions: [], staff: true, actor: .system, in: c) }) {
            if case .alreadyExists = $0 { return true }
            return false
        }
        _ = try await t.create("Otto", "otto@example.com", role: "owner")
        _ = try await t.run { store, c in try store.setState(lead.id, .disabled, actor: .system, in: c) }
        #expect(try await t.run { store, c in try store.hasPermission(lead.id, "users.manage", in: c) } == false)
    }

    @Test("API keys authenticate until revoked or expired, and only their hash is stored", arguments: Backend.allCases)
    func apiKeys(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let admin = try await t.create("Ada", "ada@example.com", role: "admin")
        let (key, record) = try await t.run { store, c in try store.createAPIKey(admin.id, name: "laptop", lifetime: .seconds(3600), actor: .system, in: c) }
        #expect(key.hasPrefix("rk_") && key.count == 46)
        #expect(record.name == "laptop" && record.userID == admin.id)
        let authenticated = try #require(try await t.run { store, c in try store.authenticateAPIKey(key, in: c) })
        #expect(authenticated.user.id == admin.id)
        #expect(authenticated.permissions == ["users.manage"])
        let stored = try await t.run { _, c in try c.queryFirst("SELECT hash FROM api_keys")?.blob("hash") }
        #expect(stored == OpenSSL.sha256(Array(key.utf8)))
        t.clock.advance(by: .seconds(3600))
        #expect(try await t.run { store, c in try store.authenticateAPIKey(key, in: c) } == nil)
        let (second, secondRecord) = try await t.run { store, c in try store.createAPIKey(admin.id, name: "ci", lifetime: nil, actor: .system, in: c) }
        _ = try await t.run { store, c in try store.revokeAPIKey(secondRecord.id, actor: .system, in: c) }
        #expect(try await t.run { store, c in try store.authenticateAPIKey(second, in: c) } == nil)
        #expect(try await t.run { store, c in try store.authenticateAPIKey("rk_" + String(repeating: "A", count: 43), in: c) } == nil)
    }

    @Test("sessions validate until they expire or are revoked", arguments: Backend.allCases)
    func sessions(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let user = try await t.create("Jane", "jane@example.com")
        let session = try await t.run { store, c in try store.createSession(user.id, in: c) }
        #expect(try await t.run { store, c in try store.validateSession(session.token, in: c) }?.user.id == user.id)
        #expect(try await t.run { store, c in try store.revokeSessions(user.id, actor: .system, in: c) } == 1)
        #expect(try await t.run { store, c in try store.validateSession(session.token, in: c) } == nil)
        let later = try await t.run { store, c in try store.createSession(user.id, in: c) }
        t.clock.advance(by: .seconds(12 * 3600))
        #expect(try await t.run { store, c in try store.validateSession(later.token, in: c) } == nil)
    }

    @Test("a session unused for longer than the idle timeout ends; each use moves the deadline; it carries the role's permissions", arguments: Backend.allCases)
    func sessionIdleTimeout(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let admin = try await t.create("Ada", "ada@example.com", role: "admin")
        let session = try await t.run { store, c in try store.createSession(admin.id, in: c) }
        #expect(try await t.run { store, c in try store.validateSession(session.token, in: c) }?.permissions.contains("users.manage") == true)
        for _ in 0..<4 {
            // Used every 20 minutes: alive after 80, though the idle timeout is 30.
            t.clock.advance(by: .seconds(20 * 60))
            #expect(try await t.run { store, c in try store.validateSession(session.token, in: c) } != nil)
        }
        t.clock.advance(by: .seconds(30 * 60))
        #expect(try await t.run { store, c in try store.validateSession(session.token, in: c) } == nil, "idle for 30 minutes")
        let agent = try await t.create("Andy", "andy@example.com", role: "agent")
        let other = try await t.run { store, c in try store.createSession(agent.id, in: c) }
        #expect(try await t.run { store, c in try store.validateSession(other.token, in: c) }?.permissions == [], "an agent manages nobody")
    }

    @Test("all users: filters by password and by the primary address's verification, and counts the matches over every page, up to a limit", arguments: Backend.allCases)
    func listFiltersAndCount(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        for index in 0..<5 {
            try await t.create("User \(index)", "user\(index)@example.com")
        }
        var verified = DirectoryStore.NewUser(name: "Vera", role: "customer", email: "vera@example.com")
        verified.emailVerified = true
        let vera = try await t.run { [verified] store, c in try store.createUser(verified, actor: .system, in: c) }
        var filter = DirectoryStore.ListFilter()
        filter.primaryVerified = true
        let page = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 10, pageToken: "", countTotal: true, in: c) }
        #expect(page.users.map(\.id) == [vera.id] && page.total?.count == 1 && page.total?.capped == false)
        filter.primaryVerified = false
        filter.hasPassword = false
        let first = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: "", countTotal: true, in: c) }
        #expect(first.users.count == 2 && first.total?.count == 5, "the count is over every page")
        let capped = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: "", countTotal: true, countLimit: 3, in: c) }
        #expect(capped.total?.count == 3 && capped.total?.capped == true, "past the limit the count stops and says so")
        let exact = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: "", countTotal: true, countLimit: 5, in: c) }
        #expect(exact.total?.count == 5 && exact.total?.capped == false, "exactly the limit is not capped")
        let uncounted = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: "", in: c) }
        #expect(uncounted.total == nil)
        filter.hasPassword = true
        let none = try await t.run { [filter] store, c in try store.listUsers(filter: filter, pageSize: 2, pageToken: "", countTotal: true, in: c) }
        #expect(none.total?.count == 0 && none.users.isEmpty)
    }

    @Test("the audit trail filters by actor and by target, newest first", arguments: Backend.allCases)
    func auditByActor(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let admin = try await t.create("Ada", "ada@example.com", role: "admin")
        let actor = ActorInfo(userID: admin.id, clientAddress: "192.0.2.1")
        let jane = try await t.run { store, c in try store.createUser(.init(name: "Jane", role: "customer", email: "jane@example.com"), actor: actor, in: c) }
        _ = try await t.run { store, c in try store.createUser(.init(name: "Sys", role: "customer", email: "sys@example.com"), actor: .system, in: c) }
        let byAdmin = try await t.run { store, c in try store.auditRecords(target: "", actor: admin.id, pageSize: 50, pageToken: "", in: c) }
        #expect(byAdmin.records.map(\.target) == [jane.id])
        let both = try await t.run { store, c in try store.auditRecords(target: jane.id, actor: admin.id, pageSize: 50, pageToken: "", in: c) }
        #expect(both.records.count == 1)
        await t.expectError({ store, c in try store.auditRecords(target: "", actor: String(repeating: "x", count: 65), pageSize: 50, pageToken: "", in: c) }) {
            if case .invalidArgument = $0 { return true } else { return false }
        }
    }

    @Test("bad input is refused with a message a person can act on, and nothing is written", arguments: [
        ("", "customer", "a@example.com", "", "name is required"),
        (String(repeating: "x", count: 201), "customer", "a@example.com", "", "longer than 200"),
        ("Ann", "king", "a@example.com", "", "unknown role"),
        ("Ann", "customer", "not-an-email", "", "is not an email address"),
        ("Ann", "customer", "a@b", "", "is not an email address"),
        ("Ann", "customer", "a b@example.com", "", "is not an email address"),
        ("Ann", "customer", "ann@" + String(repeating: "a", count: 64) + ".com", "", "is not an email address"),
        ("Ann", "customer", "ann@192.0.2.1", "", "can never receive mail: no domain ends in a number"),
        ("Ann", "customer", "ann@mail.example.INVALID", "", "can never receive mail: `.invalid` names never exist"),
        // 25 CJK characters: 75 bytes, 81 characters in Punycode (DNS allows 63).
        ("Ann", "customer", "ann@山田太郎花子東京大阪京都北海道沖縄九州四国本州名古.jp", "", "can never receive mail: its domain is too long once written in DNS's ASCII form"),
        ("Ann", "customer", "a\u{2028}b@example.com", "", "invisible or formatting character (U+2028)"),
        ("Ann", "customer", "ann\u{200B}@example.com", "", "invisible or formatting character (U+200B)"),
        ("Ann", "customer", "ann@exa\u{202E}mple.com", "", "invisible or formatting character (U+202E)"),
        ("Ann", "customer", "a@example.com", "english please", "is not a language tag"),
    ])
    func badInput(name: String, role: String, email: String, locale: String, message: String) async throws {
        // Refused before any SQL: tested on SQLite only.
        let t = try await DirectoryFixture(.sqlite)
        var new = DirectoryStore.NewUser(name: name, role: role, email: email)
        new.locale = locale
        await t.expectError({ [new] store, c in try store.createUser(new, actor: .system, in: c) }) {
            if case .invalidArgument(let text) = $0 { return text.contains(message) }
            return false
        }
        let count = try await t.run { _, c in try c.queryFirst("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM emails) AS n")?.int("n") }
        #expect(count == 0)
    }

    @Test("an address that looks like another user's (Cyrillic а, fullwidth, 1 for l) is allowed but named in a warning; unrelated ones are not", arguments: Backend.allCases)
    func lookAlikes(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let paypal = try await t.create("Pat Pal", "paypal@example.com")
        #expect(LookAlike.skeleton("p\u{0430}yp\u{0430}l@example.com") == LookAlike.skeleton("paypal@example.com"))
        #expect(LookAlike.skeleton("\u{FF50}aypal@example.com") == LookAlike.skeleton("paypal@example.com"))
        #expect(LookAlike.skeleton("paypa1@example.com") == LookAlike.skeleton("paypal@example.com"))
        #expect(LookAlike.skeleton("paypal@example.org") != LookAlike.skeleton("paypal@example.com"))
        let spoof = try await t.create("Mallory", "p\u{0430}ypal@example.com")
        let warnings = try await t.run { store, c in try store.lookAlikeWarnings(for: "p\u{0430}ypal@example.com", excludingUser: spoof.id, in: c) }
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("paypal@example.com, the address of Pat Pal (\(paypal.id))") == true, "\(warnings)")
        let none = try await t.run { store, c in try store.lookAlikeWarnings(for: "someone@example.com", excludingUser: "u_x", in: c) }
        #expect(none.isEmpty)
        let own = try await t.run { store, c in try store.lookAlikeWarnings(for: "paypal@example.com", excludingUser: paypal.id, in: c) }
        #expect(own.allSatisfy { !$0.contains(paypal.id) }, "a user's own address is no warning")
    }

    @Test("a non-ASCII domain label is measured as DNS sees it: 35 Cyrillic letters (70 bytes) are 51 characters in Punycode, and fine", arguments: Backend.allCases)
    func idnaLengths(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let label = "абвгдежзийклмнопрстуфхцчшщъыьэюяабв"
        #expect(label.utf8.count == 70 && IDNA.asciiDomain(label)?.utf8.count == 51)
        let user = try await t.create("Ivan", "ivan@\(label).example")
        #expect(user.emails.first?.address == "ivan@\(label).example")
    }

    @Test("an address typed in two Unicode forms is one address", arguments: Backend.allCases)
    func nfc(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let first = try await t.create("Zoë", "zo\u{00EB}@example.org")
        await t.expectError({ store, c in try store.createUser(.init(name: "Zoe", role: "customer", email: "zoe\u{0308}@example.org"), actor: .system, in: c) }) {
            if case .alreadyExists = $0 { return true }
            return false
        }
        let found = try await t.run { store, c in try store.findUser(byEmail: "ZOE\u{0308}@example.org", in: c) }
        #expect(found?.user.id == first.id)
    }

    @Test("changes made by an admin leave an audit record: who, what, when, from where", arguments: Backend.allCases)
    func audit(backend: Backend) async throws {
        let t = try await DirectoryFixture(backend)
        let admin = try await t.create("Ada Admin", "ada@example.com", role: "admin")
        let user = try await t.run { store, c in
            try store.createUser(.init(name: "Jane", role: "customer", email: "jane@example.com"), actor: ActorInfo(userID: admin.id, clientAddress: "192.0.2.7"), in: c)
        }
        let row = try #require(try await t.run { _, c in try c.queryFirst("SELECT * FROM audit WHERE target = ?", .text(user.id)) })
        #expect(row.string("action") == "user.create")
        #expect(row.string("actor_id") == admin.id)
        #expect(row.string("actor_address") == "192.0.2.7")
        #expect(row.int("at") == t.clock.nowMilliseconds())
    }
}
