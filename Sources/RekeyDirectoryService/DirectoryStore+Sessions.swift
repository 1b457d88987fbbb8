import RekeyCrypto
import RekeySQLite

/// Sign-on sessions of the web pages.
extension DirectoryStore {
    package func createSession(_ userID: String, in connection: any SQLConnection) throws -> (token: String, id: String, expiresAt: Int64) {
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

    /// A valid session, as ``checkSession(_:in:)`` finds it.
    package struct SessionCheck: Sendable {
        package var user: UserRecord
        package var id: String
        package var expiresAt: Int64
        package var permissions: [String]
        /// Whether this use should move the idle deadline (``touchSession(_:in:)``).
        package var touchDue: Bool
    }

    /// The session's user and their role's permissions; nil when the session is unknown,
    /// revoked, past its lifetime, unused for longer than the idle timeout, or its user disabled.
    /// Each use moves the idle deadline (written at most once a minute).
    package func validateSession(_ token: String, in connection: any SQLConnection) throws -> (user: UserRecord, id: String, expiresAt: Int64, permissions: [String])? {
        guard let check = try self.checkSession(token, in: connection) else { return nil }
        if check.touchDue {
            try self.touchSession(check.id, in: connection)
        }
        return (check.user, check.id, check.expiresAt, check.permissions)
    }

    /// ``validateSession(_:in:)`` without the write: for a connection that only reads.
    package func checkSession(_ token: String, in connection: any SQLConnection) throws -> SessionCheck? {
        guard token.utf8.count == 43, Base64URL.decode(token)?.count == 32 else { return nil }
        let now = self.clock.nowMilliseconds()
        guard let row = try connection.queryFirst("SELECT * FROM sessions WHERE hash = ?", .blob(SecretToken.digest(of: token))),
              row.int("revoked_at") == nil, let expiresAt = row.int("expires_at"), expiresAt > now,
              let userID = row.string("user_id"), let id = row.string("id")
        else { return nil }
        let lastSeen = row.int("last_seen_at") ?? row.int("created_at") ?? 0
        guard now - lastSeen < self.configuration.sessionIdleTimeout.milliseconds else { return nil }
        let user = try self.user(userID, in: connection)
        guard user.state == .active else { return nil }
        return SessionCheck(
            user: user, id: id, expiresAt: expiresAt, permissions: try self.role(named: user.role, in: connection).permissions,
            touchDue: now - lastSeen >= 60_000
        )
    }

    /// Moves a session's idle deadline: it was used now.
    package func touchSession(_ id: String, in connection: any SQLConnection) throws {
        try connection.run("UPDATE sessions SET last_seen_at = ? WHERE id = ?", .integer(self.clock.nowMilliseconds()), .text(id))
    }

    package func revokeSessions(_ userID: String, actor: ActorInfo, in connection: any SQLConnection) throws -> Int {
        try connection.transaction { connection in
            try self.authorize(actor, toManage: try self.user(userID, in: connection), in: connection)
            let count = try connection.run(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL", .integer(self.clock.nowMilliseconds()), .text(userID)
            )
            try self.audit(actor, "sessions.revoke", target: userID, detail: "\(count)", in: connection)
            return count
        }
    }
}
