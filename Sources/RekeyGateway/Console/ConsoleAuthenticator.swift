import Foundation
import Hummingbird

/// Lets only signed-in staff into the admin console: the session cookie → an ``AdminActor`` in
/// `context.admin` (with the role's permissions). Signed out (or the session ended, idle or
/// not): to the sign-on page, which brings them back here. A customer: a 403 page.
struct ConsoleAuthenticator: RouterMiddleware {
    typealias Context = GatewayContext
    let authentication: AdminAuthentication
    let cookieName: String

    func handle(_ request: Request, context: GatewayContext, next: (Request, GatewayContext) async throws -> Response) async throws -> Response {
        var context = context
        var actor: AdminActor?
        if let token = request.cookies[self.cookieName]?.value {
            switch await self.actor(session: token, context) {
            case .success(let staff):
                actor = staff
            case .failure(let failure) where failure.kind == .permissionDenied:
                return Web.html(HTML.page("Staff only", """
                    <p class="error">The admin console is for staff. You are signed in with an account that is not.</p>
                    <p><a href="/">Back to your account</a></p>
                    """), status: .forbidden)
            case .failure(let failure):
                throw failure
            }
        }
        guard let actor else {
            // A form posted after the session ended goes back to the page it came from.
            let back = request.method == .get ? request.uri.description : "/console"
            return Web.redirect("/?next=" + (back.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "/console"))
        }
        context.admin = actor
        return try await next(request, context)
    }

    private func actor(session token: String, _ context: GatewayContext) async -> Result<AdminActor?, AdminError> {
        do {
            return .success(try await self.authentication.actor(session: token, clientAddress: context.clientAddress, requestID: context.requestID))
        } catch {
            return .failure(error)
        }
    }
}
