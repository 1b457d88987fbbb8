import RekeyClock
import RekeyCrypto
import RekeySQLite

/// The directory's storage and rules. Every method is synchronous and meant to run on the
/// database's thread (``DirectoryService`` calls it through `SQLiteDatabase.withConnection`);
/// changes run in a transaction and write an audit record.
package struct DirectoryStore: Sendable {
    package struct Configuration: Sendable {
        package var sessionLifetime: Duration
        /// A session unused this long ends, whatever its lifetime left.
        package var sessionIdleTimeout: Duration
        package var apiKeyLifetime: Duration
        /// Failed sign-ins allowed per client address within `signInWindow`.
        package var signInLimit: Int
        package var signInWindow: Duration
        /// Failed sign-ins per account before each further one must wait (see ``SignInThrottle``).
        package var signInAccountFreeAttempts: Int
        package var signInAccountDelay: Duration

        package init(
            sessionLifetime: Duration = .seconds(12 * 3600),
            sessionIdleTimeout: Duration = .seconds(30 * 60),
            apiKeyLifetime: Duration = .seconds(365 * 86400),
            signInLimit: Int = 20,
            signInWindow: Duration = .seconds(900),
            signInAccountFreeAttempts: Int = 5,
            signInAccountDelay: Duration = .seconds(1)
        ) {
            self.sessionLifetime = sessionLifetime
            self.sessionIdleTimeout = sessionIdleTimeout
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

    package func createUser(_ new: NewUser, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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

    package func user(_ id: String, in connection: any SQLConnection) throws -> UserRecord {
        try DirectoryValidation.id(id, prefix: "u_", field: "user_id")
        guard let user = Self.userWithEmails(try connection.query(UserByID.self, [.text(id)])) else {
            throw DirectoryError.notFound("no user has the id \(id)")
        }
        return user
    }

    package struct UserChanges: Sendable {
        package var name: String?
        package var role: String?
        /// `.some("")` removes the organization.
        package var organizationID: String?
        package var locale: String?

        package init() {}
    }

    package func updateUser(_ id: String, changes: UserChanges, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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
    package func setState(_ id: String, _ state: UserStateValue, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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
    package func findUser(byEmail email: String, in connection: any SQLConnection) throws -> (user: UserRecord, matched: EmailRecord)? {
        Self.foundUser(try connection.query(UserByEmail.self, [.text(try DirectoryValidation.email(email).normalized)]))
    }

    /// The same as ``findUser(byEmail:in:)``, as one query straight from the calling task (no
    /// database thread on PostgreSQL): the read of every reset.
    package func findUser(byEmail email: String, in database: DirectoryDatabase) async throws -> (user: UserRecord, matched: EmailRecord)? {
        Self.foundUser(try await database.query(UserByEmail.self, [.text(try DirectoryValidation.email(email).normalized)]))
    }

    private static func foundUser(_ rows: [SQLiteRow]) -> (user: UserRecord, matched: EmailRecord)? {
        guard let user = Self.userWithEmails(rows), let emailID = rows.first?.string("matched_id"),
              let matched = user.emails.first(where: { $0.id == emailID })
        else { return nil }
        return (user, matched)
    }

    // MARK: Listing

    package struct ListFilter: Sendable {
        package var role: String = ""
        package var organizationID: String = ""
        package var state: UserStateValue?
        package var hasPassword: Bool?
        /// Whether the primary address is verified.
        package var primaryVerified: Bool?

        package init() {}
    }

    /// The most users `listUsers` counts: past it the count stops (and says so).
    package static let countLimit = 10_000

    /// Every user, in creation order, with a cursor that stays valid while users are added; with
    /// `countTotal`, also how many match over all pages, counted up to `countLimit` (`capped`
    /// when more match).
    package func listUsers(
        filter: ListFilter, pageSize: Int, pageToken: String, countTotal: Bool = false, countLimit: Int = Self.countLimit,
        in connection: any SQLConnection
    ) throws -> (users: [UserRecord], next: String, total: (count: Int, capped: Bool)?) {
        guard (1...500).contains(pageSize) else {
            throw DirectoryError.invalidArgument("page_size must be from 1 to 500 (0 for 50)")
        }
        var after: Int64 = 0
        if !pageToken.isEmpty {
            guard let value = PageToken.position(pageToken, kind: "l1") else {
                throw DirectoryError.invalidArgument("page_token is not one this service gave out")
            }
            after = value
        }
        var conditions = ""
        var filters: [SQLiteValue] = []
        if !filter.role.isEmpty {
            _ = try self.role(named: filter.role, in: connection)
            conditions += " AND u.role = ?"
            filters.append(.text(filter.role))
        }
        if !filter.organizationID.isEmpty {
            try DirectoryValidation.id(filter.organizationID, prefix: "o_", field: "organization_id")
            conditions += " AND u.organization_id = ?"
            filters.append(.text(filter.organizationID))
        }
        if let state = filter.state {
            conditions += " AND u.state = ?"
            filters.append(.integer(state.rawValue))
        }
        if let hasPassword = filter.hasPassword {
            conditions += hasPassword ? " AND u.password_hash IS NOT NULL" : " AND u.password_hash IS NULL"
        }
        if let verified = filter.primaryVerified {
            conditions += " AND EXISTS (SELECT 1 FROM emails e WHERE e.user_id = u.id AND e.is_primary = 1 AND e.verified = ?)"
            filters.append(.integer(verified ? 1 : 0))
        }
        let rows = try connection.query(
            Self.userSelect + " WHERE u.seq > ?" + conditions + " ORDER BY u.seq LIMIT ?",
            [.integer(after)] + filters + [.integer(Int64(pageSize + 1))]
        )
        let users = try self.userRecords(rows.prefix(pageSize), in: connection)
        var next = ""
        if rows.count > pageSize, let last = rows[pageSize - 1].int("seq") {
            next = PageToken.encode("l1", last)
        }
        var total: (count: Int, capped: Bool)?
        if countTotal {
            let counted = try connection.query(
                "SELECT count(*) AS n FROM (SELECT 1 FROM users u WHERE 1 = 1" + conditions + " LIMIT ?) AS matching",
                filters + [.integer(Int64(countLimit + 1))]
            ).first?.int("n") ?? 0
            total = (min(Int(counted), countLimit), counted > countLimit)
        }
        return (users, next, total)
    }

    // MARK: Helpers

    static let userSelect = """
        SELECT u.seq, u.id, u.name, u.role, u.organization_id, u.state, u.locale, u.password_hash, u.password_changed_at,
               u.created_at, u.updated_at, r.staff AS staff
        FROM users u JOIN roles r ON r.name = u.role
        """

    /// A user's columns and one address's, for a user read in one statement: one row per address
    /// (see ``userWithEmails(_:)``), in ``userRecords``' order.
    private static let userWithEmailColumns = """
        u.seq, u.id, u.name, u.role, u.organization_id, u.state, u.locale, u.password_hash, u.password_changed_at,
        u.created_at, u.updated_at, r.staff AS staff,
        e.id AS email_id, e.address AS email_address, e.is_primary AS email_is_primary, e.verified AS email_verified
        """

    /// The user owning an address (`matched_id` is the address's id): the hot read of every reset.
    enum UserByEmail: PreparedSQL {
        static let sql = """
            SELECT m.id AS matched_id, \(userWithEmailColumns)
            FROM emails m JOIN users u ON u.id = m.user_id JOIN roles r ON r.name = u.role JOIN emails e ON e.user_id = u.id
            WHERE m.normalized = ? ORDER BY e.is_primary DESC, e.created_at, e.id
            """
    }

    /// A user by id: the read of every admin action (the actor, then the target).
    enum UserByID: PreparedSQL {
        static let sql = """
            SELECT \(userWithEmailColumns)
            FROM users u JOIN roles r ON r.name = u.role LEFT JOIN emails e ON e.user_id = u.id
            WHERE u.id = ? ORDER BY e.is_primary DESC, e.created_at, e.id
            """
    }

    /// The user of ``UserByEmail`` or ``UserByID`` rows; nil when there are none.
    static func userWithEmails(_ rows: [SQLiteRow]) -> UserRecord? {
        guard let first = rows.first else { return nil }
        let emails = rows.compactMap { row in
            row.string("email_id").map { id in
                EmailRecord(
                    id: id, address: row.string("email_address") ?? "",
                    isPrimary: row.int("email_is_primary") == 1, verified: row.int("email_verified") == 1
                )
            }
        }
        return Self.userRecord(first, emails: emails)
    }

    /// The users of `rows` (from ``userSelect``), in their order, with their addresses read in
    /// one statement for all of them (a page of search results is two statements, not forty).
    func userRecords(_ rows: some Collection<SQLiteRow>, in connection: any SQLConnection) throws -> [UserRecord] {
        guard !rows.isEmpty else { return [] }
        let ids = rows.map { $0.string("id") ?? "" }
        var emails: [String: [EmailRecord]] = [:]
        for email in try connection.query(
            "SELECT user_id, id, address, is_primary, verified FROM emails WHERE user_id IN (\(Array(repeating: "?", count: ids.count).joined(separator: ", ")))"
                + " ORDER BY user_id, is_primary DESC, created_at, id",
            ids.map(SQLiteValue.text)
        ) {
            emails[email.string("user_id") ?? "", default: []].append(
                EmailRecord(id: email.string("id") ?? "", address: email.string("address") ?? "", isPrimary: email.int("is_primary") == 1, verified: email.int("verified") == 1)
            )
        }
        return rows.map { row in Self.userRecord(row, emails: emails[row.string("id") ?? ""] ?? []) }
    }

    static func userRecord(_ row: SQLiteRow, emails: [EmailRecord]) -> UserRecord {
        let id = row.string("id") ?? ""
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

    static func organizationRecord(_ row: SQLiteRow) -> OrganizationRecord {
        OrganizationRecord(
            id: row.string("id") ?? "",
            name: row.string("name") ?? "",
            domains: (row.string("domains") ?? "").split(separator: ",").map(String.init),
            createdAt: row.int("created_at") ?? 0
        )
    }

    static func apiKeyRecord(_ row: SQLiteRow) -> APIKeyRecord {
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

    func email(_ emailID: String, of userID: String, in connection: any SQLConnection) throws -> (UserRecord, EmailRecord) {
        try DirectoryValidation.id(emailID, prefix: "e_", field: "email_id")
        let user = try self.user(userID, in: connection)
        guard let email = user.emails.first(where: { $0.id == emailID }) else {
            throw DirectoryError.notFound("the user has no email address with the id \(emailID)")
        }
        return (user, email)
    }

    func ensureEmailIsFree(_ normalized: String, field: String, in connection: any SQLConnection) throws {
        if try connection.queryFirst("SELECT id FROM emails WHERE normalized = ?", .text(normalized)) != nil {
            throw DirectoryError.alreadyExists("the email address \(normalized) belongs to another user (\(field))")
        }
    }

    func ensureAnotherActiveOwner(than userID: String, in connection: any SQLConnection, doing action: String) throws {
        let others = try connection.queryFirst(
            "SELECT count(*) AS n FROM users WHERE role = 'owner' AND state = ? AND id != ?",
            .integer(UserStateValue.active.rawValue), .text(userID)
        )?.int("n") ?? 0
        guard others > 0 else {
            throw DirectoryError.failedPrecondition("cannot \(action) the last active owner; make another user owner first")
        }
    }

    func touch(_ userID: String, in connection: any SQLConnection) throws {
        try connection.run("UPDATE users SET updated_at = ? WHERE id = ?", .integer(self.clock.nowMilliseconds()), .text(userID))
        try self.reindex(userID, in: connection)
    }

    func audit(_ actor: ActorInfo, _ action: String, target: String, detail: String, in connection: any SQLConnection) throws {
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
