import RekeyAdminModel
import RekeyDirectoryAPI
import RekeyInput
import RekeyRPC

/// API keys: one's own, made with a key or with one's password; revoking.
package struct KeyOperations: Sendable {
    let flows: Flows
    var directory: Rekey_Directory_V1_Directory.Client { self.flows.backends.directory }

    /// A key for `userID`, which must be the actor (the directory refuses others: own_keys_only).
    package func create(_ actor: AdminActor, userID: String, _ new: Admin.NewAPIKey) async throws(AdminError) -> Admin.APIKey {
        try await adminCall {
            var create = Rekey_Directory_V1_CreateApiKeyRequest()
            create.userID = userID
            create.name = new.name
            create.lifetimeDays = UInt32(try Bounded.integer(new.lifetimeDays ?? 0, "$.lifetime_days", in: 0...3650))
            create.actor = actor.directoryActor
            let created = try await self.directory.createApiKey(create, options: actor.options)
            return Admin.APIKey(created.info ?? .init(), key: created.key)
        }
    }

    /// A staff member's first key, from their email address and password (`rekey login
    /// --email`). The sign-in counts toward the same limits as the sign-on page.
    package func create(signingIn request: Admin.PasswordAPIKey, clientAddress: String, requestID: String) async throws(AdminError) -> Admin.APIKey {
        try await adminCall {
            let lifetime = try Bounded.integer(request.lifetimeDays ?? 0, "$.lifetime_days", in: 0...3650)
            let user: Rekey_Directory_V1_User
            do {
                user = try await self.flows.signIn(email: request.email, password: request.password, clientAddress: clientAddress, requestID: requestID)
            } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument {
                throw AdminError(.unauthenticated, "unauthenticated", "the email address or the password is not right")
            }
            guard user.staff else { throw AdminError.staffOnly }
            var create = Rekey_Directory_V1_CreateApiKeyRequest()
            create.userID = user.id
            create.name = request.name
            create.lifetimeDays = UInt32(lifetime)
            create.actor = Flows.directoryActor(user.id, clientAddress)
            let created = try await self.directory.createApiKey(create, options: Backends.options(requestID))
            return Admin.APIKey(created.info ?? .init(), key: created.key)
        }
    }

    package func revoke(_ actor: AdminActor, keyID: String) async throws(AdminError) -> Admin.APIKey {
        try actor.require(.manageUsers)
        return try await adminCall {
            var revoke = Rekey_Directory_V1_RevokeApiKeyRequest()
            revoke.keyID = keyID
            revoke.actor = actor.directoryActor
            return Admin.APIKey(try await self.directory.revokeApiKey(revoke, options: actor.options).info ?? .init())
        }
    }
}
