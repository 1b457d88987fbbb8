import RekeyCrypto
import RekeySQLite

/// API keys: made for a user, shown once, stored as a hash, revoked or expired.
extension DirectoryStore {
    package func createAPIKey(_ userID: String, name: String, lifetime: Duration?, actor: ActorInfo, in connection: any SQLConnection) throws -> (key: String, record: APIKeyRecord) {
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

    package func revokeAPIKey(_ keyID: String, actor: ActorInfo, in connection: any SQLConnection) throws -> APIKeyRecord {
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

    /// How fresh a key's `last_used_at` is kept, in milliseconds.
    static let lastUsedPrecision: Int64 = 60_000

    /// The user and key for a presented API key; nil when it is unknown, revoked, expired, or its
    /// user is disabled. Its last use is recorded to the minute.
    package func authenticateAPIKey(_ key: String, in connection: any SQLConnection) throws -> (user: UserRecord, key: APIKeyRecord, permissions: [String])? {
        guard let check = try self.checkAPIKey(key, in: connection) else { return nil }
        if check.touchDue {
            try self.touchAPIKey(check.key.id, in: connection)
        }
        return (check.user, check.key, check.permissions)
    }

    /// A valid API key, as ``checkAPIKey(_:in:)`` finds it.
    package struct APIKeyCheck: Sendable {
        package var user: UserRecord
        package var key: APIKeyRecord
        package var permissions: [String]
        /// Whether this use should be recorded as the key's last (``touchAPIKey(_:in:)``).
        package var touchDue: Bool
    }

    /// ``authenticateAPIKey(_:in:)`` without the write: for a connection that only reads.
    package func checkAPIKey(_ key: String, in connection: any SQLConnection) throws -> APIKeyCheck? {
        guard key.hasPrefix("rk_"), key.utf8.count == 46 else { return nil }
        let now = self.clock.nowMilliseconds()
        guard let row = try connection.queryFirst("SELECT * FROM api_keys WHERE hash = ?", .blob(SecretToken.digest(of: key))) else { return nil }
        let record = Self.apiKeyRecord(row)
        guard record.revokedAt == nil, record.expiresAt > now else { return nil }
        let user = try self.user(record.userID, in: connection)
        guard user.state == .active else { return nil }
        // To the minute: a key used by many callers at once is written once a minute, not by each
        // call (on PostgreSQL each write would collide with the others' and be run again).
        return APIKeyCheck(
            user: user, key: record, permissions: try self.role(named: user.role, in: connection).permissions,
            touchDue: now - (record.lastUsedAt ?? .min / 2) >= Self.lastUsedPrecision
        )
    }

    /// Records that a key was used now.
    package func touchAPIKey(_ id: String, in connection: any SQLConnection) throws {
        try connection.run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", .integer(self.clock.nowMilliseconds()), .text(id))
    }
}
