import RekeyCrypto
import RekeySQLite

/// Password hashes and the sign-in limits (see ``SignInThrottle``).
extension DirectoryStore {
    /// The stored password hash of the user with address `email`, for verification. Nil when no
    /// active user with a password has that address.
    package func passwordCandidate(email: String, in connection: any SQLConnection) throws -> (user: UserRecord, hash: String)? {
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
    package func reserveSignIn(clientAddress: String, email: String, in connection: any SQLConnection) throws -> SignInReservation {
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
    package func releaseSignIn(_ reservation: SignInReservation, in connection: any SQLConnection) throws {
        try connection.transaction { connection in
            if let row = reservation.addressRow {
                try connection.run("DELETE FROM sign_in_failures WHERE id = ?", .integer(row))
            }
            try connection.run("DELETE FROM sign_in_account_failures WHERE id = ?", .integer(reservation.accountRow))
        }
    }

    /// Forgets attempts older than the window (run after a refused sign-in, off the hot path).
    package func forgetOldSignIns(in connection: any SQLConnection) throws {
        let before = self.clock.nowMilliseconds() - self.configuration.signInWindow.milliseconds
        try connection.transaction { connection in
            try connection.run("DELETE FROM sign_in_failures WHERE at <= ?", .integer(before))
            try connection.run("DELETE FROM sign_in_account_failures WHERE at <= ?", .integer(before))
        }
    }

    /// Stores a new password hash (computed by the caller, off this thread) and revokes sessions.
    package func storePasswordHash(_ userID: String, hash: String, actor: ActorInfo, revokeSessions: Bool, in connection: any SQLConnection) throws -> Int64 {
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
    package func upgradePasswordHash(_ userID: String, from old: String, to new: String, in connection: any SQLConnection) throws {
        try connection.run("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?", .text(new), .text(userID), .text(old))
    }
}
