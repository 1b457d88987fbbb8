import RekeySQLite

/// Roles are ranked: owner > admin > agent > collaborator > customer. A custom role ranks as an
/// agent when it is a staff role and as a customer otherwise, so no custom role reaches admin.
package enum RoleRank {
    package static func of(role: String, staff: Bool) -> Int {
        switch BuiltinRole(rawValue: role) {
        case .owner: return 4
        case .admin: return 3
        case .agent: return 2
        case .collaborator: return 1
        case .customer: return 0
        case nil: return staff ? 2 : 0
        }
    }

    package static func of(_ user: UserRecord) -> Int {
        Self.of(role: user.role, staff: user.staff)
    }
}

/// Why an admin action was refused; the code reaches the caller as the `refusal` trailer and the
/// admin API's error code.
package enum Refusal: String, Sendable, Hashable {
    /// The target's role is equal to or above the actor's.
    case outranked
    /// Only an owner grants the admin or owner role (and nobody grants above their own rank).
    case ownerOnly = "owner_only"
    /// API keys are made only by the user they belong to.
    case ownKeysOnly = "own_keys_only"
    /// An address added by someone else stays unverified until its owner confirms it.
    case unverifiedUntilConfirmed = "unverified_until_confirmed"
    /// The actor is not an active user.
    case actorInactive = "actor_inactive"
    /// The actor's role lacks the permission the action needs.
    case missingPermission = "missing_permission"
}

extension DirectoryStore {
    /// The acting user, or nil for the system itself (bootstrap, imports run by ops, the flows a
    /// user runs on their own account are made with their own id).
    func actingUser(_ actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord? {
        guard !actor.userID.isEmpty else { return nil }
        guard let user = Self.userWithEmails(try connection.query(UserByID.self, [.text(actor.userID)])) else {
            throw DirectoryError.refused(.actorInactive, message: "the acting user does not exist")
        }
        guard user.state == .active else {
            throw DirectoryError.refused(.actorInactive, message: "the acting user is disabled")
        }
        return user
    }

    /// Refuses unless `actor` may manage `target`: the system, the user themselves, or someone of
    /// a strictly higher rank.
    func authorize(_ actor: ActorInfo, toManage target: UserRecord, in connection: any SQLConnection) throws {
        guard let acting = try self.actingUser(actor, in: connection), acting.id != target.id else { return }
        guard RoleRank.of(acting) > RoleRank.of(target) else {
            throw DirectoryError.refused(.outranked, message: "\(target.name)'s role (\(target.role)) is not below yours (\(acting.role)); ask someone who outranks them")
        }
    }

    /// Refuses unless the acting user's role carries `permission` (the system always may).
    func authorize(_ actor: ActorInfo, holding permission: String, in connection: any SQLConnection) throws {
        guard let acting = try self.actingUser(actor, in: connection) else { return }
        guard try self.role(named: acting.role, in: connection).permissions.contains(permission) else {
            throw DirectoryError.refused(.missingPermission, message: "this needs the permission \(permission)")
        }
    }

    /// Refuses a role grant above what the actor may give: an owner gives any role; anyone else
    /// only roles strictly below their own (so only an owner grants admin or owner). Lowering
    /// one's own role is allowed.
    func authorize(_ actor: ActorInfo, toGrant role: RoleRecord, to target: UserRecord?, in connection: any SQLConnection) throws {
        try Self.checkGrant(role, by: try self.actingUser(actor, in: connection), to: target)
    }

    /// The grant rule itself, for callers that looked the acting user up once (imports).
    static func checkGrant(_ role: RoleRecord, by acting: UserRecord?, to target: UserRecord?) throws {
        guard let acting, acting.role != BuiltinRole.owner.rawValue else { return }
        let granted = RoleRank.of(role: role.name, staff: role.staff)
        let mine = RoleRank.of(acting)
        if target?.id == acting.id, granted <= mine { return }
        guard granted < mine else {
            throw DirectoryError.refused(.ownerOnly, message: "only an owner grants the role \(role.name)")
        }
    }
}

extension DirectoryStore {
    /// Warnings for an admin who just added `address`: other users whose address looks the same
    /// to a person (same look-alike skeleton, different address). Empty when none does.
    package func lookAlikeWarnings(for address: String, excludingUser userID: String, in connection: any SQLConnection) throws -> [String] {
        let normalized = (try? DirectoryValidation.email(address).normalized) ?? address.lowercased()
        let rows = try connection.query(
            "SELECT e.address, e.normalized, u.id, u.name FROM emails e JOIN users u ON u.id = e.user_id WHERE e.skeleton = ? AND e.user_id != ? LIMIT 5",
            .text(LookAlike.skeleton(normalized)), .text(userID)
        )
        return rows.compactMap { row in
            guard row.string("normalized") != normalized, let other = row.string("address"), let id = row.string("id") else { return nil }
            return "\(address) looks like \(other), the address of \(row.string("name") ?? "another user") (\(id)); make sure it is the one meant"
        }
    }

    /// Gives addresses stored before skeletons existed theirs; returns how many (run at start).
    package func fillLookAlikeSkeletons(in connection: any SQLConnection) throws -> Int {
        var filled = 0
        while true {
            let rows = try connection.query("SELECT id, normalized FROM emails WHERE skeleton IS NULL LIMIT 1000")
            guard !rows.isEmpty else { return filled }
            for row in rows {
                guard let id = row.string("id") else { continue }
                try connection.run("UPDATE emails SET skeleton = ? WHERE id = ?", .text(LookAlike.skeleton(row.string("normalized") ?? "")), .text(id))
            }
            filled += rows.count
        }
    }
}
