import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RekeyAdminModel

/// One route of the admin API: method, path under `/api/admin/v1/`, who may call it, and how.
struct AdminRoute: Sendable {
    enum Access: Sendable, Equatable {
        /// No API key (the OpenAPI document; a first key made with a password).
        case open
        /// A staff member's API key; with a permission, only staff whose role carries it.
        case staff(Permission?)
    }

    let method: HTTPRequest.Method
    /// Hummingbird's syntax: `users/:id/password-reset`.
    let path: String
    let access: Access
    let handle: @Sendable (Request, GatewayContext) async throws -> Response

    /// A route for staff: authenticated by ``APIKeyAuthenticator``; `permission` checked here,
    /// before the body is read; the answer encoded with the admin model's encoder.
    static func staff<Output: Encodable>(
        _ method: HTTPRequest.Method, _ path: String, needs permission: Permission? = nil,
        _ body: @escaping @Sendable (Request, GatewayContext, AdminActor) async throws -> Output
    ) -> AdminRoute {
        AdminRoute(method: method, path: path, access: .staff(permission)) { request, context in
            guard let actor = context.admin else { throw AdminError.unauthenticated }
            if let permission { try actor.require(permission) }
            return ErrorAnswers.json(try await body(request, context, actor))
        }
    }
}

/// The admin API, `/api/admin/v1/…`: JSON, `Authorization: Bearer <api key>`, described by
/// `openapi.json` (served at `/api/admin/v1/openapi.json`). Each route here is a thin rendering of
/// an ``AdminOperations`` method: parse, call, encode. The permission each needs is declared on
/// its line.
enum AdminRoutes {
    static let prefix = "api/admin/v1"

    static func all(_ operations: AdminOperations) -> [AdminRoute] {
        let (users, identities, keys, mail) = (operations.users, operations.identities, operations.keys, operations.mail)
        let (organizations, audit, diagnosis) = (operations.organizations, operations.audit, operations.diagnosis)
        typealias P = RequestParsing
        return [
            AdminRoute(method: .get, path: "openapi.json", access: .open) { _, _ in
                Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.bytes)))
            },

            // Users
            .staff(.get, "users/search") { request, _, actor in
                let scope = try P.query(request, "scope") ?? "staff"
                guard let scope = UserOperations.Scope(rawValue: scope) else { throw AdminError.invalid("scope is staff or all") }
                return try await users.search(actor, text: try P.query(request, "q") ?? "", scope: scope, page: try P.page(request, sizes: 1...100, default: 20))
            },
            .staff(.get, "users/lookup") { request, _, actor in
                try await users.lookup(actor, email: try P.query(request, "email") ?? "")
            },
            .staff(.get, "users") { request, _, actor in
                var filter = UserOperations.Filter(role: try P.query(request, "role") ?? "", organizationID: try P.query(request, "organization_id") ?? "")
                switch try P.query(request, "state") ?? "" {
                case "": break
                case "active": filter.disabled = false
                case "disabled": filter.disabled = true
                default: throw AdminError.invalid("state is active or disabled")
                }
                return try await users.list(actor, filter: filter, page: try P.page(request, sizes: 1...500, default: 50))
            },
            .staff(.post, "users", needs: .manageUsers) { request, _, actor in
                try await users.create(actor, try await P.body(request, as: Admin.NewUser.self))
            },
            .staff(.post, "users/import", needs: .manageUsers) { request, _, actor in
                let partial = try P.flag(request, "partial")
                let key = try request.headers[.idempotencyKey].map { value throws(AdminError) in try P.text(value, "Idempotency-Key") } ?? ""
                var request = request
                let csv: ByteBuffer
                do {
                    csv = try await request.collectBody(upTo: UserOperations.maxImportBytes)
                } catch is NIOTooManyBytesError {
                    throw AdminError(.tooLarge, "too_large", "the file is larger than \(UserOperations.maxImportBytes) bytes (8 MiB); split it")
                }
                return try await users.importUsers(actor, csv: Array(buffer: csv), partial: partial, key: key)
            },
            .staff(.get, "users/:id") { _, context, actor in
                try await users.user(actor, id: try P.parameter(context, "id"))
            },
            .staff(.patch, "users/:id", needs: .manageUsers) { request, context, actor in
                try await users.update(actor, id: try P.parameter(context, "id"), try await P.body(request, as: Admin.UserChanges.self))
            },
            .staff(.post, "users/:id/disable", needs: .manageUsers) { _, context, actor in
                try await users.setDisabled(actor, id: try P.parameter(context, "id"), true)
            },
            .staff(.post, "users/:id/enable", needs: .manageUsers) { _, context, actor in
                try await users.setDisabled(actor, id: try P.parameter(context, "id"), false)
            },

            // Email addresses
            .staff(.post, "users/:id/emails", needs: .manageUsers) { request, context, actor in
                try await identities.addEmail(actor, userID: try P.parameter(context, "id"), try await P.body(request, as: Admin.NewEmail.self))
            },
            .staff(.post, "users/:id/emails/:email/primary", needs: .manageUsers) { _, context, actor in
                try await identities.makePrimary(actor, userID: try P.parameter(context, "id"), emailID: try P.parameter(context, "email"))
            },
            .staff(.delete, "users/:id/emails/:email", needs: .manageUsers) { _, context, actor in
                try await identities.removeEmail(actor, userID: try P.parameter(context, "id"), emailID: try P.parameter(context, "email"))
            },

            // Mail
            .staff(.post, "users/:id/password-reset", needs: .manageUsers) { _, context, actor in
                try await mail.sendReset(actor, user: try P.parameter(context, "id"))
            },
            .staff(.post, "users/:id/verification", needs: .manageUsers) { request, context, actor in
                let body = try await P.optionalBody(request, as: Admin.VerificationRequest.self)
                return try await mail.sendVerification(actor, user: try P.parameter(context, "id"), emailID: body?.emailId)
            },
            .staff(.get, "users/:id/messages") { request, context, actor in
                try await mail.messages(actor, userID: try P.parameter(context, "id"), page: try P.page(request, sizes: 1...100, default: 20))
            },
            .staff(.get, "messages/:id") { _, context, actor in
                try await mail.message(actor, id: try P.parameter(context, "id"))
            },
            .staff(.get, "suppressions") { request, _, actor in
                try await mail.suppressions(actor, address: try P.query(request, "address") ?? "", page: try P.page(request, sizes: 1...500, default: 50))
            },
            .staff(.delete, "suppressions/:address", needs: .manageUsers) { _, context, actor in
                try await mail.removeSuppression(actor, address: try P.parameter(context, "address"))
            },
            .staff(.get, "mail/domain-check") { request, _, actor in
                try await mail.checkDomain(actor, fresh: try P.flag(request, "fresh"))
            },
            .staff(.post, "mail/test", needs: .manageUsers) { request, _, actor in
                try await mail.test(actor, address: try await P.body(request, as: Admin.MailTest.self).address)
            },

            // Diagnosis
            .staff(.get, "diagnosis") { request, _, actor in
                try await diagnosis.diagnose(actor, input: try P.query(request, "user") ?? "", window: try Self.window(request))
            },
            .staff(.get, "users/:id/diagnosis") { request, context, actor in
                try await diagnosis.diagnose(actor, input: try P.parameter(context, "id"), window: try Self.window(request))
            },

            // API keys
            .staff(.post, "users/:id/api-keys") { request, context, actor in
                // Only for oneself: the directory refuses a key for anyone else (own_keys_only).
                try await keys.create(actor, userID: try P.parameter(context, "id"), try await P.body(request, as: Admin.NewAPIKey.self))
            },
            AdminRoute(method: .post, path: "api-keys", access: .open) { request, context in
                let body = try await P.body(request, as: Admin.PasswordAPIKey.self)
                return ErrorAnswers.json(try await keys.create(signingIn: body, clientAddress: context.clientAddress, requestID: context.requestID))
            },
            .staff(.delete, "api-keys/:id", needs: .manageUsers) { _, context, actor in
                try await keys.revoke(actor, keyID: try P.parameter(context, "id"))
            },

            // Audit
            .staff(.get, "audit") { request, _, actor in
                try await audit.records(actor, target: try P.query(request, "target") ?? "", page: try P.page(request, sizes: 1...500, default: 50))
            },

            // Organizations
            .staff(.get, "organizations") { _, _, actor in
                try await organizations.list(actor)
            },
            .staff(.post, "organizations", needs: .manageUsers) { request, _, actor in
                try await organizations.create(actor, try await P.body(request, as: Admin.NewOrganization.self))
            },
            .staff(.patch, "organizations/:id", needs: .manageUsers) { request, context, actor in
                try await organizations.update(actor, id: try P.parameter(context, "id"), try await P.body(request, as: Admin.OrganizationChanges.self))
            },
            .staff(.delete, "organizations/:id", needs: .manageUsers) { _, context, actor in
                try await organizations.delete(actor, id: try P.parameter(context, "id"))
            },
        ]
    }

    private static func window(_ request: Request) throws(AdminError) -> Duration {
        do {
            return try DiagnosisOperations.window(try RequestParsing.query(request, "since") ?? "7d")
        } catch {
            throw AdminError(error)
        }
    }

    /// Registers every route: errors answered as JSON, staff routes behind the API key.
    static func add(to router: Router<GatewayContext>, operations: AdminOperations, logger: Logger) {
        let api = router.group(RouterPath(Self.prefix)).add(middleware: APIErrorMiddleware(logger: logger))
        let staff = api.group().add(middleware: APIKeyAuthenticator(authentication: operations.authentication))
        for route in Self.all(operations) {
            let group = route.access == .open ? api : staff
            group.on(RouterPath(route.path), method: route.method, use: route.handle)
        }
    }
}
