import RekeyClock
import RekeyCrypto
import RekeySQLite

/// The directory's storage and rules. Every method is synchronous and meant to run on the
/// database's thread (``DirectoryService`` calls it through `SQLiteDatabase.withConnection`);
/// changes run in a transaction and write an audit record.
package struct DirectoryStore: Sendable {
    package struct Configuration: Sendable {
        package var sessionLifetime: Duration
        package var apiKeyLifetime: Duration
        /// Failed sign-ins allowed per client address within `signInWindow`.
        package var signInLimit: Int
        package var signInWindow: Duration
        /// Failed sign-ins per account before each further one must wait (see ``SignInThrottle``).
        package var signInAccountFreeAttempts: Int
        package var signInAccountDelay: Duration

        package init(
            sessionLifetime: Duration = .seconds(12 * 3600),
            apiKeyLifetime: Duration = .seconds(365 * 86400),
            signInLimit: Int = 20,
            signInWindow: Duration = .seconds(900),
            signInAccountFreeAttempts: Int = 5,
            signInAccountDelay: Duration = .seconds(1)
        ) {
            self.sessionLifetime = sessionLifetime
            self.apiKeyLifetime = apiKeyLifetime
            self.signInLimit = signInLimit
            self.signInWindow = signInWindow
            self.signInAccountFreeAttempts = signInAccountFreeAttempts
            self.signInAccountDelay = signInAccountDelay
        }

        package var throttle: SignInThrottle {
            SignInThrottle(
                addressLimit: self.signInLimit, window: self.signInWindow,
                accountFreeAttempts: self.signInAccountFreeAttempts, accountDelay: self.signInAccountDelay
            )
        }
    }

    package let configuration: Configuration
    package let clock: any WallClock

    package init(configuration: Configuration = Configuration(), clock: any WallClock) {
        self.configuration = configuration
        self.clock = clock
    }

    package static let migrations = [
        SQLiteMigration(version: 1, name: "directory", sql: """
            CREATE TABLE roles (
                name TEXT PRIMARY KEY,
                staff INTEGER NOT NULL,
                builtin INTEGER NOT NULL
            );
            CREATE TABLE role_permissions (
                role TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
                permission TEXT NOT NULL,
                PRIMARY KEY (role, permission)
            );
            INSERT INTO roles VALUES ('owner', 1, 1), ('admin', 1, 1), ('agent', 1, 1), ('collaborator', 1, 1), ('customer', 0, 1);
            INSERT INTO role_permissions VALUES ('owner', 'users.manage'), ('admin', 'users.manage');
            CREATE TABLE organizations (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                name_key TEXT NOT NULL UNIQUE,
                domains TEXT NOT NULL DEFAULT '',
                created_at INTEGER NOT NULL
            );
            CREATE TABLE users (
                seq INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                role TEXT NOT NULL REFERENCES roles (name),
                organization_id TEXT REFERENCES organizations (id),
                state INTEGER NOT NULL,
                locale TEXT NOT NULL,
                password_hash TEXT,
                password_changed_at INTEGER,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            );
            CREATE INDEX users_by_role ON users (role, seq);
            CREATE INDEX users_by_organization ON users (organization_id, seq);
            CREATE TABLE emails (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                address TEXT NOT NULL,
                normalized TEXT NOT NULL UNIQUE,
                is_primary INTEGER NOT NULL,
                verified INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );
            CREATE INDEX emails_by_user ON emails (user_id);
            CREATE UNIQUE INDEX emails_one_primary ON emails (user_id) WHERE is_primary = 1;
            CREATE VIRTUAL TABLE user_search USING fts5 (name, emails, tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3');
            CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                hash BLOB NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                last_used_at INTEGER,
                revoked_at INTEGER
            );
            CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                hash BLOB NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                expires_at INTEGER NOT NULL,
                revoked_at INTEGER
            );
            CREATE INDEX sessions_by_user ON sessions (user_id);
            CREATE TABLE audit (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                action TEXT NOT NULL,
                target TEXT NOT NULL,
                detail TEXT NOT NULL
            );
            CREATE INDEX audit_by_target ON audit (target, at);
            """),
        SQLiteMigration(version: 2, name: "audit pages by id", sql: """
            DROP INDEX audit_by_target;
            CREATE INDEX audit_by_target ON audit (target, id);
            """),
        SQLiteMigration(version: 3, name: "search prefixes", sql: """
            CREATE TABLE search_prefixes (
                prefix TEXT NOT NULL,
                tier INTEGER NOT NULL,
                name_key TEXT NOT NULL,
                seq INTEGER NOT NULL,
                staff INTEGER NOT NULL,
                PRIMARY KEY (prefix, tier, name_key, seq)
            ) WITHOUT ROWID;
            CREATE INDEX search_prefixes_staff ON search_prefixes (prefix, tier, name_key, seq) WHERE staff = 1;
            CREATE TABLE directory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO directory_meta SELECT 'search_prefixes_pending', '1' WHERE EXISTS (SELECT 1 FROM users);
            """),
        SQLiteMigration(version: 4, name: "sign-in failures", sql: """
            CREATE TABLE sign_in_failures (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                client_address TEXT NOT NULL
            );
            CREATE INDEX sign_in_failures_by_address ON sign_in_failures (client_address, at);
            CREATE INDEX sign_in_failures_by_time ON sign_in_failures (at);
            """),
        SQLiteMigration(version: 5, name: "sign-in attempts per account", sql: """
            CREATE TABLE sign_in_account_failures (
                id INTEGER PRIMARY KEY,
                at INTEGER NOT NULL,
                account TEXT NOT NULL
            );
            CREATE INDEX sign_in_account_failures_by_account ON sign_in_account_failures (account, at);
            CREATE INDEX sign_in_account_failures_by_time ON sign_in_account_failures (at);
            """),
        SQLiteMigration(version: 6, name: "staged imports", sql: """
            CREATE TABLE imports (
                id TEXT PRIMARY KEY,
                import_key TEXT UNIQUE,
                partial INTEGER NOT NULL,
                actor_id TEXT NOT NULL,
                actor_address TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                outcome BLOB
            );
            CREATE TABLE import_chunks (
                import_id TEXT NOT NULL,
                sequence INTEGER NOT NULL,
                data BLOB NOT NULL,
                PRIMARY KEY (import_id, sequence)
            );
            """),
        // Filled in by `fillLookAlikeSkeletons` at start for addresses stored before.
        SQLiteMigration(version: 7, name: "look-alike skeletons", sql: """
            ALTER TABLE emails ADD COLUMN skeleton TEXT;
            CREATE INDEX emails_by_skeleton ON emails (skeleton);
            """),
    ]

    // MARK: Users

    package struct NewUser: Sendable {
        package var name: String
        package var role: String
        package var organizationID: String = ""
        package var locale: String = ""
        package var email: String
        package var emailVerified = false

        package init(name: String, role: String, email: String) {
            self.name = name
            self.role = role
            self.email = email
        }
    }

    package func createUser(_ new: NewUser, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        let name = try DirectoryValidation.name(new.name, field: "name")
        let locale = try DirectoryValidation.locale(new.locale)
        let email = try DirectoryValidation.email(new.email)
        if !new.organizationID.isEmpty {
            try DirectoryValidation.id(new.organizationID, prefix: "o_", field: "organization_id")
        }
        return try connection.transaction { connection in
            try self.authorize(actor, toGrant: try self.role(named: new.role, in: connection), to: nil, in: connection)
            if !new.organizationID.isEmpty {
                _ = try self.organization(new.organizationID, in: connection)
            }
            try self.ensureEmailIsFree(email.normalized, field: "email", in: connection)
            let now = self.clock.nowMilliseconds()
            let id = try Self.makeID("u_")
            try connection.run(
                "INSERT INTO users (id, name, role, organization_id, state, locale, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                .text(id), .text(name), .text(new.role), new.organizationID.isEmpty ? .null : .text(new.organizationID),
                .integer(UserStateValue.active.rawValue), .text(locale), .integer(now), .integer(now)
            )
            try connection.run(
                "INSERT INTO emails (id, user_id, address, normalized, is_primary, verified, created_at, skeleton) VALUES (?, ?, ?, ?, 1, ?, ?, ?)",
                .text(try Self.makeID("e_")), .text(id), .text(email.address), .text(email.normalized), .integer(new.emailVerified ? 1 : 0), .integer(now),
                .text(LookAlike.skeleton(email.normalized))
            )
            try self.reindex(id, in: connection)
            try self.audit(actor, "user.create", target: id, detail: "role \(new.role)", in: connection)
            return try self.user(id, in: connection)
        }
    }

    package func user(_ id: String, in connection: SQLiteConnection) throws -> UserRecord {
        try DirectoryValidation.id(id, prefix: "u_", field: "user_id")
        guard let row = try connection.queryFirst(Self.userSelect + " WHERE u.id = ?", .text(id)) else {
            throw DirectoryError.notFound("no user has the id \(id)")
        }
        return try self.userRecord(row, in: connection)
    }

    package struct UserChanges: Sendable {
        package var name: String?
        package var role: String?
        /// `.some("")` removes the organization.
        package var organizationID: String?
        package var locale: String?

        package init() {}
    }

    package func updateUser(_ id: String, changes: UserChanges, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        let name = try changes.name.map { try DirectoryValidation.name($0, field: "name") }
        let locale = try changes.locale.map { try DirectoryValidation.locale($0) }
        if let organizationID = changes.organizationID, !organizationID.isEmpty {
            try DirectoryValidation.id(organizationID, prefix: "o_", field: "organization_id")
        }
        return try connection.transaction { connection in
            let user = try self.user(id, in: connection)
            try self.authorize(actor, toManage: user, in: connection)
            var changed: [String] = []
            if let name, name != user.name {
                try connection.run("UPDATE users SET name = ? WHERE id = ?", .text(name), .text(id))
                changed.append("name")
            }
            if let role = changes.role, role != user.role {
                try self.authorize(actor, toGrant: try self.role(named: role, in: connection), to: user, in: connection)
                if user.role == BuiltinRole.owner.rawValue, user.state == .active {
                    try self.ensureAnotherActiveOwner(than: id, in: connection, doing: "change the role of")
                }
                try connection.run("UPDATE users SET role = ? WHERE id = ?", .text(role), .text(id))
                changed.append("role \(user.role) → \(role)")
            }
            if let organizationID = changes.organizationID, organizationID != (user.organizationID ?? "") {
                if !organizationID.isEmpty {
                    _ = try self.organization(organizationID, in: connection)
                }
                try connection.run("UPDATE users SET organization_id = ? WHERE id = ?", organizationID.isEmpty ? .null : .text(organizationID), .text(id))
                changed.append("organization")
            }
            if let locale, locale != user.locale {
                try connection.run("UPDATE users SET locale = ? WHERE id = ?", .text(locale), .text(id))
                changed.append("locale")
            }
            if !changed.isEmpty {
                try connection.run("UPDATE users SET updated_at = ? WHERE id = ?", .integer(self.clock.nowMilliseconds()), .text(id))
                try self.reindex(id, in: connection)
                try self.audit(actor, "user.update", target: id, detail: changed.joined(separator: ", "), in: connection)
            }
            return try self.user(id, in: connection)
        }
    }

    /// Enables or disables a user; disabling revokes their sessions. The last active owner stays.
    package func setState(_ id: String, _ state: UserStateValue, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        try connection.transaction { connection in
            let user = try self.user(id, in: connection)
            try self.authorize(actor, toManage: user, in: connection)
            guard user.state != state else { return user }
            if state == .disabled, user.role == BuiltinRole.owner.rawValue {
                try self.ensureAnotherActiveOwner(than: id, in: connection, doing: "disable")
            }
            let now = self.clock.nowMilliseconds()
            try connection.run("UPDATE users SET state = ?, updated_at = ? WHERE id = ?", .integer(state.rawValue), .integer(now), .text(id))
            if state == .disabled {
                // For good: enabling the user again brings back neither sessions nor API keys.
                try connection.run("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", .integer(now), .text(id))
                try connection.run("UPDATE api_keys SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", .integer(now), .text(id))
            }
            try self.audit(actor, state == .disabled ? "user.disable" : "user.enable", target: id, detail: "", in: connection)
            return try self.user(id, in: connection)
        }
    }

    /// The user one of whose addresses is `email` (any case), and the identity it matched.
    package func findUser(byEmail email: String, in connection: SQLiteConnection) throws -> (user: UserRecord, matched: EmailRecord)? {
        let normalized = try DirectoryValidation.email(email).normalized
        guard let row = try connection.queryFirst("SELECT id, user_id FROM emails WHERE normalized = ?", .text(normalized)),
              let userID = row.string("user_id"), let emailID = row.string("id")
        else { return nil }
        let user = try self.user(userID, in: connection)
        guard let matched = user.emails.first(where: { $0.id == emailID }) else { return nil }
        return (user, matched)
    }

    // MARK: Listing

    package struct ListFilter: Sendable {
        package var role: String = ""
        package var organizationID: String = ""
        package var state: UserStateValue?

        package init() {}
    }

    /// Every user, in creation order, with a cursor that stays valid while users are added.
    package func listUsers(filter: ListFilter, pageSize: Int, pageToken: String, in connection: SQLiteConnection) throws -> (users: [UserRecord], next: String) {
        guard (1...500).contains(pageSize) else {
            throw DirectoryError.invalidArgument("page_size must be from 1 to 500 (0 for 50)")
        }
        var after: Int64 = 0
        if !pageToken.isEmpty {
            guard let decoded = Base64URL.decode(pageToken).flatMap({ String(validating: $0, as: UTF8.self) }),
                  decoded.hasPrefix("l1|"), let value = Int64(decoded.dropFirst(3)), value > 0
            else {
                throw DirectoryError.invalidArgument("page_token is not one this service gave out")
            }
            after = value
        }
        var sql = Self.userSelect + " WHERE u.seq > ?"
        var bindings: [SQLiteValue] = [.integer(after)]
        if !filter.role.isEmpty {
            _ = try self.role(named: filter.role, in: connection)
            sql += " AND u.role = ?"
            bindings.append(.text(filter.role))
        }
        if !filter.organizationID.isEmpty {
            try DirectoryValidation.id(filter.organizationID, prefix: "o_", field: "organization_id")
            sql += " AND u.organization_id = ?"
            bindings.append(.text(filter.organizationID))
        }
        if let state = filter.state {
            sql += " AND u.state = ?"
            bindings.append(.integer(state.rawValue))
        }
        sql += " ORDER BY u.seq LIMIT ?"
        bindings.append(.integer(Int64(pageSize + 1)))
        let rows = try connection.query(sql, bindings)
        let users = try rows.prefix(pageSize).map { try self.userRecord($0, in: connection) }
        var next = ""
        if rows.count > pageSize, let last = rows[pageSize - 1].int("seq") {
            next = Base64URL.encode(Array("l1|\(last)".utf8))
        }
        return (users, next)
    }

    // MARK: Email identities

    package func addEmail(_ userID: String, address: String, verified: Bool, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        let email = try DirectoryValidation.email(address, field: "address")
        return try connection.transaction { connection in
            let user = try self.user(userID, in: connection)
            try self.authorize(actor, toManage: user, in: connection)
            if verified, !actor.userID.isEmpty {
                throw DirectoryError.refused(
                    .unverifiedUntilConfirmed,
                    message: "an address added through the directory stays unverified until its owner confirms it; send a verification email"
                )
            }
            guard user.emails.count < 20 else {
                throw DirectoryError.failedPrecondition("a user can have at most 20 email addresses")
            }
            try self.ensureEmailIsFree(email.normalized, field: "address", in: connection)
            try connection.run(
                "INSERT INTO emails (id, user_id, address, normalized, is_primary, verified, created_at, skeleton) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                .text(try Self.makeID("e_")), .text(userID), .text(email.address), .text(email.normalized),
                .integer(verified ? 1 : 0), .integer(self.clock.nowMilliseconds()), .text(LookAlike.skeleton(email.normalized))
            )
            try self.touch(userID, in: connection)
            try self.audit(actor, "email.add", target: userID, detail: email.address, in: connection)
            return try self.user(userID, in: connection)
        }
    }

    package func removeEmail(_ userID: String, emailID: String, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        try connection.transaction { connection in
            let (user, email) = try self.email(emailID, of: userID, in: connection)
            try self.authorize(actor, toManage: user, in: connection)
            guard user.emails.count > 1 else {
                throw DirectoryError.failedPrecondition("\(email.address) is the user's only email address; add another before removing it")
            }
            guard !email.isPrimary else {
                throw DirectoryError.failedPrecondition("\(email.address) is the primary address; make another address primary first")
            }
            try connection.run("DELETE FROM emails WHERE id = ?", .text(emailID))
            try self.touch(userID, in: connection)
            try self.audit(actor, "email.remove", target: userID, detail: email.address, in: connection)
            return try self.user(userID, in: connection)
        }
    }

    package func setPrimaryEmail(_ userID: String, emailID: String, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        try connection.transaction { connection in
            let (user, email) = try self.email(emailID, of: userID, in: connection)
            try self.authorize(actor, toManage: user, in: connection)
            guard !email.isPrimary else { return try self.user(userID, in: connection) }
            guard email.verified else {
                throw DirectoryError.failedPrecondition("\(email.address) is not verified; it can become primary once its owner confirms it")
            }
            try connection.run("UPDATE emails SET is_primary = 0 WHERE user_id = ? AND is_primary = 1", .text(userID))
            try connection.run("UPDATE emails SET is_primary = 1 WHERE id = ?", .text(emailID))
            try self.touch(userID, in: connection)
            try self.audit(actor, "email.primary", target: userID, detail: email.address, in: connection)
            return try self.user(userID, in: connection)
        }
    }

    package func markEmailVerified(_ userID: String, emailID: String, actor: ActorInfo, in connection: SQLiteConnection) throws -> UserRecord {
        try connection.transaction { connection in
            let (user, email) = try self.email(emailID, of: userID, in: connection)
            if !actor.userID.isEmpty, actor.userID != user.id {
                throw DirectoryError.refused(.unverifiedUntilConfirmed, message: "only the address's owner confirms it, through the verification email")
            }
            guard !email.verified else { return try self.user(userID, in: connection) }
            try connection.run("UPDATE emails SET verified = 1 WHERE id = ?", .text(emailID))
            try self.touch(userID, in: connection)
            try self.audit(actor, "email.verify", target: userID, detail: email.address, in: connection)
            return try self.user(userID, in: connection)
        }
    }

    // MARK: Organizations

    package func createOrganization(name: String, domains: [String], actor: ActorInfo, in connection: SQLiteConnection) throws -> OrganizationRecord {
        let name = try DirectoryValidation.name(name, field: "name")
        let domains = try Self.validDomains(domains)
        return try connection.transaction { connection in
            if try connection.queryFirst("SELECT id FROM organizations WHERE name_key = ?", .text(name.lowercased())) != nil {
                throw DirectoryError.alreadyExists("an organization named \(name) exists already (name)")
            }
            let record = OrganizationRecord(id: try Self.makeID("o_"), name: name, domains: domains, createdAt: self.clock.nowMilliseconds())
            try connection.run(
                "INSERT INTO organizations (id, name, name_key, domains, created_at) VALUES (?, ?, ?, ?, ?)",
                .text(record.id), .text(name), .text(name.lowercased()), .text(domains.joined(separator: ",")), .integer(record.createdAt)
            )
            try self.audit(actor, "organization.create", target: record.id, detail: name, in: connection)
            return record
        }
    }

    package func organization(_ id: String, in connection: SQLiteConnection) throws -> OrganizationRecord {
        try DirectoryValidation.id(id, prefix: "o_", field: "organization_id")
        guard let row = try connection.queryFirst("SELECT * FROM organizations WHERE id = ?", .text(id)) else {
            throw DirectoryError.notFound("no organization has the id \(id)")
        }
        return Self.organizationRecord(row)
    }

    package func organizations(in connection: SQLiteConnection) throws -> [OrganizationRecord] {
        try connection.query("SELECT * FROM organizations ORDER BY name COLLATE NOCASE").map(Self.organizationRecord)
    }

    /// Renames an organization and/or replaces its domains (nil leaves that part alone).
    package func updateOrganization(_ id: String, name: String?, domains: [String]?, actor: ActorInfo, in connection: SQLiteConnection) throws -> OrganizationRecord {
        let name = try name.map { try DirectoryValidation.name($0, field: "name") }
        let domains = try domains.map(Self.validDomains)
        return try connection.transaction { connection in
            let organization = try self.organization(id, in: connection)
            var changed: [String] = []
            if let name, name != organization.name {
                if let other = try connection.queryFirst("SELECT id FROM organizations WHERE name_key = ?", .text(name.lowercased()))?.string("id"), other != id {
                    throw DirectoryError.alreadyExists("an organization named \(name) exists already (name)")
                }
                try connection.run("UPDATE organizations SET name = ?, name_key = ? WHERE id = ?", .text(name), .text(name.lowercased()), .text(id))
                changed.append("name \(organization.name) → \(name)")
            }
            if let domains, domains != organization.domains {
                try connection.run("UPDATE organizations SET domains = ? WHERE id = ?", .text(domains.joined(separator: ",")), .text(id))
                changed.append("domains \(domains.joined(separator: ","))")
            }
            if !changed.isEmpty {
                try self.audit(actor, "organization.update", target: id, detail: changed.joined(separator: ", "), in: connection)
            }
            return try self.organization(id, in: connection)
        }
    }

    /// Deletes an organization nobody belongs to any more.
    package func deleteOrganization(_ id: String, actor: ActorInfo, in connection: SQLiteConnection) throws {
        try connection.transaction { connection in
            let organization = try self.organization(id, in: connection)
            let members = try connection.queryFirst("SELECT count(*) AS n FROM users WHERE organization_id = ?", .text(id))?.int("n") ?? 0
            guard members == 0 else {
                throw DirectoryError.failedPrecondition(
                    "\(members) user\(members == 1 ? "" : "s") still belong to \(organization.name); move them to another organization first"
                )
            }
            try connection.run("DELETE FROM organizations WHERE id = ?", .text(id))
            try self.audit(actor, "organization.delete", target: id, detail: organization.name, in: connection)
        }
    }

    static func validDomains(_ domains: [String]) throws -> [String] {
        guard domains.count <= 50 else {
            throw DirectoryError.invalidArgument("an organization can have at most 50 domains")
        }
        return try domains.map { domain -> String in
            let lowered = domain.trimmed.lowercased()
            guard DirectoryValidation.isHostname(lowered), lowered.contains(".") else {
                throw DirectoryError.invalidArgument("domain `\(domain.prefix(80))` is not a domain name such as example.com")
            }
            return lowered
        }
    }

    // MARK: Audit

    /// Audit records, newest first, optionally of one target.
    package func auditRecords(target: String, pageSize: Int, pageToken: String, in connection: SQLiteConnection) throws -> (records: [AuditRecord], next: String) {
        guard (1...500).contains(pageSize) else {
            throw DirectoryError.invalidArgument("page_size must be from 1 to 500 (0 for 50)")
        }
        var before = Int64.max
        if !pageToken.isEmpty {
            guard let decoded = Base64URL.decode(pageToken).flatMap({ String(validating: $0, as: UTF8.self) }),
                  decoded.hasPrefix("a1|"), let value = Int64(decoded.dropFirst(3)), value > 0
            else {
                throw DirectoryError.invalidArgument("page_token is not one this service gave out")
            }
            before = value
        }
        let rows = try target.isEmpty
            ? connection.query("SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", .integer(before), .integer(Int64(pageSize + 1)))
            : connection.query(
                "SELECT * FROM audit WHERE target = ? AND id < ? ORDER BY id DESC LIMIT ?", .text(target), .integer(before), .integer(Int64(pageSize + 1))
            )
        let records = rows.prefix(pageSize).map { row in
            AuditRecord(
                id: row.int("id") ?? 0, at: row.int("at") ?? 0, actorUserID: row.string("actor_id") ?? "",
                actorClientAddress: row.string("actor_address") ?? "", action: row.string("action") ?? "",
                target: row.string("target") ?? "", detail: row.string("detail") ?? ""
            )
        }
        let next = rows.count > pageSize ? Base64URL.encode(Array("a1|\(records[pageSize - 1].id)".utf8)) : ""
        return (records, next)
    }

    // MARK: Roles and permissions

    package func createRole(name: String, permissions: [String], staff: Bool, actor: ActorInfo, in connection: SQLiteConnection) throws -> RoleRecord {
        try DirectoryValidation.roleName(name)
        let known = Set(Permissions.all.map(\.name))
        for permission in permissions where !known.contains(permission) {
            throw DirectoryError.invalidArgument("unknown permission `\(permission.prefix(80))`; known: \(known.sorted().joined(separator: ", "))")
        }
        return try connection.transaction { connection in
            if try connection.queryFirst("SELECT name FROM roles WHERE name = ?", .text(name)) != nil {
                throw DirectoryError.alreadyExists("a role named \(name) exists already (name)")
            }
            try connection.run("INSERT INTO roles (name, staff, builtin) VALUES (?, ?, 0)", .text(name), .integer(staff ? 1 : 0))
            for permission in Set(permissions) {
                try connection.run("INSERT INTO role_permissions (role, permission) VALUES (?, ?)", .text(name), .text(permission))
            }
            try self.audit(actor, "role.create", target: name, detail: permissions.sorted().joined(separator: ","), in: connection)
            return try self.role(named: name, in: connection)
        }
    }

    package func roles(in connection: SQLiteConnection) throws -> [RoleRecord] {
        try connection.query("SELECT name FROM roles ORDER BY builtin DESC, name").compactMap { $0.string("name") }.map {
            try self.role(named: $0, in: connection)
        }
    }

    package func role(named name: String, in connection: SQLiteConnection) throws -> RoleRecord {
        guard !name.isEmpty else {
            throw DirectoryError.invalidArgument("role is required")
        }
        guard let row = try connection.queryFirst("SELECT * FROM roles WHERE name = ?", .text(name)) else {
            throw DirectoryError.invalidArgument("unknown role `\(name.prefix(80))`")
        }
        let permissions = try connection.query("SELECT permission FROM role_permissions WHERE role = ? ORDER BY permission", .text(name))
            .compactMap { $0.string("permission") }
        return RoleRecord(name: name, permissions: permissions, staff: row.int("staff") == 1, builtin: row.int("builtin") == 1)
    }

    /// Whether the user holds `permission`; never for disabled users.
    package func hasPermission(_ userID: String, _ permission: String, in connection: SQLiteConnection) throws -> Bool {
        guard Permissions.all.contains(where: { $0.name == permission }) else {
            throw DirectoryError.invalidArgument("unknown permission `\(permission.prefix(80))`")
        }
        let user = try self.user(userID, in: connection)
        guard user.state == .active else { return false }
        return try self.role(named: user.role, in: connection).permissions.contains(permission)
    }

    // MARK: Passwords

    /// The stored password hash of the user with address `email`, for verification. Nil when no
    /// active user with a password has that address.
    package func passwordCandidate(email: String, in connection: SQLiteConnection) throws -> (user: UserRecord, hash: String)? {
        guard let (user, _) = try? self.findUser(byEmail: email, in: connection),
              user.state == .active, let hash = user.passwordHash
        else { return nil }
        return (user, hash)
    }

    /// The attempt rows a sign-in reserved; a successful sign-in gives them back.
    package struct SignInReservation: Sendable, Hashable {
        var addressRow: Int64?
        var accountRow: Int64
    }

    /// Counts a sign-in attempt against the client address's and the account's limits before the
    /// password is checked, atomically (the database runs one piece of work at a time), so that
    /// no burst gets more passwords checked than the limits allow. Throws
    /// ``DirectoryError/signInLimited(retryAfter:)`` without counting when either limit is reached.
    package func reserveSignIn(clientAddress: String, email: String, in connection: SQLiteConnection) throws -> SignInReservation {
        let throttle = self.configuration.throttle
        let now = self.clock.nowMilliseconds()
        let since = now - throttle.window.milliseconds
        // The account is the typed address, normalized when it is one, so unknown accounts are
        // throttled exactly like known ones.
        let account = (try? DirectoryValidation.email(email).normalized) ?? String(email.lowercased().prefix(254))
        let accountAttempts = try connection.query(
            "SELECT at FROM sign_in_account_failures WHERE account = ? AND at > ? ORDER BY at DESC LIMIT ?",
            .text(account), .integer(since), .integer(Int64(throttle.accountAttemptsToRead))
        ).compactMap { $0.int("at") }
        if let seconds = throttle.accountRetryAfter(attempts: accountAttempts, now: now) {
            throw DirectoryError.signInLimited(retryAfter: seconds)
        }
        var addressRow: Int64?
        if !clientAddress.isEmpty {
            let address = String(clientAddress.prefix(64))
            let addressAttempts = try connection.query(
                "SELECT at FROM sign_in_failures WHERE client_address = ? AND at > ? ORDER BY at DESC LIMIT ?",
                .text(address), .integer(since), .integer(Int64(throttle.addressLimit))
            ).compactMap { $0.int("at") }
            if let seconds = throttle.addressRetryAfter(attempts: addressAttempts, now: now) {
                throw DirectoryError.signInLimited(retryAfter: seconds)
            }
            addressRow = try connection.queryFirst(
                "INSERT INTO sign_in_failures (at, client_address) VALUES (?, ?) RETURNING id", .integer(now), .text(address)
            )?.int("id")
        }
        let accountRow = try connection.queryFirst(
            "INSERT INTO sign_in_account_failures (at, account) VALUES (?, ?) RETURNING id", .integer(now), .text(account)
        )?.int("id") ?? 0
        return SignInReservation(addressRow: addressRow, accountRow: accountRow)
    }

    /// Gives back a successful sign-in's reservation and forgets attempts older than the window.
    package func releaseSignIn(_ reservation: SignInReservation, in connection: SQLiteConnection) throws {
        try connection.transaction { connection in
            if let row = reservation.addressRow {
                try connection.run("DELETE FROM sign_in_failures WHERE id = ?", .integer(row))
            }
            try connection.run("DELETE FROM sign_in_account_failures WHERE id = ?", .integer(reservation.accountRow))
        }
    }

    /// Forgets attempts older than the window (run after a refused sign-in, off the hot path).
    package func forgetOldSignIns(in connection: SQLiteConnection) throws {
        let before = self.clock.nowMilliseconds() - self.configuration.signInWindow.milliseconds
        try connection.transaction { connection in
            try connection.run("DELETE FROM sign_in_failures WHERE at <= ?", .integer(before))
            try connection.run("DELETE FROM sign_in_account_failures WHERE at <= ?", .integer(before))
        }
    }

    /// Stores a new password hash (computed by the caller, off this thread) and revokes sessions.
    package func storePasswordHash(_ userID: String, hash: String, actor: ActorInfo, revokeSessions: Bool, in connection: SQLiteConnection) throws -> Int64 {
        try connection.transaction { connection in
            try self.authorize(actor, toManage: try self.user(userID, in: connection), in: connection)
            let now = self.clock.nowMilliseconds()
            try connection.run(
                "UPDATE users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE id = ?",
                .text(hash), .integer(now), .integer(now), .text(userID)
            )
            if revokeSessions {
                try connection.run("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", .integer(now), .text(userID))
                try self.audit(actor, "password.set", target: userID, detail: "", in: connection)
            }
            return now
        }
    }

    /// Replaces a hash with a stronger one after a successful sign-in, if it did not change since.
    package func upgradePasswordHash(_ userID: String, from old: String, to new: String, in connection: SQLiteConnection) throws {
        try connection.run("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?", .text(new), .text(userID), .text(old))
    }

    // MARK: API keys

    package func createAPIKey(_ userID: String, name: String, lifetime: Duration?, actor: ActorInfo, in connection: SQLiteConnection) throws -> (key: String, record: APIKeyRecord) {
        let name = try DirectoryValidation.name(name, field: "name")
        let lifetime = lifetime ?? self.configuration.apiKeyLifetime
        return try connection.transaction { connection in
            let user = try self.user(userID, in: connection)
            if !actor.userID.isEmpty, actor.userID != user.id {
                throw DirectoryError.refused(.ownKeysOnly, message: "API keys are made only by the user they belong to")
            }
            guard user.state == .active else {
                throw DirectoryError.failedPrecondition("the user is disabled")
            }
            let key = "rk_" + (try SecretToken.generate()).value
            let now = self.clock.nowMilliseconds()
            let record = APIKeyRecord(id: try Self.makeID("k_"), userID: userID, name: name, createdAt: now, expiresAt: now + lifetime.milliseconds)
            try connection.run(
                "INSERT INTO api_keys (id, user_id, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                .text(record.id), .text(userID), .text(name), .blob(SecretToken.digest(of: key)), .integer(now), .integer(record.expiresAt)
            )
            try self.audit(actor, "api_key.create", target: userID, detail: "\(record.id) \(name)", in: connection)
            return (key, record)
        }
    }

    package func revokeAPIKey(_ keyID: String, actor: ActorInfo, in connection: SQLiteConnection) throws -> APIKeyRecord {
        try DirectoryValidation.id(keyID, prefix: "k_", field: "key_id")
        return try connection.transaction { connection in
            guard let row = try connection.queryFirst("SELECT * FROM api_keys WHERE id = ?", .text(keyID)) else {
                throw DirectoryError.notFound("no API key has the id \(keyID)")
            }
            // Your own keys, anyone's for an owner, and those of users you outrank.
            if let acting = try self.actingUser(actor, in: connection), acting.role != BuiltinRole.owner.rawValue {
                try self.authorize(actor, toManage: try self.user(row.string("user_id") ?? "", in: connection), in: connection)
            }
            if row.int("revoked_at") == nil {
                try connection.run("UPDATE api_keys SET revoked_at = ? WHERE id = ?", .integer(self.clock.nowMilliseconds()), .text(keyID))
                try self.audit(actor, "api_key.revoke", target: row.string("user_id") ?? "", detail: keyID, in: connection)
            }
            return Self.apiKeyRecord(try connection.queryFirst("SELECT * FROM api_keys WHERE id = ?", .text(keyID))!)
        }
    }

    /// The user and key for a presented API key; nil when it is unknown, revoked, expired, or its
    /// user is disabled.
    package func authenticateAPIKey(_ key: String, in connection: SQLiteConnection) throws -> (user: UserRecord, key: APIKeyRecord, permissions: [String])? {
        guard key.hasPrefix("rk_"), key.utf8.count == 46 else { return nil }
        let now = self.clock.nowMilliseconds()
        guard let row = try connection.queryFirst("SELECT * FROM api_keys WHERE hash = ?", .blob(SecretToken.digest(of: key))) else { return nil }
        let record = Self.apiKeyRecord(row)
        guard record.revokedAt == nil, record.expiresAt > now else { return nil }
        let user = try self.user(record.userID, in: connection)
        guard user.state == .active else { return nil }
        try connection.run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", .integer(now), .text(record.id))
        return (user, record, try self.role(named: user.role, in: connection).permissions)
    }

    // MARK: Sessions

    package func createSession(_ userID: String, in connection: SQLiteConnection) throws -> (token: String, id: String, expiresAt: Int64) {
        try connection.transaction { connection in
            let user = try self.user(userID, in: connection)
            guard user.state == .active else {
                throw DirectoryError.failedPrecondition("the user is disabled")
            }
            let token = try SecretToken.generate()
            let id = try Self.makeID("s_")
            let now = self.clock.nowMilliseconds()
            let expiresAt = now + self.configuration.sessionLifetime.milliseconds
            try connection.run(
                "INSERT INTO sessions (id, user_id, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                .text(id), .text(userID), .blob(token.digest), .integer(now), .integer(expiresAt)
            )
            return (token.value, id, expiresAt)
        }
    }

    package func validateSession(_ token: String, in connection: SQLiteConnection) throws -> (user: UserRecord, id: String, expiresAt: Int64)? {
        guard token.utf8.count == 43, Base64URL.decode(token)?.count == 32 else { return nil }
        guard let row = try connection.queryFirst("SELECT * FROM sessions WHERE hash = ?", .blob(SecretToken.digest(of: token))),
              row.int("revoked_at") == nil, let expiresAt = row.int("expires_at"), expiresAt > self.clock.nowMilliseconds(),
              let userID = row.string("user_id"), let id = row.string("id")
        else { return nil }
        let user = try self.user(userID, in: connection)
        guard user.state == .active else { return nil }
        return (user, id, expiresAt)
    }

    package func revokeSessions(_ userID: String, actor: ActorInfo, in connection: SQLiteConnection) throws -> Int {
        try connection.transaction { connection in
            try self.authorize(actor, toManage: try self.user(userID, in: connection), in: connection)
            let count = try connection.run(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", .integer(self.clock.nowMilliseconds()), .text(userID)
            )
            try self.audit(actor, "sessions.revoke", target: userID, detail: "\(count)", in: connection)
            return count
        }
    }

    /// Whether any user has the owner role (for bootstrapping the first one).
    package func hasOwner(in connection: SQLiteConnection) throws -> Bool {
        try connection.queryFirst("SELECT 1 AS x FROM users WHERE role = 'owner' LIMIT 1") != nil
    }

    // MARK: Helpers

    static let userSelect = """
        SELECT u.seq, u.id, u.name, u.role, u.organization_id, u.state, u.locale, u.password_hash, u.password_changed_at,
               u.created_at, u.updated_at, r.staff AS staff
        FROM users u JOIN roles r ON r.name = u.role
        """

    func userRecord(_ row: SQLiteRow, in connection: SQLiteConnection) throws -> UserRecord {
        let id = row.string("id") ?? ""
        let emails = try connection.query(
            "SELECT id, address, is_primary, verified FROM emails WHERE user_id = ? ORDER BY is_primary DESC, created_at, id", .text(id)
        ).map { email in
            EmailRecord(id: email.string("id") ?? "", address: email.string("address") ?? "", isPrimary: email.int("is_primary") == 1, verified: email.int("verified") == 1)
        }
        return UserRecord(
            id: id,
            name: row.string("name") ?? "",
            role: row.string("role") ?? "",
            staff: row.int("staff") == 1,
            organizationID: row.string("organization_id"),
            state: row.int("state").flatMap(UserStateValue.init(rawValue:)) ?? .active,
            locale: row.string("locale") ?? "en",
            emails: emails,
            passwordHash: row.string("password_hash"),
            passwordChangedAt: row.int("password_changed_at"),
            createdAt: row.int("created_at") ?? 0,
            updatedAt: row.int("updated_at") ?? 0
        )
    }

    private static func organizationRecord(_ row: SQLiteRow) -> OrganizationRecord {
        OrganizationRecord(
            id: row.string("id") ?? "",
            name: row.string("name") ?? "",
            domains: (row.string("domains") ?? "").split(separator: ",").map(String.init),
            createdAt: row.int("created_at") ?? 0
        )
    }

    private static func apiKeyRecord(_ row: SQLiteRow) -> APIKeyRecord {
        APIKeyRecord(
            id: row.string("id") ?? "",
            userID: row.string("user_id") ?? "",
            name: row.string("name") ?? "",
            createdAt: row.int("created_at") ?? 0,
            expiresAt: row.int("expires_at") ?? 0,
            lastUsedAt: row.int("last_used_at"),
            revokedAt: row.int("revoked_at")
        )
    }

    private func email(_ emailID: String, of userID: String, in connection: SQLiteConnection) throws -> (UserRecord, EmailRecord) {
        try DirectoryValidation.id(emailID, prefix: "e_", field: "email_id")
        let user = try self.user(userID, in: connection)
        guard let email = user.emails.first(where: { $0.id == emailID }) else {
            throw DirectoryError.notFound("the user has no email address with the id \(emailID)")
        }
        return (user, email)
    }

    func ensureEmailIsFree(_ normalized: String, field: String, in connection: SQLiteConnection) throws {
        if try connection.queryFirst("SELECT id FROM emails WHERE normalized = ?", .text(normalized)) != nil {
            throw DirectoryError.alreadyExists("the email address \(normalized) belongs to another user (\(field))")
        }
    }

    private func ensureAnotherActiveOwner(than userID: String, in connection: SQLiteConnection, doing action: String) throws {
        let others = try connection.queryFirst(
            "SELECT count(*) AS n FROM users WHERE role = 'owner' AND state = ? AND id != ?",
            .integer(UserStateValue.active.rawValue), .text(userID)
        )?.int("n") ?? 0
        guard others > 0 else {
            throw DirectoryError.failedPrecondition("cannot \(action) the last active owner; make another user owner first")
        }
    }

    private func touch(_ userID: String, in connection: SQLiteConnection) throws {
        try connection.run("UPDATE users SET updated_at = ? WHERE id = ?", .integer(self.clock.nowMilliseconds()), .text(userID))
        try self.reindex(userID, in: connection)
    }

    func audit(_ actor: ActorInfo, _ action: String, target: String, detail: String, in connection: SQLiteConnection) throws {
        try connection.run(
            "INSERT INTO audit (at, actor_id, actor_address, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
            .integer(self.clock.nowMilliseconds()), .text(actor.userID), .text(actor.clientAddress), .text(action), .text(target), .text(detail)
        )
    }

    static func makeID(_ prefix: String) throws -> String {
        try Hex.randomID(prefix: prefix)
    }

    /// FNV-1a, to tie a search cursor to its query.
    static func fnv(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return hash
    }
}

import Foundation
