import Hummingbird

/// Authenticates the admin API's routes: `Authorization: Bearer <api key>` → a staff
/// ``AdminActor`` in `context.admin`, or 401/403. Which permission a route needs is declared with
/// the route (``AdminRoutes``).
struct APIKeyAuthenticator: RouterMiddleware {
    typealias Context = GatewayContext
    let authentication: AdminAuthentication

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw AdminError(.unauthenticated, "unauthenticated", "send an API key as `Authorization: Bearer <key>`")
        }
        var context = context
        context.admin = try await self.authentication.actor(apiKey: String(header.dropFirst(7)), clientAddress: context.clientAddress, requestID: context.requestID)
        return try await next(request, context)
    }
}

/// Finds the signed-in user of the pages from the session cookie, into `context.sessionUser`;
/// a missing, unknown or expired session (or a directory that does not answer) is no user.
struct SessionAuthenticator: RouterMiddleware {
    typealias Context = GatewayContext
    let authentication: AdminAuthentication
    let cookieName: String

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var context = context
        if let token = request.cookies[self.cookieName]?.value {
            context.sessionUser = (try? await self.authentication.sessionUser(token: token, requestID: context.requestID)) ?? nil
        }
        return try await next(request, context)
    }
}
