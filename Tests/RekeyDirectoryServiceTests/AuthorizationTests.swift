import RekeyDirectoryService
import RekeySQLite
import Testing

/// Roles are ranked (owner > admin > agent > collaborator > customer): the takeover paths an
/// admin tried against the owner, each refused with the reason, and what stays allowed.
@Suite("Ranks, grants and keys")
struct AuthorizationTests {
    let directory: DirectoryFixture
    let owner: UserRecord
    let admin: UserRecord
    let agent: UserRecord
    var asAdmin: ActorInfo { ActorInfo(userID: self.admin.id, clientAddress: "192.0.2.66") }

    init() async throws {
        let directory = try DirectoryFixture()
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

    func expectRefused(_ refusal: Refusal, _ body: @escaping @Sendable (DirectoryStore, SQLiteConnection) throws -> some Sendable) async {
        await #expect {
            try await self.directory.run(body)
        } throws: { error in
            guard case .refused(let given, _) = error as? DirectoryError else { return false }
            return given == refusal
        }
    }

    @Test("an admin cannot take over the owner: keys, role, state, addresses, password, sessions")
    func takeover() async throws {
        let (owner, actor) = (self.owner, self.asAdmin)
        await self.expectRefused(.ownKeysOnly) { store, c in try store.createAPIKey(owner.id, name: "mine now", lifetime: nil, actor: actor, in: c) }
        var promote = DirectoryStore.UserChanges()
        promote.role = "owner"
        let adminID = self.admin.id
        await self.expectRefused(.ownerOnly) { [promote] store, c in try store.updateUser(adminID, changes: promote, actor: actor, in: c) }
        await self.expectRefused(.outranked) { store, c in try store.setState(owner.id, .disabled, actor: actor, in: c) }
        await self.expectRefused(.outranked) { store, c in try store.addEmail(owner.id, address: "evil@attacker.example", verified: true, actor: actor, in: c) }
        await self.expectRefused(.outranked) { store, c in try store.addEmail(owner.id, address: "evil@attacker.example", verified: false, actor: actor, in: c) }
        let ownerEmail = try #require(owner.primaryEmail)
        await self.expectRefused(.outranked) { store, c in try store.setPrimaryEmail(owner.id, emailID: ownerEmail.id, actor: actor, in: c) }
        await self.expectRefused(.outranked) { store, c in try store.storePasswordHash(owner.id, hash: "x", actor: actor, revokeSessions: true, in: c) }
        await self.expectRefused(.outranked) { store, c in try store.revokeSessions(owner.id, actor: actor, in: c) }
        var rename = DirectoryStore.UserChanges()
        rename.name = "Pwned"
        await self.expectRefused(.outranked) { [rename] store, c in try store.updateUser(owner.id, changes: rename, actor: actor, in: c) }
        await self.expectRefused(.ownerOnly) { store, c in
            try store.createUser(.init(name: "Sock Puppet", role: "admin", email: "puppet@attacker.example"), actor: actor, in: c)
        }
        let unchanged = try await self.directory.run { store, c in try store.user(owner.id, in: c) }
        #expect(unchanged == owner, "nothing about the owner changed")
        let keys = try await self.directory.run { _, c in try c.queryFirst("SELECT count(*) AS n FROM api_keys")?.int("n") }
        #expect(keys == 0)
    }

    @Test("an equal rank is not below: an admin cannot manage another admin")
    func equalRank() async throws {
        let other = try await self.directory.run { store, c in
            try store.createUser(.init(name: "Other Admin", role: "admin", email: "other@example.com"), actor: .system, in: c)
        }
        let actor = self.asAdmin
        await self.expectRefused(.outranked) { store, c in try store.setState(other.id, .disabled, actor: actor, in: c) }
    }

    @Test("what an admin may do: manage those below, grant roles below their own, lower their own role; an owner grants admin")
    func allowed() async throws {
        let (agent, actor) = (self.agent, self.asAdmin)
        var demote = DirectoryStore.UserChanges()
        demote.role = "collaborator"
        let demoted = try await self.directory.run { [demote] store, c in try store.updateUser(agent.id, changes: demote, actor: actor, in: c) }
        #expect(demoted.role == "collaborator")
        _ = try await self.directory.run { store, c in try store.setState(agent.id, .disabled, actor: actor, in: c) }
        _ = try await self.directory.run { store, c in
            try store.createUser(.init(name: "New Agent", role: "agent", email: "new.agent@example.com"), actor: actor, in: c)
        }
        let (ownerActor, adminID) = (ActorInfo(userID: self.owner.id), self.admin.id)
        var promote = DirectoryStore.UserChanges()
        promote.role = "admin"
        let promoted = try await self.directory.run { [promote] store, c in try store.updateUser(agent.id, changes: promote, actor: ownerActor, in: c) }
        #expect(promoted.role == "admin")
        let lowered = try await self.directory.run { [demote] store, c in try store.updateUser(adminID, changes: demote, actor: actor, in: c) }
        #expect(lowered.role == "collaborator", "lowering one's own role is allowed")
    }

    @Test("addresses added by someone else stay unverified until their owner confirms; an unverified address never becomes primary")
    func addresses() async throws {
        let (agent, actor) = (self.agent, self.asAdmin)
        await self.expectRefused(.unverifiedUntilConfirmed) { store, c in
            try store.addEmail(agent.id, address: "agnes@elsewhere.example", verified: true, actor: actor, in: c)
        }
        let added = try await self.directory.run { store, c in try store.addEmail(agent.id, address: "agnes@elsewhere.example", verified: false, actor: actor, in: c) }
        let address = try #require(added.emails.first { $0.address == "agnes@elsewhere.example" })
        #expect(!address.verified)
        await #expect(throws: DirectoryError.self) {
            try await self.directory.run { store, c in try store.setPrimaryEmail(agent.id, emailID: address.id, actor: actor, in: c) }
        }
        await self.expectRefused(.unverifiedUntilConfirmed) { store, c in try store.markEmailVerified(agent.id, emailID: address.id, actor: actor, in: c) }
        let confirmed = try await self.directory.run { store, c in
            try store.markEmailVerified(agent.id, emailID: address.id, actor: ActorInfo(userID: agent.id), in: c)
        }
        #expect(confirmed.emails.first { $0.id == address.id }?.verified == true)
        let moved = try await self.directory.run { store, c in try store.setPrimaryEmail(agent.id, emailID: address.id, actor: actor, in: c) }
        #expect(moved.primaryEmail?.address == "agnes@elsewhere.example")
    }

    @Test("API keys: made only by their user; disabling revokes them for good; an owner revokes anyone's")
    func keys() async throws {
        let (agent, actor) = (self.agent, self.asAdmin)
        let (key, record) = try await self.directory.run { store, c in
            try store.createAPIKey(agent.id, name: "laptop", lifetime: nil, actor: ActorInfo(userID: agent.id), in: c)
        }
        #expect(try await self.directory.run { store, c in try store.authenticateAPIKey(key, in: c) } != nil)
        _ = try await self.directory.run { store, c in try store.setState(agent.id, .disabled, actor: actor, in: c) }
        _ = try await self.directory.run { store, c in try store.setState(agent.id, .active, actor: actor, in: c) }
        #expect(try await self.directory.run { store, c in try store.authenticateAPIKey(key, in: c) } == nil, "enabling again does not bring the key back")
        let revoked = try await self.directory.run { store, c in try store.revokeAPIKey(record.id, actor: actor, in: c) }
        #expect(revoked.revokedAt != nil)

        let (adminID, ownerActor) = (self.admin.id, ActorInfo(userID: self.owner.id))
        let (_, adminKey) = try await self.directory.run { store, c in try store.createAPIKey(adminID, name: "ci", lifetime: nil, actor: actor, in: c) }
        let (_, ownerKey) = try await self.directory.run { [owner] store, c in try store.createAPIKey(owner.id, name: "owner", lifetime: nil, actor: ownerActor, in: c) }
        await self.expectRefused(.outranked) { store, c in try store.revokeAPIKey(ownerKey.id, actor: actor, in: c) }
        let byOwner = try await self.directory.run { store, c in try store.revokeAPIKey(adminKey.id, actor: ownerActor, in: c) }
        #expect(byOwner.revokedAt != nil)
    }

    @Test("a disabled or unknown actor acts on nobody")
    func inactiveActor() async throws {
        let agent = self.agent
        await self.expectRefused(.actorInactive) { store, c in try store.setState(agent.id, .disabled, actor: ActorInfo(userID: "u_nobody"), in: c) }
    }

    @Test(arguments: [("owner", true, 4), ("admin", true, 3), ("agent", true, 2), ("collaborator", true, 1), ("customer", false, 0), ("support", true, 2), ("partner", false, 0)])
    func ranks(role: String, staff: Bool, rank: Int) {
        #expect(RoleRank.of(role: role, staff: staff) == rank)
    }
}
