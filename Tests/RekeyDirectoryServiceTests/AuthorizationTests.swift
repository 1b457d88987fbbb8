import RekeyDirectoryService
import RekeySQLite
import RekeyTesting
import Testing

/// Roles are ranked (owner > admin > agent > collaborator > customer): the takeover paths an
/// admin tried against the owner, each refused with the reason, and what stays allowed.
@Suite("Ranks, grants and keys", .serialized)
struct AuthorizationTests {
    let directory: DirectoryFixture
    let owner: UserRecord
    let admin: UserRecord
    let agent: UserRecord
    var asAdmin: ActorInfo { ActorInfo(userID: self.admin.id, clientAddress: "192.0.2.66") }

    init(_ backend: Backend = .sqlite) async throws {
        let directory = try await DirectoryFixture(backend)
        self.directory = directory
        func make(_ name: String, _ email: String, _ role: String) async throws -> UserRecord {
            try await directory.run { store, c in
                var new = DirectoryStore.NewUser(name: name, role: role, email: email)
                new.emailVerified = true
                return try store.createUser(new, actor: .system, in: c)
            }
        }
        self.owner = try await make("Olive Owner", "owner@example.com", "owner")
        self.admin = try await make("Mallory Admin", "mallory@example.com", "admin")
        self.agent = try await make("Agnes Agent", "agnes@example.com", "agent")
    }

    func expectRefused(_ refusal: Refusal, _ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> some Sendable) async {
        await #expect {
            try await self.directory.run(body)
        } throws: { error in
            guard case .refused(let given, _) = error as? DirectoryError else { return false }
            return given == refusal
        }
    }

    @Test("an admin cannot take over the owner: keys, role, state, addresses, password, sessions", arguments: Backend.allCases)
    func takeover(backend: Backend) async throws {
        let t = try await Self(backend)
        let (owner, actor) = (t.owner, t.asAdmin)
        await t.expectRefused(.ownKeysOnly) { store, c in try store.createAPIKey(owner.id, name: "mine now", lifetime: nil, actor: actor, in: c) }
        var promote = DirectoryStore.UserChanges()
        promote.role = "owner"
        let adminID = t.admin.id
        await t.expectRefused(.ownerOnly) { [promote] store, c in try store.updateUser(adminID, changes: promote, actor: actor, in: c) }
        await t.expectRefused(.outranked) { store, c in try store.setState(owner.id, .disabled, actor: actor, in: c) }
        await t.expectRefused(.outranked) { store, c in try store.addEmail(owner.id, address: "evil@attacker.example", verified: true, actor: actor, in: c) }
        await t.expectRefused(.outranked) { store, c in try store.addEmail(owner.id, address: "evil@attacker.example", verified: false, actor: actor, in: c) }
        let ownerEmail = try #require(owner.primaryEmail)
        await t.expectRefused(.outranked) { store, c in try store.setPrimaryEmail(owner.id, emailID: ownerEmail.id, actor: actor, in: c) }
        await t.expectRefused(.outranked) { store, c in try store.storePasswordHash(owner.id, hash: "x", actor: actor, revokeSessions: true, in: c) }
        await t.expectRefused(.outranked) { store, c in try store.revokeSessions(owner.id, actor: actor, in: c) }
        var rename = DirectoryStore.UserChanges()
        rename.name = "Pwned"
        await t.expectRefused(.outranked) { [rename] store, c in try store.updateUser(owner.id, changes: rename, actor: actor, in: c) }
        await t.expectRefused(.ownerOnly) { store, c in
            try store.createUser(.init(name: "Sock Puppet", role: "admin", email: "puppet@attacker.example"), actor: actor, in: c)
        }
        let unchanged = try await t.directory.run { store, c in try store.user(owner.id, in: c) }
        #expect(unchanged == owner, "nothing about the owner changed")
        let keys = try await t.directory.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM api_keys")?.int("n") }
        #expect(keys == 0)
    }

    @Test("an equal rank is not below: an admin cannot manage another admin", arguments: Backend.allCases)
    func equalRank(backend: Backend) async throws {
        let t = try await Self(backend)
        let other = try await t.directory.run { store, c in
            try store.createUser(.init(name: "Other Admin", role: "admin", email: "other@example.com"), actor: .system, in: c)
        }
        let actor = t.asAdmin
        await t.expectRefused(.outranked) { store, c in try store.setState(other.id, .disabled, actor: actor, in: c) }
    }

    @Test("what an admin may do: manage those below, grant roles below their own, lower their own role; an owner grants admin", arguments: Backend.allCases)
    func allowed(backend: Backend) async throws {
        let t = try await Self(backend)
        let (agent, actor) = (t.agent, t.asAdmin)
        var demote = DirectoryStore.UserChanges()
        demote.role = "collaborator"
        let demoted = try await t.directory.run { [demote] store, c in try store.updateUser(agent.id, changes: demote, actor: actor, in: c) }
        #expect(demoted.role == "collaborator")
        _ = try await t.directory.run { store, c in try store.setState(agent.id, .disabled, actor: actor, in: c) }
        _ = try await t.directory.run { store, c in
            try store.createUser(.init(name: "New Agent", role: "agent", email: "new.agent@example.com"), actor: actor, in: c)
        }
        let (ownerActor, adminID) = (ActorInfo(userID: t.owner.id), t.admin.id)
        var promote = DirectoryStore.UserChanges()
        promote.role = "admin"
        let promoted = try await t.directory.run { [promote] store, c in try store.updateUser(agent.id, changes: promote, actor: ownerActor, in: c) }
        #expect(promoted.role == "admin")
        let lowered = try await t.directory.run { [demote] store, c in try store.updateUser(adminID, changes: demote, actor: actor, in: c) }
        #expect(lowered.role == "collaborator", "lowering one's own role is allowed")
    }

    @Test("addresses added by someone else stay unverified until their owner confirms; an unverified address never becomes primary", arguments: Backend.allCases)
    func addresses(backend: Backend) async throws {
        let t = try await Self(backend)
        let (agent, actor) = (t.agent, t.asAdmin)
        await t.expectRefused(.unverifiedUntilConfirmed) { store, c in
            try store.addEmail(agent.id, address: "agnes@elsewhere.example", verified: true, actor: actor, in: c)
        }
        let added = try await t.directory.run { store, c in try store.addEmail(agent.id, address: "agnes@elsewhere.example", verified: false, actor: actor, in: c) }
        let address = try #require(added.emails.first { $0.address == "agnes@elsewhere.example" })
        #expect(!address.verified)
        await #expect(throws: DirectoryError.self) {
            try await t.directory.run { store, c in try store.setPrimaryEmail(agent.id, emailID: address.id, actor: actor, in: c) }
        }
        await t.expectRefused(.unverifiedUntilConfirmed) { store, c in try store.markEmailVerified(agent.id, emailID: address.id, actor: actor, in: c) }
        let confirmed = try await t.directory.run { store, c in
            try store.markEmailVerified(agent.id, emailID: address.id, actor: ActorInfo(userID: agent.id), in: c)
        }
        #expect(confirmed.emails.first { $0.id == address.id }?.verified == true)
        let moved = try await t.directory.run { store, c in try store.setPrimaryEmail(agent.id, emailID: address.id, actor: actor, in: c) }
        #expect(moved.primaryEmail?.address == "agnes@elsewhere.example")
    }

    @Test("API keys: made only by their user; disabling revokes them for good; an owner revokes anyone's", arguments: Backend.allCases)
    func keys(backend: Backend) async throws {
        let t = try await Self(backend)
        let (agent, actor) = (t.agent, t.asAdmin)
        let (key, record) = try await t.directory.run { store, c in
            try store.createAPIKey(agent.id, name: "laptop", lifetime: nil, actor: ActorInfo(userID: agent.id), in: c)
        }
        #expect(try await t.directory.run { store, c in try store.authenticateAPIKey(key, in: c) } != nil)
        _ = try await t.directory.run { store, c in try store.setState(agent.id, .disabled, actor: actor, in: c) }
        _ = try await t.directory.run { store, c in try store.setState(agent.id, .active, actor: actor, in: c) }
        #expect(try await t.directory.run { store, c in try store.authenticateAPIKey(key, in: c) } == nil, "enabling again does not bring the key back")
        let revoked = try await t.directory.run { store, c in try store.revokeAPIKey(record.id, actor: actor, in: c) }
        #expect(revoked.revokedAt != nil)

        let (adminID, ownerActor) = (t.admin.id, ActorInfo(userID: t.owner.id))
        let (_, adminKey) = try await t.directory.run { store, c in try store.createAPIKey(adminID, name: "ci", lifetime: nil, actor: actor, in: c) }
        let (_, ownerKey) = try await t.directory.run { [owner = t.owner] store, c in try store.createAPIKey(owner.id, name: "owner", lifetime: nil, actor: ownerActor, in: c) }
        await t.expectRefused(.outranked) { store, c in try store.revokeAPIKey(ownerKey.id, actor: actor, in: c) }
        let byOwner = try await t.directory.run { store, c in try store.revokeAPIKey(adminKey.id, actor: ownerActor, in: c) }
        #expect(byOwner.revokedAt != nil)
    }

    @Test("a disabled or unknown actor acts on nobody", arguments: Backend.allCases)
    func inactiveActor(backend: Backend) async throws {
        let t = try await Self(backend)
        let agent = t.agent
        await t.expectRefused(.actorInactive) { store, c in try store.setState(agent.id, .disabled, actor: ActorInfo(userID: "u_nobody"), in: c) }
    }

    @Test(arguments: [("owner", true, 4), ("admin", true, 3), ("agent", true, 2), ("collaborator", true, 1), ("customer", false, 0), ("support", true, 2), ("partner", false, 0)])
    func ranks(role: String, staff: Bool, rank: Int) {
        #expect(RoleRank.of(role: role, staff: staff) == rank)
    }
}
