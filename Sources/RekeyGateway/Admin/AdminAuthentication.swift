import RekeyDirectoryAPI
import RekeyRPC

/// Who is calling: an API key (the JSON API, the CLI) or a sign-on session (the pages), vouched
/// for by the directory. Only staff become an ``AdminActor``.
package struct AdminAuthentication: Sendable {
    let flows: Flows

    /// The staff member an API key belongs to, with their permissions.
    package func actor(apiKey: String, clientAddress: String, requestID: String) async throws(AdminError) -> AdminActor {
        var authenticate = Rekey_Directory_V1_AuthenticateApiKeyRequest()
        authenticate.key = apiKey
        let authenticated: Rekey_Directory_V1_AuthenticateApiKeyResponse
        do {
            authenticated = try await self.flows.backends.directory.authenticateApiKey(authenticate, options: Backends.options(requestID))
        } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument {
            throw .unauthenticated
        } catch {
            throw AdminError(error)
        }
        guard let user = authenticated.user else { throw .unauthenticated }
        guard user.staff else { throw .staffOnly }
        return AdminActor(user: user, permissions: authenticated.permissions, clientAddress: clientAddress, requestID: requestID)
    }

    /// The user a session cookie belongs to; nil when it is unknown, expired, idle too long or
    /// revoked.
    package func sessionUser(token: String, requestID: String) async throws(AdminError) -> Rekey_Directory_V1_User? {
        try await self.session(token: token, requestID: requestID)?.user
    }

    /// The staff member a session cookie belongs to, for the admin console: nil when the session
    /// is not valid; `staffOnly` for a customer.
    package func actor(session token: String, clientAddress: String, requestID: String) async throws(AdminError) -> AdminActor? {
        guard let session = try await self.session(token: token, requestID: requestID), let user = session.user else { return nil }
        guard user.staff else { throw .staffOnly }
        return AdminActor(user: user, permissions: session.permissions, clientAddress: clientAddress, requestID: requestID)
    }

    private func session(token: String, requestID: String) async throws(AdminError) -> Rekey_Directory_V1_ValidateSessionResponse? {
        guard !token.isEmpty, token.utf8.count <= 100 else { return nil }
        var validate = Rekey_Directory_V1_ValidateSessionRequest()
        validate.token = token
        do {
            return try await self.flows.backends.directory.validateSession(validate, options: Backends.options(requestID))
        } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument || error.code == .notFound {
            return nil
        } catch {
            throw AdminError(error)
        }
    }
}
