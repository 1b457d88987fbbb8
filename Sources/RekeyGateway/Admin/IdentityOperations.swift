import RekeyAdminModel
import RekeyDirectoryAPI

/// A user's email addresses: adding one, choosing the primary one (and telling the previous
/// address), removing one.
package struct IdentityOperations: Sendable {
    let flows: Flows
    var directory: Rekey_Directory_V1_Directory.Client { self.flows.backends.directory }

    package func addEmail(_ actor: AdminActor, userID: String, _ new: Admin.NewEmail) async throws(AdminError) -> Admin.User {
        try actor.require(.manageUsers)
        return try await adminCall {
            var add = Rekey_Directory_V1_AddEmailRequest()
            add.userID = userID
            add.address = new.address
            add.verified = new.verified ?? false
            add.actor = actor.directoryActor
            let added = try await self.directory.addEmail(add, options: actor.options)
            return Admin.User(added.user ?? .init(), warnings: added.warnings)
        }
    }

    package func removeEmail(_ actor: AdminActor, userID: String, emailID: String) async throws(AdminError) -> Admin.User {
        try actor.require(.manageUsers)
        return try await adminCall {
            Admin.User(try await self.directory.removeEmail(self.change(actor, userID, emailID), options: actor.options).user ?? .init())
        }
    }

    /// Makes an address primary: reset mail goes there from now on. The previous primary address
    /// is told (masked new address, who, when); if that notice cannot be queued the change stands
    /// and the log says so.
    package func makePrimary(_ actor: AdminActor, userID: String, emailID: String) async throws(AdminError) -> Admin.User {
        try actor.require(.manageUsers)
        let before = try await UserOperations(flows: self.flows).record(actor, userID, for: "email.primary")
        return try await adminCall {
            let after = try await self.directory.setPrimaryEmail(self.change(actor, userID, emailID), options: actor.options).user ?? .init()
            if let previous = before.emails.first(where: \.primary), let new = after.emails.first(where: \.primary), previous.id != new.id {
                do {
                    try await self.flows.notifyPrimaryChanged(
                        user: after, previous: previous, new: new, changedBy: actor.user, clientAddress: actor.clientAddress, requestID: actor.requestID
                    )
                } catch {
                    self.flows.logger.error(
                        "the primary address changed but the notice to the previous one was not queued",
                        metadata: ["request.id": "\(actor.requestID)", "user.id": "\(userID)", "error": "\(error)"]
                    )
                }
            }
            return Admin.User(after)
        }
    }

    private func change(_ actor: AdminActor, _ userID: String, _ emailID: String) -> Rekey_Directory_V1_EmailChangeRequest {
        var change = Rekey_Directory_V1_EmailChangeRequest()
        change.userID = userID
        change.emailID = emailID
        change.actor = actor.directoryActor
        return change
    }
}
