import Foundation
import RekeyClock
import RekeyDirectoryService
import RekeySQLite
import RekeyTesting
import Testing

@Suite("CSV reading")
struct CSVReaderTests {
    @Test("quoted fields keep commas, line breaks and doubled quotes; lines are counted from the file")
    func quoting() {
        let text = "\u{FEFF}name,email\r\n\"Doe, Jane\",jane@example.com\n\n\"Two\nLines \"\"Q\"\"\",two@example.com\nlast,x@example.com"
        let records = CSVReader.records(Array(text.utf8))
        #expect(records.map(\.line) == [1, 2, 4, 6])
        #expect(records[0].fields == ["name", "email"])
        #expect(records[1].fields == ["Doe, Jane", "jane@example.com"])
        #expect(records[2].fields == ["Two\nLines \"Q\"", "two@example.com"])
        #expect(records[3].fields == ["last", "x@example.com"])
        #expect(records.allSatisfy { $0.error == nil })
    }

    @Test("a stray quote, an unclosed quote and bytes that are not UTF-8 spoil only their own record")
    func badRecords() {
        var bytes = Array("a,b\nst\"ray,x\n".utf8)
        bytes += [0x66, 0xFF, 0x2C, 0x79, 0x0A]
        bytes += Array("ok,fine\n\"open,never closed\n".utf8)
        let records = CSVReader.records(bytes)
        #expect(records.count == 5)
        #expect(records[1].error?.contains("quote inside an unquoted field") == true)
        #expect(records[2].error == "line 3 is not valid UTF-8; save the file as UTF-8")
        #expect(records[3].fields == ["ok", "fine"])
        #expect(records[4].error == "line 5 opens a quoted field that is never closed")
    }
}

@Suite("Importing users", .serialized)
struct ImportTests {
    let directory: DirectoryFixture

    init(_ backend: Backend = .sqlite) async throws {
        self.directory = try await DirectoryFixture(backend)
    }

    func run<R: Sendable>(_ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> R) async throws -> R {
        try await self.directory.run(body)
    }

    func importing(_ text: String, partial: Bool = false) async throws -> DirectoryStore.ImportReport {
        try await self.run { store, c in try store.importUsers(csv: Array(text.utf8), partial: partial, actor: .system, in: c) }
    }

    func userCount() async throws -> Int64 {
        try await self.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM users")?.int("n") ?? -1 }
    }

    @Test("a staged import: chunks cut anywhere, in order (the last one may come twice, a gap is refused), one all-or-nothing commit, and its key answers the first outcome", arguments: Backend.allCases)
    func staged(backend: Backend) async throws {
        let t = try await Self(backend)
        let file = Array("name,email,role\nAnn,ann@example.com,customer\nBob,bob@example.com,customer\n".utf8)
        guard case .staging(let id) = try await t.run({ store, c in try store.beginImport(key: "k-1", partial: false, actor: .system, in: c) }) else {
            Issue.record("expected a new stage")
            return
        }
        let cut = 20
        _ = try await t.run { store, c in try store.appendImport(id: id, sequence: 0, csv: Array(file[..<cut]), in: c) }
        _ = try await t.run { store, c in try store.appendImport(id: id, sequence: 0, csv: Array(file[..<cut]), in: c) }
        await #expect(throws: DirectoryError.self) {
            try await t.run { store, c in try store.appendImport(id: id, sequence: 2, csv: [], in: c) }
        }
        let staged = try await t.run { store, c in try store.appendImport(id: id, sequence: 1, csv: Array(file[cut...]), in: c) }
        #expect(staged == file.count)
        let outcome = try await t.run { store, c in try store.commitImport(id: id, encode: { Array("created \($0.created)".utf8) }, in: c) }
        #expect(String(decoding: outcome, as: UTF8.self) == "created 2")
        #expect(try await t.userCount() == 2)
        let again = try await t.run { store, c in try store.beginImport(key: "k-1", partial: false, actor: .system, in: c) }
        #expect(again == .finished(id: id, outcome: outcome), "a retry with the key gets the first outcome")
        await #expect(throws: DirectoryError.self) {
            try await t.run { store, c in try store.appendImport(id: id, sequence: 2, csv: [], in: c) }
        }
    }

    /// The directory's transactions on PostgreSQL are SERIALIZABLE and run again when they
    /// collide: the retry's begin touches the row the commit changed, so it runs again after the
    /// commit and finds the outcome. Under READ COMMITTED it would start a new stage instead.
    @Test("on PostgreSQL, a retry that comes while the first commit is still running waits for it and answers its outcome")
    func retryDuringCommit() async throws {
        let t = try await Self(.postgres)
        guard case .staging(let id) = try await t.run({ store, c in try store.beginImport(key: "k-2", partial: false, actor: .system, in: c) }) else {
            Issue.record("expected a new stage")
            return
        }
        let holding = Latch()
        let release = Latch()
        // Stands for the first commit, still running: it holds the stage's row, then finishes it.
        let commit = Task {
            try await t.run { _, c in
                _ = try c.run("UPDATE imports SET state = 'finished', outcome = ? WHERE id = ?", .blob(Array("first outcome".utf8)), .text(id))
                holding.open()
                _ = release.waitBlocking()
            }
        }
        try await holding.wait()
        let retry = Task { try await t.run { store, c in try store.beginImport(key: "k-2", partial: false, actor: .system, in: c) } }
        // Once the retry waits for the row, the first commit ends.
        let until = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < until, try await t.run({ _, c in
            try c.queryFirst("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")?.int("n") ?? 0
        }) == 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        release.open()
        try await commit.value
        #expect(try await retry.value == .finished(id: id, outcome: Array("first outcome".utf8)), "not a new stage of an import that committed meanwhile")
    }

    @Test("a staged file past 8 MiB is refused as OUT_OF_RANGE and nothing is imported", arguments: Backend.allCases)
    func stagedTooLarge(backend: Backend) async throws {
        let t = try await Self(backend)
        guard case .staging(let id) = try await t.run({ store, c in try store.beginImport(key: "", partial: false, actor: .system, in: c) }) else {
            Issue.record("expected a new stage")
            return
        }
        let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: DirectoryStore.maxImportChunk)
        for sequence in 0..<8 {
            _ = try await t.run { store, c in try store.appendImport(id: id, sequence: sequence, csv: chunk, in: c) }
        }
        await #expect(throws: DirectoryError.outOfRange("the file is larger than \(DirectoryStore.maxImportBytes) bytes (8 MiB); split it")) {
            try await t.run { store, c in try store.appendImport(id: id, sequence: 8, csv: [0x0A], in: c) }
        }
    }

    @Test("good rows become users that search and find-by-email see, with the organization by name or id", arguments: Backend.allCases)
    func goodFile(backend: Backend) async throws {
        let t = try await Self(backend)
        let acme = try await t.run { store, c in try store.createOrganization(name: "Acme Corp", domains: [], actor: .system, in: c) }
        let report = try await t.importing("""
            name,email,role,organization
            Jane Doe,jane@example.com,customer,acme corp
            "Smith, Sam",Sam@Example.com,Agent,\(acme.id)
            Nobody Org,n@example.com,customer,
            """)
        #expect(report.committed)
        #expect(report.created == 3)
        #expect(report.rows.map(\.line) == [2, 3, 4])
        #expect(report.rows.allSatisfy { $0.error == nil && $0.userID.hasPrefix("u_") })
        let found = try #require(try await t.run { store, c in try store.findUser(byEmail: "sam@example.com", in: c) })
        #expect(found.user.name == "Smith, Sam")
        #expect(found.user.role == "agent")
        #expect(found.user.organizationID == acme.id)
        #expect(found.user.passwordHash == nil)
        let staff = try await t.run { store, c in try store.search("sm", staffOnly: true, pageSize: 10, pageToken: "", in: c) }
        #expect(staff.users.map(\.name) == ["Smith, Sam"])
        let audit = try await t.run { store, c in try store.auditRecords(target: "", pageSize: 10, pageToken: "", in: c) }
        #expect(audit.records.first?.action == "user.import")
    }

    @Test("all-or-nothing: one bad row and nothing is written, every bad row reported with its reason", arguments: Backend.allCases)
    func allOrNothing(backend: Backend) async throws {
        let t = try await Self(backend)
        _ = try await t.run { store, c in try store.createUser(.init(name: "Existing", role: "customer", email: "taken@example.com"), actor: .system, in: c) }
        let report = try await t.importing("""
            name,email,role,organization
            Good One,good@example.com,customer,
            Bad Mail,not-an-address,customer,
            Taken,TAKEN@example.com,customer,
            Twice,good@EXAMPLE.com,customer,
            Role,role@example.com,wizard,
            Org,org@example.com,customer,Nowhere Inc
            ,empty@example.com,customer,
            Too,many,columns,here,really
            """)
        #expect(!report.committed)
        #expect(report.created == 0)
        #expect(report.refused == 7)
        #expect(report.rows.allSatisfy { $0.userID.isEmpty })
        let errors = report.rows.map { $0.error ?? "" }
        #expect(errors[0] == "")
        #expect(errors[1].contains("`not-an-address` is not an email address"))
        #expect(errors[2].contains("belongs to another user"))
        #expect(errors[3] == "the email address good@example.com is also on line 2 of this file")
        #expect(errors[4] == "unknown role `wizard`")
        #expect(errors[5].contains("no organization is named or has the id `Nowhere Inc`"))
        #expect(errors[6] == "name is required")
        #expect(errors[7] == "line 9 has 5 columns; expected 4 (name,email,role,organization)")
        #expect(try await t.userCount() == 1)
    }

    @Test("partial: the good rows are created, the others reported", arguments: Backend.allCases)
    func partial(backend: Backend) async throws {
        let t = try await Self(backend)
        let report = try await t.importing("name,email,role\nA,a@example.com,customer\nB,b@,customer\nC,c@example.com,admin\n", partial: true)
        #expect(report.committed)
        #expect(report.created == 2)
        #expect(report.rows[1].error != nil)
        #expect(report.rows[1].userID.isEmpty)
        #expect(try await t.userCount() == 2)
    }

    @Test("a file without the header, or with other columns, is refused as a whole", arguments: Backend.allCases)
    func badHeader(backend: Backend) async throws {
        let t = try await Self(backend)
        for text in ["", "email,name\nx@example.com,X\n", "Jane,jane@example.com,customer\n"] {
            await #expect(throws: DirectoryError.self) { try await t.importing(text) }
        }
        #expect(try await t.userCount() == 0)
    }
}

@Suite("Organizations and the audit trail", .serialized)
struct OrganizationTests {
    let directory: DirectoryFixture

    init(_ backend: Backend = .sqlite) async throws {
        self.directory = try await DirectoryFixture(backend)
    }

    func run<R: Sendable>(_ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> R) async throws -> R {
        try await self.directory.run(body)
    }

    @Test("rename and change domains; names stay unique in any case; delete only once nobody belongs to it", arguments: Backend.allCases)
    func updateAndDelete(backend: Backend) async throws {
        let t = try await Self(backend)
        let adminUser = try await t.run { store, c in try store.createUser(.init(name: "Ada Admin", role: "admin", email: "ada@example.com"), actor: .system, in: c) }
        let admin = ActorInfo(userID: adminUser.id, clientAddress: "192.0.2.7")
        let acme = try await t.run { store, c in try store.createOrganization(name: "Acme", domains: ["acme.example"], actor: admin, in: c) }
        _ = try await t.run { store, c in try store.createOrganization(name: "Globex", domains: [], actor: admin, in: c) }
        let renamed = try await t.run { store, c in
            try store.updateOrganization(acme.id, name: "Acme Corp", domains: ["Acme.example", "acme.test"], actor: admin, in: c)
        }
        #expect(renamed.name == "Acme Corp")
        #expect(renamed.domains == ["acme.example", "acme.test"])
        await #expect(throws: DirectoryError.alreadyExists("an organization named GLOBEX exists already (name)")) {
            try await t.run { store, c in try store.updateOrganization(acme.id, name: "GLOBEX", domains: nil, actor: admin, in: c) }
        }
        await #expect(throws: DirectoryError.self) {
            try await t.run { store, c in try store.updateOrganization(acme.id, name: nil, domains: ["not a domain"], actor: admin, in: c) }
        }
        var new = DirectoryStore.NewUser(name: "Member", role: "customer", email: "m@acme.example")
        new.organizationID = acme.id
        let member = try await t.run { [new] store, c in try store.createUser(new, actor: admin, in: c) }
        await #expect(throws: DirectoryError.failedPrecondition("1 user still belong to Acme Corp; move them to another organization first")) {
            try await t.run { store, c in try store.deleteOrganization(acme.id, actor: admin, in: c) }
        }
        var changes = DirectoryStore.UserChanges()
        changes.organizationID = ""
        _ = try await t.run { [changes] store, c in try store.updateUser(member.id, changes: changes, actor: admin, in: c) }
        try await t.run { store, c in try store.deleteOrganization(acme.id, actor: admin, in: c) }
        await #expect(throws: DirectoryError.notFound("no organization has the id \(acme.id)")) {
            try await t.run { store, c in try store.organization(acme.id, in: c) }
        }

        let trail = try await t.run { store, c in try store.auditRecords(target: acme.id, pageSize: 2, pageToken: "", in: c) }
        #expect(trail.records.map(\.action) == ["organization.delete", "organization.update"])
        #expect(trail.records[0].actorUserID == adminUser.id)
        #expect(trail.records[0].actorClientAddress == "192.0.2.7")
        let rest = try await t.run { store, c in try store.auditRecords(target: acme.id, pageSize: 2, pageToken: trail.next, in: c) }
        #expect(rest.records.map(\.action) == ["organization.create"])
        #expect(rest.next.isEmpty)
        await #expect(throws: DirectoryError.self) {
            try await t.run { store, c in try store.auditRecords(target: "", pageSize: 2, pageToken: "bogus", in: c) }
        }
    }
}

@Suite("The sign-in limits", .serialized)
struct SignInLimitTests {
    @Test("attempts per client address are reserved before checking; the answer says when to try again; the window moves on; success gives the attempt back", arguments: Backend.allCases)
    func addressLimit(backend: Backend) async throws {
        let clock = ManualClock()
        let directory = try await DirectoryFixture(backend, configuration: .init(signInLimit: 2, signInWindow: .seconds(60), signInAccountFreeAttempts: 100), clock: clock)
        try await directory.run { store, connection in
            _ = try store.reserveSignIn(clientAddress: "192.0.2.1", email: "a@example.com", in: connection)
            clock.advance(by: .seconds(10))
            let second = try store.reserveSignIn(clientAddress: "192.0.2.1", email: "b@example.com", in: connection)
            #expect(throws: DirectoryError.signInLimited(retryAfter: 50)) {
                try store.reserveSignIn(clientAddress: "192.0.2.1", email: "c@example.com", in: connection)
            }
            _ = try store.reserveSignIn(clientAddress: "192.0.2.2", email: "c@example.com", in: connection)
            _ = try store.reserveSignIn(clientAddress: "", email: "c@example.com", in: connection)
            try store.releaseSignIn(second, in: connection)
            _ = try store.reserveSignIn(clientAddress: "192.0.2.1", email: "d@example.com", in: connection)
            #expect(throws: DirectoryError.self) { try store.reserveSignIn(clientAddress: "192.0.2.1", email: "e@example.com", in: connection) }
            clock.advance(by: .seconds(51))
            _ = try store.reserveSignIn(clientAddress: "192.0.2.1", email: "f@example.com", in: connection)
        }
    }

    @Test("per account: free attempts, then a delay that doubles, whoever asks and whether or not the account exists", arguments: Backend.allCases)
    func accountThrottle(backend: Backend) async throws {
        let clock = ManualClock()
        let directory = try await DirectoryFixture(
            backend, configuration: .init(signInLimit: 1000, signInWindow: .seconds(900), signInAccountFreeAttempts: 3, signInAccountDelay: .seconds(2)), clock: clock
        )
        try await directory.run { store, connection in
            for index in 0..<3 {
                _ = try store.reserveSignIn(clientAddress: "198.51.100.\(index)", email: "Nobody@Example.com", in: connection)
            }
            #expect(throws: DirectoryError.signInLimited(retryAfter: 2)) {
                try store.reserveSignIn(clientAddress: "198.51.100.9", email: "nobody@example.com", in: connection)
            }
            _ = try store.reserveSignIn(clientAddress: "198.51.100.9", email: "somebody@example.com", in: connection)
            clock.advance(by: .seconds(2))
            _ = try store.reserveSignIn(clientAddress: "198.51.100.9", email: "nobody@example.com", in: connection)
            #expect(throws: DirectoryError.signInLimited(retryAfter: 4)) {
                try store.reserveSignIn(clientAddress: "198.51.100.10", email: "nobody@example.com", in: connection)
            }
        }
    }

    @Test("a burst of 40 sign-ins from one address at once: exactly the limit of 20 are let through to the password check", arguments: Backend.allCases)
    func burstFromOneAddress(backend: Backend) async throws {
        let directory = try await DirectoryFixture(backend, configuration: .init(signInLimit: 20, signInWindow: .seconds(900), signInAccountFreeAttempts: 1000))
        let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<40 {
                group.addTask {
                    do {
                        _ = try await directory.run { store, c in try store.reserveSignIn(clientAddress: "203.0.113.5", email: "user\(index)@example.com", in: c) }
                        return true
                    } catch DirectoryError.signInLimited {
                        return false
                    }
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(allowed == 20)
    }

    @Test("the throttle rules as pure functions")
    func rules() {
        let throttle = SignInThrottle(addressLimit: 3, window: .seconds(60), accountFreeAttempts: 2, accountDelay: .seconds(1))
        #expect(throttle.addressRetryAfter(attempts: [50_000, 40_000], now: 50_000) == nil)
        #expect(throttle.addressRetryAfter(attempts: [50_000, 40_000, 10_000], now: 50_000) == 20)
        #expect(throttle.accountRetryAfter(attempts: [1000], now: 1000) == nil)
        #expect(throttle.accountRetryAfter(attempts: [1000, 900], now: 1000) == 1)
        #expect(throttle.accountRetryAfter(attempts: [1000, 900, 800], now: 1000) == 2)
        #expect(throttle.accountRetryAfter(attempts: [1000, 900, 800], now: 3000) == nil)
        let many = Array(repeating: Int64(1000), count: 60)
        #expect(throttle.accountRetryAfter(attempts: many, now: 1000) == 60, "the delay never exceeds the window")
    }
}
