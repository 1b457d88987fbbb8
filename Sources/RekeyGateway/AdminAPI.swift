import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import RekeyDirectoryAPI
import RekeyClock
import RekeyInput
import RekeyNotifierAPI
import RekeyRPC

/// The admin API, `/api/admin/v1/…`: JSON, `Authorization: Bearer <api key>`. Reading needs a
/// staff user; changing users and organizations and sending mail needs `users.manage`. Errors are
/// `{"error": {"code": "…", "message": "…"}}` with a stable code.
package struct AdminAPI: Sendable {
    let flows: Flows
    var directory: Rekey_Directory_V1_Directory.Client { self.flows.backends.directory }
    var notifier: Rekey_Notifier_V1_Notifier.Client { self.flows.backends.notifier }

    static let manage = "users.manage"

    struct Failure: Error {
        var status: HTTPResponse.Status
        var code: String
        var message: String
    }

    /// The authenticated admin.
    struct Admin {
        var user: Rekey_Directory_V1_User
        var permissions: [String]
        var clientAddress: String
        var requestID: String

        var directoryActor: Rekey_Directory_V1_Actor { Flows.directoryActor(self.user.id, self.clientAddress) }
        var options: CallOptions { Backends.options(self.requestID) }
    }

    func add(to router: Router<GatewayContext>) {
        let api = router.group("api/admin/v1")
        api.get("users/search") { request, context in try await self.run(request, context, needs: nil) { try await self.search($0, request) } }
        api.get("users/lookup") { request, context in try await self.run(request, context, needs: nil) { try await self.lookup($0, request) } }
        api.get("users") { request, context in try await self.run(request, context, needs: nil) { try await self.list($0, request) } }
        api.post("users") { request, context in try await self.run(request, context, needs: Self.manage) { try await self.create($0, request) } }
        api.post("users/import") { request, context in try await self.run(request, context, needs: Self.manage) { try await self.importUsers($0, request) } }
        api.get("users/:id") { request, context in
            try await self.run(request, context, needs: nil) { try await self.show($0, try Self.parameter(context, "id")) }
        }
        api.patch("users/:id") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.update($0, try Self.parameter(context, "id"), request) }
        }
        api.post("users/:id/disable") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.setState($0, try Self.parameter(context, "id"), .disabled) }
        }
        api.post("users/:id/enable") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.setState($0, try Self.parameter(context, "id"), .active) }
        }
        api.post("users/:id/password-reset") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.sendReset($0, try Self.parameter(context, "id")) }
        }
        api.post("users/:id/verification") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.sendVerification($0, try Self.parameter(context, "id"), request) }
        }
        api.post("users/:id/emails") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.addEmail($0, try Self.parameter(context, "id"), request) }
        }
        api.post("users/:id/emails/:email/primary") { request, context in
            try await self.run(request, context, needs: Self.manage) {
                try await self.changeEmail($0, try Self.parameter(context, "id"), try Self.parameter(context, "email"), primary: true)
            }
        }
        api.delete("users/:id/emails/:email") { request, context in
            try await self.run(request, context, needs: Self.manage) {
                try await self.changeEmail($0, try Self.parameter(context, "id"), try Self.parameter(context, "email"), primary: false)
            }
        }
        api.post("users/:id/api-keys") { request, context in
            // Only for oneself: the directory refuses a key for anyone else (own_keys_only).
            try await self.run(request, context, needs: nil) { try await self.createAPIKey($0, try Self.parameter(context, "id"), request) }
        }
        api.post("api-keys") { request, context in try await self.createAPIKeyWithPassword(request, context) }
        api.delete("api-keys/:id") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.revokeAPIKey($0, try Self.parameter(context, "id")) }
        }
        api.get("users/:id/messages") { request, context in
            try await self.run(request, context, needs: nil) { try await self.messages($0, try Self.parameter(context, "id"), request) }
        }
        api.get("messages/:id") { request, context in
            try await self.run(request, context, needs: nil) { try await self.message($0, try Self.parameter(context, "id")) }
        }
        api.get("suppressions") { request, context in try await self.run(request, context, needs: nil) { try await self.suppressions($0, request) } }
        api.delete("suppressions/:address") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.removeSuppression($0, try Self.parameter(context, "address")) }
        }
        api.get("diagnosis") { request, context in
            try await self.run(request, context, needs: nil) { try await self.diagnose($0, request.uri.queryParameters.get("user") ?? "", request) }
        }
        api.get("users/:id/diagnosis") { request, context in
            try await self.run(request, context, needs: nil) { try await self.diagnose($0, try Self.parameter(context, "id"), request) }
        }
        api.post("mail/test") { request, context in try await self.run(request, context, needs: Self.manage) { try await self.mailTest($0, request) } }
        api.get("audit") { request, context in try await self.run(request, context, needs: nil) { try await self.audit($0, request) } }
        api.get("organizations") { request, context in try await self.run(request, context, needs: nil) { try await self.organizations($0) } }
        api.post("organizations") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.createOrganization($0, request) }
        }
        api.patch("organizations/:id") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.updateOrganization($0, try Self.parameter(context, "id"), request) }
        }
        api.delete("organizations/:id") { request, context in
            try await self.run(request, context, needs: Self.manage) { try await self.deleteOrganization($0, try Self.parameter(context, "id")) }
        }
    }

    // MARK: Authentication and errors

    private func run(
        _ request: Request, _ context: GatewayContext, needs permission: String?, _ body: (Admin) async throws -> any Encodable
    ) async throws -> Response {
        try await Self.answering {
            guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
                throw Failure(status: .unauthorized, code: "unauthenticated", message: "send an API key as `Authorization: Bearer <key>`")
            }
            var authenticate = Rekey_Directory_V1_AuthenticateApiKeyRequest()
            authenticate.key = String(header.dropFirst(7))
            let authenticated: Rekey_Directory_V1_AuthenticateApiKeyResponse
            do {
                authenticated = try await self.directory.authenticateApiKey(authenticate, options: Backends.options(context.requestID))
            } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument {
                throw Failure(status: .unauthorized, code: "unauthenticated", message: "the API key is unknown, revoked or expired")
            }
            guard let user = authenticated.user else {
                throw Failure(status: .unauthorized, code: "unauthenticated", message: "the API key is unknown, revoked or expired")
            }
            guard user.staff else {
                throw Failure(status: .forbidden, code: "permission_denied", message: "the admin API is for staff")
            }
            if let permission, !authenticated.permissions.contains(permission) {
                throw Failure(
                    status: .forbidden, code: "permission_denied",
                    message: "this needs the permission \(permission) (Create and update users and organizations)"
                )
            }
            let admin = Admin(user: user, permissions: authenticated.permissions, clientAddress: context.clientAddress, requestID: context.requestID)
            return try Self.json(try await body(admin))
        }
    }

    /// Runs a route's body and turns the errors a caller can act on into JSON answers: the API's
    /// own failures, numbers out of range (400) and the services' refusals. UNAVAILABLE and
    /// DEADLINE_EXCEEDED go on to the middleware, which names the service in a 503.
    static func answering(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let failure as Failure {
            return Self.error(failure.status, failure.code, failure.message)
        } catch let failure as OutOfBounds {
            return Self.error(.badRequest, "invalid_argument", failure.description)
        } catch is NIOTooManyBytesError {
            return Self.error(.contentTooLarge, "too_large", "the body is larger than this call takes (1 MiB of JSON)")
        } catch let error as RPCError where error.code != .unavailable && error.code != .deadlineExceeded {
            return Self.error(for: error)
        }
    }

    static func error(for error: RPCError) -> Response {
        let status: HTTPResponse.Status
        switch error.code {
        case .invalidArgument: status = .badRequest
        case .notFound: status = .notFound
        case .alreadyExists: status = .conflict
        case .failedPrecondition: status = .conflict
        case .permissionDenied: status = .forbidden
        case .unauthenticated: status = .unauthorized
        case .resourceExhausted: status = .tooManyRequests
        case .outOfRange: status = .contentTooLarge
        default: status = .internalServerError
        }
        // A refusal names why (outranked, owner_only, own_keys_only, …); other errors their status.
        let code = error.code == .permissionDenied ? error.trailers[MetadataKey.refusal] ?? "permission_denied" : error.code.description.lowercased()
        var response = Self.error(status, code, error.code == .internalError ? "something went wrong" : error.message)
        if let retry = error.trailers[MetadataKey.retryAfterSeconds] {
            response.headers[.retryAfter] = retry
        }
        return response
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": ["code": code, "message": message]], options: [.sortedKeys])) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func json(_ value: any Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func parameter(_ context: GatewayContext, _ name: String) throws -> String {
        guard let value = context.parameters.get(name) else {
            throw Failure(status: .badRequest, code: "invalid_argument", message: "missing \(name)")
        }
        return try Self.text(value.removingPercentEncoding ?? value, name)
    }

    /// A text query parameter; nil when absent. Control characters are refused here, in the
    /// request's terms, rather than by a service deeper down.
    static func query(_ request: Request, _ name: String) throws -> String? {
        try request.uri.queryParameters.get(name).map { try Self.text($0, name) }
    }

    static func text(_ value: String, _ name: String) throws -> String {
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw Failure(status: .badRequest, code: "invalid_argument", message: "\(name) must not contain control characters")
        }
        return value
    }

    /// A whole-number query parameter within `range`; the default when absent; a 400 naming the
    /// parameter and its range for anything else (empty, negative, too large, not a number).
    static func integer(_ request: Request, _ name: String, in range: ClosedRange<Int>, default defaultValue: Int) throws -> Int {
        try Bounded.integer(request.uri.queryParameters.get(name), name, in: range, default: defaultValue)
    }

    /// `true` or `false`; false when absent.
    static func flag(_ request: Request, _ name: String) throws -> Bool {
        switch request.uri.queryParameters.get(name) {
        case nil, "false": return false
        case "true": return true
        default: throw Failure(status: .badRequest, code: "invalid_argument", message: "\(name) must be true or false")
        }
    }

    func body<T: Decodable>(_ request: Request, as type: T.Type) async throws -> T {
        var request = request
        let buffer = try await request.collectBody(upTo: 1 << 20)
        do {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            return try decoder.decode(T.self, from: Data(buffer: buffer))
        } catch {
            throw Failure(status: .badRequest, code: "invalid_argument", message: JSONBodyError.describe(error))
        }
    }

    // MARK: Users

    func search(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        var search = Rekey_Directory_V1_SearchUsersRequest()
        search.query = try Self.query(request, "q") ?? ""
        switch try Self.query(request, "scope") ?? "staff" {
        case "staff": search.scope = .staff
        case "all": search.scope = .all
        default: throw Failure(status: .badRequest, code: "invalid_argument", message: "scope is staff or all")
        }
        search.pageSize = UInt32(try Self.integer(request, "page_size", in: 1...100, default: 20))
        search.pageToken = try Self.query(request, "page_token") ?? ""
        let page = try await self.directory.searchUsers(search, options: admin.options)
        return UsersPageJSON(users: page.users.map { UserJSON($0) }, nextPageToken: page.nextPageToken)
    }

    func list(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        var list = Rekey_Directory_V1_ListUsersRequest()
        list.pageSize = UInt32(try Self.integer(request, "page_size", in: 1...500, default: 50))
        list.pageToken = try Self.query(request, "page_token") ?? ""
        list.role = try Self.query(request, "role") ?? ""
        list.organizationID = try Self.query(request, "organization_id") ?? ""
        switch try Self.query(request, "state") ?? "" {
        case "": break
        case "active": list.state = .active
        case "disabled": list.state = .disabled
        default: throw Failure(status: .badRequest, code: "invalid_argument", message: "state is active or disabled")
        }
        let page = try await self.directory.listUsers(list, options: admin.options)
        return UsersPageJSON(users: page.users.map { UserJSON($0) }, nextPageToken: page.nextPageToken)
    }

    func lookup(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        var find = Rekey_Directory_V1_FindUserByEmailRequest()
        find.email = try Self.query(request, "email") ?? ""
        let found = try await self.directory.findUserByEmail(find, options: admin.options)
        return LookupJSON(user: UserJSON(found.user ?? .init()), matched: EmailJSON(found.matched ?? .init()))
    }

    /// The user `id`; with `action`, only if the admin may take that action on them (the
    /// directory checks the ranks and audits a refusal).
    func user(_ admin: Admin, _ id: String, for action: String? = nil) async throws -> Rekey_Directory_V1_User {
        var get = Rekey_Directory_V1_GetUserRequest()
        get.userID = id
        if let action {
            get.actor = admin.directoryActor
            get.forAction = action
        }
        guard let user = try await self.directory.getUser(get, options: admin.options).user else {
            throw Failure(status: .notFound, code: "not_found", message: "no user has the id \(id)")
        }
        return user
    }

    func show(_ admin: Admin, _ id: String) async throws -> any Encodable {
        UserJSON(try await self.user(admin, id))
    }

    struct CreateUserBody: Decodable {
        var name: String
        var email: String
        var role: String
        var organizationId: String?
        var locale: String?
    }

    func create(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: CreateUserBody.self)
        var create = Rekey_Directory_V1_CreateUserRequest()
        create.name = body.name
        create.email = body.email
        create.role = body.role
        create.organizationID = body.organizationId ?? ""
        create.locale = body.locale ?? ""
        create.actor = admin.directoryActor
        let created = try await self.directory.createUser(create, options: admin.options)
        return UserJSON(created.user ?? .init(), warnings: created.warnings)
    }

    struct UpdateUserBody: Decodable {
        var name: String?
        var role: String?
        var organizationId: String?
        var locale: String?
    }

    func update(_ admin: Admin, _ id: String, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: UpdateUserBody.self)
        var update = Rekey_Directory_V1_UpdateUserRequest()
        update.userID = id
        if let name = body.name { update.name = name; update.fields.append("name") }
        if let role = body.role { update.role = role; update.fields.append("role") }
        if let organization = body.organizationId { update.organizationID = organization; update.fields.append("organization_id") }
        if let locale = body.locale { update.locale = locale; update.fields.append("locale") }
        update.actor = admin.directoryActor
        return UserJSON(try await self.directory.updateUser(update, options: admin.options).user ?? .init())
    }

    func setState(_ admin: Admin, _ id: String, _ state: Rekey_Directory_V1_UserState) async throws -> any Encodable {
        var request = Rekey_Directory_V1_SetUserStateRequest()
        request.userID = id
        request.state = state
        request.actor = admin.directoryActor
        return UserJSON(try await self.directory.setUserState(request, options: admin.options).user ?? .init())
    }

    struct AddEmailBody: Decodable {
        var address: String
        var verified: Bool?
    }

    func addEmail(_ admin: Admin, _ id: String, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: AddEmailBody.self)
        var add = Rekey_Directory_V1_AddEmailRequest()
        add.userID = id
        add.address = body.address
        add.verified = body.verified ?? false
        add.actor = admin.directoryActor
        let added = try await self.directory.addEmail(add, options: admin.options)
        return UserJSON(added.user ?? .init(), warnings: added.warnings)
    }

    /// Makes an address primary (and tells the previous primary address), or removes it.
    func changeEmail(_ admin: Admin, _ id: String, _ emailID: String, primary: Bool) async throws -> any Encodable {
        var change = Rekey_Directory_V1_EmailChangeRequest()
        change.userID = id
        change.emailID = emailID
        change.actor = admin.directoryActor
        guard primary else {
            return UserJSON(try await self.directory.removeEmail(change, options: admin.options).user ?? .init())
        }
        let before = try await self.user(admin, id, for: "email.primary")
        let after = try await self.directory.setPrimaryEmail(change, options: admin.options).user ?? .init()
        if let previous = before.emails.first(where: \.primary), let new = after.emails.first(where: \.primary), previous.id != new.id {
            do {
                try await self.flows.notifyPrimaryChanged(
                    user: after, previous: previous, new: new, changedBy: admin.user, clientAddress: admin.clientAddress, requestID: admin.requestID
                )
            } catch {
                // The change stands; the notice is what failed, and the log says so.
                self.flows.logger.error(
                    "the primary address changed but the notice to the previous one was not queued",
                    metadata: ["request.id": "\(admin.requestID)", "user.id": "\(id)", "error": "\(error)"]
                )
            }
        }
        return UserJSON(after)
    }

    struct CreateKeyBody: Decodable {
        var name: String
        var lifetimeDays: Int?
    }

    struct KeyJSON: Encodable {
        var id: String
        var userId: String
        var name: String
        var expiresAt: String?
        /// Shown once, when the key is made.
        var key: String?
    }

    func createAPIKey(_ admin: Admin, _ id: String, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: CreateKeyBody.self)
        var create = Rekey_Directory_V1_CreateApiKeyRequest()
        create.userID = id
        create.name = body.name
        create.lifetimeDays = UInt32(try Bounded.integer(body.lifetimeDays ?? 0, "$.lifetime_days", in: 0...3650))
        create.actor = admin.directoryActor
        let created = try await self.directory.createApiKey(create, options: admin.options)
        let info = created.info ?? .init()
        return KeyJSON(id: info.id, userId: info.userID, name: info.name, expiresAt: Self.time(info.expiresAtUnixMs), key: created.key)
    }

    struct PasswordKeyBody: Decodable {
        var email: String
        var password: String
        var name: String
        var lifetimeDays: Int?
    }

    /// `POST /api/admin/v1/api-keys` with the staff member's own email address and password: how
    /// someone without a key gets their first one (`rekey login --email`). The sign-in counts
    /// toward the same limits as the sign-on page.
    func createAPIKeyWithPassword(_ request: Request, _ context: GatewayContext) async throws -> Response {
        try await Self.answering {
            let body = try await self.body(request, as: PasswordKeyBody.self)
            let lifetime = try Bounded.integer(body.lifetimeDays ?? 0, "$.lifetime_days", in: 0...3650)
            let user: Rekey_Directory_V1_User
            do {
                user = try await self.flows.signIn(email: body.email, password: body.password, clientAddress: context.clientAddress, requestID: context.requestID)
            } catch let error as RPCError where error.code == .unauthenticated || error.code == .invalidArgument {
                throw Failure(status: .unauthorized, code: "unauthenticated", message: "the email address or the password is not right")
            }
            guard user.staff else {
                throw Failure(status: .forbidden, code: "permission_denied", message: "the admin API is for staff")
            }
            var create = Rekey_Directory_V1_CreateApiKeyRequest()
            create.userID = user.id
            create.name = body.name
            create.lifetimeDays = UInt32(lifetime)
            create.actor = Flows.directoryActor(user.id, context.clientAddress)
            let created = try await self.directory.createApiKey(create, options: Backends.options(context.requestID))
            let info = created.info ?? .init()
            return try Self.json(KeyJSON(id: info.id, userId: info.userID, name: info.name, expiresAt: Self.time(info.expiresAtUnixMs), key: created.key))
        }
    }

    func revokeAPIKey(_ admin: Admin, _ id: String) async throws -> any Encodable {
        var revoke = Rekey_Directory_V1_RevokeApiKeyRequest()
        revoke.keyID = id
        revoke.actor = admin.directoryActor
        let info = try await self.directory.revokeApiKey(revoke, options: admin.options).info ?? .init()
        return KeyJSON(id: info.id, userId: info.userID, name: info.name, expiresAt: Self.time(info.expiresAtUnixMs), key: nil)
    }

    /// The most bytes an import file may have (the directory's staged-import limit).
    static let maxImportBytes = 8 << 20
    /// Bytes per chunk sent to the directory, well inside its frame limit.
    static let importChunk = 512 << 10

    /// `POST users/import`: the CSV body goes to the directory in chunks (a staged import, so the
    /// file may be larger than one RPC frame) and is committed all-or-nothing in one step. An
    /// `Idempotency-Key` header makes a retry after a lost answer return the first outcome.
    func importUsers(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: Self.maxImportBytes)
        } catch is NIOTooManyBytesError {
            throw Failure(status: .contentTooLarge, code: "too_large", message: "the file is larger than \(Self.maxImportBytes) bytes (8 MiB); split it")
        }
        var begin = Rekey_Directory_V1_BeginImportRequest()
        begin.actor = admin.directoryActor
        begin.partial = try Self.flag(request, "partial")
        begin.importKey = try request.headers[.idempotencyKey].map { try Self.text($0, "Idempotency-Key") } ?? ""
        let options = Backends.options(admin.requestID, timeout: .seconds(120))
        let stage = try await self.directory.beginImport(begin, options: options)
        if let outcome = stage.outcome {
            return ImportJSON(outcome)
        }
        let bytes = Array(buffer: body)
        var sequence: UInt32 = 0
        for start in stride(from: 0, to: bytes.count, by: Self.importChunk) {
            var append = Rekey_Directory_V1_AppendImportRequest()
            append.importID = stage.importID
            append.sequence = sequence
            append.csv = Array(bytes[start..<min(start + Self.importChunk, bytes.count)])
            _ = try await self.directory.appendImport(append, options: options)
            sequence += 1
        }
        var commit = Rekey_Directory_V1_CommitImportRequest()
        commit.importID = stage.importID
        return ImportJSON(try await self.directory.commitImport(commit, options: options))
    }

    // MARK: Mail

    func sendReset(_ admin: Admin, _ id: String) async throws -> any Encodable {
        let user = try await self.user(admin, id, for: "password_reset.send")
        guard user.state == .active else {
            throw Failure(status: .conflict, code: "failed_precondition", message: "\(user.name) is disabled; enable the account first")
        }
        let sent = try await self.flows.sendReset(user: user, primary: nil, admin: admin.user.id, clientAddress: admin.clientAddress, requestID: admin.requestID)
        return SentJSON(messageId: sent.messageID, sentTo: Flows.mask(sent.address), status: Self.status(sent.status))
    }

    struct VerificationBody: Decodable {
        var emailId: String?
    }

    func sendVerification(_ admin: Admin, _ id: String, _ request: Request) async throws -> any Encodable {
        var request = request
        let raw = try await request.collectBody(upTo: 64 * 1024)
        var emailID: String?
        if raw.readableBytes > 0 {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            emailID = (try? decoder.decode(VerificationBody.self, from: Data(buffer: raw)))?.emailId
        }
        let user = try await self.user(admin, id, for: "verification.send")
        guard let email = emailID.map({ id in user.emails.first { $0.id == id } }) ?? user.emails.first(where: \.primary) else {
            throw Failure(status: .notFound, code: "not_found", message: "the user has no email address with the id \(emailID ?? "")")
        }
        let sent = try await self.flows.sendVerification(user: user, email: email, admin: admin.user.id, clientAddress: admin.clientAddress, requestID: admin.requestID)
        return SentJSON(messageId: sent.messageID, sentTo: Flows.mask(sent.address), status: Self.status(sent.status))
    }

    static func status(_ status: Rekey_Notifier_V1_EnqueueStatus) -> String {
        switch status {
        case .queued: return "queued"
        case .suppressed: return "suppressed"
        case .duplicate: return "duplicate"
        default: return "unknown"
        }
    }

    func messages(_ admin: Admin, _ id: String, _ request: Request) async throws -> any Encodable {
        var list = Rekey_Notifier_V1_ListMessagesRequest()
        list.userID = id
        list.pageSize = UInt32(try Self.integer(request, "page_size", in: 1...100, default: 20))
        list.pageToken = try Self.query(request, "page_token") ?? ""
        let page = try await self.notifier.listMessages(list, options: admin.options)
        return MessagesJSON(messages: page.messages.map { MessageJSON($0, mask: !admin.permissions.contains(Self.manage)) }, nextPageToken: page.nextPageToken)
    }

    func message(_ admin: Admin, _ id: String) async throws -> any Encodable {
        var get = Rekey_Notifier_V1_GetMessageRequest()
        get.messageID = id
        return MessageJSON(try await self.notifier.getMessage(get, options: admin.options).message ?? .init(), mask: !admin.permissions.contains(Self.manage))
    }

    func suppressions(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        var list = Rekey_Notifier_V1_ListSuppressionsRequest()
        list.address = try Self.query(request, "address") ?? ""
        list.pageSize = UInt32(try Self.integer(request, "page_size", in: 1...500, default: 50))
        list.pageToken = try Self.query(request, "page_token") ?? ""
        let page = try await self.notifier.listSuppressions(list, options: admin.options)
        return SuppressionsJSON(
            suppressions: page.suppressions.map { SuppressionsJSON.Item(address: $0.address, reason: $0.reason, createdAt: Self.time($0.createdAtUnixMs), messageId: $0.messageID) },
            nextPageToken: page.nextPageToken
        )
    }

    func removeSuppression(_ admin: Admin, _ address: String) async throws -> any Encodable {
        var remove = Rekey_Notifier_V1_RemoveSuppressionRequest()
        remove.address = address
        remove.actor = Flows.notifierActor(admin.user.id, admin.clientAddress)
        let removed = try await self.notifier.removeSuppression(remove, options: admin.options).removed
        return SuppressionsJSON.Item(address: removed?.address ?? address, reason: removed?.reason ?? "", createdAt: Self.time(removed?.createdAtUnixMs ?? 0), messageId: removed?.messageID ?? "")
    }

    // MARK: Diagnosis

    func diagnose(_ admin: Admin, _ input: String, _ request: Request) async throws -> any Encodable {
        guard !input.isEmpty, input.count <= 254 else {
            throw Failure(status: .badRequest, code: "invalid_argument", message: "give the user: an id, an email address or a name")
        }
        let window = try Self.window(try Self.query(request, "since") ?? "7d")
        let since = Int64(Date().timeIntervalSince1970 * 1000) - window.milliseconds
        return try await Diagnoser(flows: self.flows).diagnose(
            input, since: since, requestID: admin.requestID, canSeeAddresses: admin.permissions.contains(Self.manage)
        )
    }

    /// How far back a diagnosis looks: `30m`, `12h`, `7d`; from one minute to 90 days.
    static func window(_ text: String) throws(OutOfBounds) -> Duration {
        try Bounded.duration(text, "since", in: Limits.diagnosisWindow)
    }

    struct MailTestBody: Decodable {
        var address: String
    }

    func mailTest(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: MailTestBody.self)
        var test = Rekey_Notifier_V1_SendTestRequest()
        test.toAddress = body.address
        test.requestedBy = Flows.notifierActor(admin.user.id, admin.clientAddress)
        let sent = try await self.notifier.sendTest(test, options: admin.options)
        return SentJSON(messageId: sent.messageID, sentTo: body.address, status: Self.status(sent.status))
    }

    // MARK: Audit

    /// The audit trail, newest first: every admin change and every refused attempt; `target`
    /// narrows it to one user (or organization, or key).
    func audit(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        var list = Rekey_Directory_V1_ListAuditRecordsRequest()
        list.target = try Self.query(request, "target") ?? ""
        list.pageSize = UInt32(try Self.integer(request, "page_size", in: 1...500, default: 50))
        list.pageToken = try Self.query(request, "page_token") ?? ""
        let page = try await self.directory.listAuditRecords(list, options: admin.options)
        return AuditPageJSON(records: page.records.map(AuditJSON.init), nextPageToken: page.nextPageToken)
    }

    // MARK: Organizations

    func organizations(_ admin: Admin) async throws -> any Encodable {
        let list = try await self.directory.listOrganizations(.init(), options: admin.options)
        return ["organizations": list.organizations.map(OrganizationJSON.init)]
    }

    struct CreateOrganizationBody: Decodable {
        var name: String
        var domains: [String]?
    }

    func createOrganization(_ admin: Admin, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: CreateOrganizationBody.self)
        var create = Rekey_Directory_V1_CreateOrganizationRequest()
        create.name = body.name
        create.domains = body.domains ?? []
        create.actor = admin.directoryActor
        return OrganizationJSON(try await self.directory.createOrganization(create, options: admin.options).organization ?? .init())
    }

    struct UpdateOrganizationBody: Decodable {
        var name: String?
        var domains: [String]?
    }

    func updateOrganization(_ admin: Admin, _ id: String, _ request: Request) async throws -> any Encodable {
        let body = try await self.body(request, as: UpdateOrganizationBody.self)
        var update = Rekey_Directory_V1_UpdateOrganizationRequest()
        update.organizationID = id
        if let name = body.name { update.name = name; update.fields.append("name") }
        if let domains = body.domains { update.domains = domains; update.fields.append("domains") }
        update.actor = admin.directoryActor
        return OrganizationJSON(try await self.directory.updateOrganization(update, options: admin.options).organization ?? .init())
    }

    func deleteOrganization(_ admin: Admin, _ id: String) async throws -> any Encodable {
        var delete = Rekey_Directory_V1_DeleteOrganizationRequest()
        delete.organizationID = id
        delete.actor = admin.directoryActor
        _ = try await self.directory.deleteOrganization(delete, options: admin.options)
        return ["deleted": id]
    }

    static func time(_ unixMilliseconds: Int64) -> String? {
        guard unixMilliseconds > 0 else { return nil }
        return Date(timeIntervalSince1970: Double(unixMilliseconds) / 1000).ISO8601Format()
    }
}
