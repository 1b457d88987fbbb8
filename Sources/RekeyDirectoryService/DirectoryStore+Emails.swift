import RekeyCrypto
import RekeySQLite

/// A user's email identities: adding, removing, choosing the primary one, verifying.
extension DirectoryStore {
    package func addEmail(_ userID: String, address: String, verified: Bool, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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

    package func removeEmail(_ userID: String, emailID: String, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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

    package func setPrimaryEmail(_ userID: String, emailID: String, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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

    package func markEmailVerified(_ userID: String, emailID: String, actor: ActorInfo, in connection: any SQLConnection) throws -> UserRecord {
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
}
