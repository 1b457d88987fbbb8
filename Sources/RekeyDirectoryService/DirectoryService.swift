import RekeyInput
import Logging
import Metrics
import RekeyCrypto
import RekeyDirectoryAPI
import RekeyRPC
import RekeySQLite

/// The `rekey.directory.v1.Directory` RPC service: converts messages, runs the store's work on the
/// database (``DirectoryDatabase``) and password hashing on the ``HashingPool``.
///
/// Metric: `rekey_directory_sign_ins_total{result}` (see `verifyPassword`).
package struct DirectoryService: Rekey_Directory_V1_Directory.ServiceProtocol {
    private let database: DirectoryDatabase
    private let store: DirectoryStore
    private let hashing: HashingPool
    private let policy: PasswordPolicy

    package init(database: DirectoryDatabase, store: DirectoryStore, hashing: HashingPool, policy: PasswordPolicy = PasswordPolicy()) {
        self.database = database
        self.store = store
        self.hashing = hashing
        self.policy = policy
    }

    private func db<R: Sendable>(_ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> R) async throws -> R {
        let store = self.store
        return try await self.database.withConnection { try body(store, $0) }
    }

    /// Runs work that only reads (see ``DirectoryDatabase/read(_:)``).
    private func read<R: Sendable>(_ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> R) async throws -> R {
        let store = self.store
        return try await self.database.read { try body(store, $0) }
    }

    /// Runs an admin action; a refusal (rank, grant, keys) is written to the audit trail as
    /// `refused.<action>` after the action's own transaction has rolled back, then returned.
    private func db<R: Sendable>(
        auditing actor: ActorInfo, _ action: String, target: String,
        _ body: @escaping @Sendable (DirectoryStore, any SQLConnection) throws -> R
    ) async throws -> R {
        do {
            return try await self.db(body)
        } catch DirectoryError.refused(let refusal, let message) {
            let detail = "\(refusal.rawValue): \(message)"
            try await self.db { store, c in try store.audit(actor, "refused." + action, target: target, detail: detail, in: c) }
            throw DirectoryError.refused(refusal, message: message)
        }
    }

    // MARK: Users

    package func createUser(request: Rekey_Directory_V1_CreateUserRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        var new = DirectoryStore.NewUser(name: request.name, role: request.role, email: request.email)
        new.organizationID = request.organizationID
        new.locale = request.locale
        new.emailVerified = request.emailVerified
        let actor = Self.actor(request.actor)
        let user = try await self.db(auditing: actor, "user.create", target: "") { [new] store, c in try store.createUser(new, actor: actor, in: c) }
        var response = Self.response(user)
        let email = new.email
        response.warnings = try await self.read { store, c in try store.lookAlikeWarnings(for: email, excludingUser: user.id, in: c) }
        return response
    }

    package func getUser(request: Rekey_Directory_V1_GetUserRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        guard !request.forAction.isEmpty || request.actor == nil else {
            throw DirectoryError.invalidArgument("for_action must name the action when an actor is given")
        }
        guard !request.forAction.isEmpty else {
            return Self.response(try await self.read { store, c in try store.user(request.userID, in: c) })
        }
        guard request.forAction.utf8.count <= 64, request.forAction.allSatisfy({ $0.isLetter || $0 == "." || $0 == "_" }) else {
            throw DirectoryError.invalidArgument("for_action must be at most 64 letters, dots and underscores")
        }
        guard request.requiredPermission.utf8.count <= 64 else {
            throw DirectoryError.invalidArgument("required_permission must be at most 64 bytes")
        }
        let actor = Self.actor(request.actor)
        return Self.response(try await self.db(auditing: actor, request.forAction, target: request.userID) { store, c in
            let user = try store.user(request.userID, in: c)
            if !request.requiredPermission.isEmpty {
                try store.authorize(actor, holding: request.requiredPermission, in: c)
            }
            try store.authorize(actor, toManage: user, in: c)
            return user
        })
    }

    package func updateUser(request: Rekey_Directory_V1_UpdateUserRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        var changes = DirectoryStore.UserChanges()
        guard !request.fields.isEmpty else {
            throw DirectoryError.invalidArgument("fields must name what to change: name, role, organization_id, locale")
        }
        for field in request.fields {
            switch field {
            case "name": changes.name = request.name
            case "role": changes.role = request.role
            case "organization_id": changes.organizationID = request.organizationID
            case "locale": changes.locale = request.locale
            default: throw DirectoryError.invalidArgument("unknown field `\(field.prefix(80))`; fields are name, role, organization_id, locale")
            }
        }
        let actor = Self.actor(request.actor)
        return Self.response(try await self.db(auditing: actor, "user.update", target: request.userID) { [changes] store, c in
            try store.updateUser(request.userID, changes: changes, actor: actor, in: c)
        })
    }

    package func setUserState(request: Rekey_Directory_V1_SetUserStateRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        let state: UserStateValue
        switch request.state {
        case .active: state = .active
        case .disabled: state = .disabled
        default: throw DirectoryError.invalidArgument("state must be USER_STATE_ACTIVE or USER_STATE_DISABLED")
        }
        let actor = Self.actor(request.actor)
        return Self.response(try await self.db(auditing: actor, state == .disabled ? "user.disable" : "user.enable", target: request.userID) { store, c in
            try store.setState(request.userID, state, actor: actor, in: c)
        })
    }

    package func findUserByEmail(request: Rekey_Directory_V1_FindUserByEmailRequest, context: ServerContext) async throws -> Rekey_Directory_V1_FindUserByEmailResponse {
        guard let (user, matched) = try await self.store.findUser(byEmail: request.email, in: self.database) else {
            throw DirectoryError.notFound("no user has that email address")
        }
        var response = Rekey_Directory_V1_FindUserByEmailResponse()
        response.user = Self.wire(user)
        response.matched = Self.wire(matched)
        response.primary = user.primaryEmail.map(Self.wire)
        return response
    }

    package func searchUsers(request: Rekey_Directory_V1_SearchUsersRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UsersPage {
        let staffOnly: Bool
        switch request.scope {
        case .staff: staffOnly = true
        case .all: staffOnly = false
        default: throw DirectoryError.invalidArgument("scope must be SEARCH_SCOPE_STAFF or SEARCH_SCOPE_ALL")
        }
        let pageSize = try Bounded.pageSize(request.pageSize, default: 20, max: 100)
        let (users, next) = try await self.read { store, c in
            try store.search(request.query, staffOnly: staffOnly, pageSize: pageSize, pageToken: request.pageToken, in: c)
        }
        var page = Rekey_Directory_V1_UsersPage()
        page.users = users.map(Self.wire)
        page.nextPageToken = next
        return page
    }

    package func listUsers(request: Rekey_Directory_V1_ListUsersRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UsersPage {
        var filter = DirectoryStore.ListFilter()
        filter.role = request.role
        filter.organizationID = request.organizationID
        switch request.state {
        case .active: filter.state = .active
        case .disabled: filter.state = .disabled
        case .unspecified: filter.state = nil
        case .unrecognized(let value): throw DirectoryError.invalidArgument("unknown state \(value)")
        }
        filter.hasPassword = try Self.presence(request.hasPassword, "has_password")
        filter.primaryVerified = try Self.presence(request.primaryVerified, "primary_verified")
        let pageSize = try Bounded.pageSize(request.pageSize, default: 50, max: 500)
        let (users, next, total) = try await self.read { [filter] store, c in
            try store.listUsers(filter: filter, pageSize: pageSize, pageToken: request.pageToken, countTotal: request.countTotal, in: c)
        }
        var page = Rekey_Directory_V1_UsersPage()
        page.users = users.map(Self.wire)
        page.nextPageToken = next
        page.total = UInt64(total?.count ?? 0)
        page.totalCapped = total?.capped ?? false
        return page
    }

    private static func presence(_ value: Rekey_Directory_V1_Presence, _ name: String) throws -> Bool? {
        switch value {
        case .unspecified: return nil
        case .yes: return true
        case .no: return false
        case .unrecognized(let value): throw DirectoryError.invalidArgument("unknown \(name) \(value)")
        }
    }

    // MARK: Email identities

    package func addEmail(request: Rekey_Directory_V1_AddEmailRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        let actor = Self.actor(request.actor)
        var response = Self.response(try await self.db(auditing: actor, "email.add", target: request.userID) { store, c in
            try store.addEmail(request.userID, address: request.address, verified: request.verified, actor: actor, in: c)
        })
        response.warnings = try await self.read { store, c in try store.lookAlikeWarnings(for: request.address, excludingUser: request.userID, in: c) }
        return response
    }

    package func removeEmail(request: Rekey_Directory_V1_EmailChangeRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        let actor = Self.actor(request.actor)
        return Self.response(try await self.db(auditing: actor, "email.remove", target: request.userID) { store, c in try store.removeEmail(request.userID, emailID: request.emailID, actor: actor, in: c) })
    }

    package func setPrimaryEmail(request: Rekey_Directory_V1_EmailChangeRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        let actor = Self.actor(request.actor)
        return Self.response(try await self.db(auditing: actor, "email.primary", target: request.userID) { store, c in try store.setPrimaryEmail(request.userID, emailID: request.emailID, actor: actor, in: c) })
    }

    package func markEmailVerified(request: Rekey_Directory_V1_EmailChangeRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        let actor = Self.actor(request.actor)
        return Self.response(try await self.db(auditing: actor, "email.verify", target: request.userID) { store, c in try store.markEmailVerified(request.userID, emailID: request.emailID, actor: actor, in: c) })
    }

    // MARK: Organizations

    package func createOrganization(request: Rekey_Directory_V1_CreateOrganizationRequest, context: ServerContext) async throws -> Rekey_Directory_V1_OrganizationResponse {
        let actor = Self.actor(request.actor)
        let record = try await self.db { store, c in try store.createOrganization(name: request.name, domains: request.domains, actor: actor, in: c) }
        var response = Rekey_Directory_V1_OrganizationResponse()
        response.organization = Self.wire(record)
        return response
    }

    package func getOrganization(request: Rekey_Directory_V1_GetOrganizationRequest, context: ServerContext) async throws -> Rekey_Directory_V1_OrganizationResponse {
        let record = try await self.read { store, c in try store.organization(request.organizationID, in: c) }
        var response = Rekey_Directory_V1_OrganizationResponse()
        response.organization = Self.wire(record)
        return response
    }

    package func listOrganizations(request: Rekey_Directory_V1_ListOrganizationsRequest, context: ServerContext) async throws -> Rekey_Directory_V1_ListOrganizationsResponse {
        var response = Rekey_Directory_V1_ListOrganizationsResponse()
        response.organizations = try await self.read { store, c in try store.organizations(in: c) }.map(Self.wire)
        return response
    }

    // MARK: Roles and permissions

    package func updateOrganization(request: Rekey_Directory_V1_UpdateOrganizationRequest, context: ServerContext) async throws -> Rekey_Directory_V1_OrganizationResponse {
        guard !request.fields.isEmpty else {
            throw DirectoryError.invalidArgument("fields must name what to change: name, domains")
        }
        var name: String?
        var domains: [String]?
        for field in request.fields {
            switch field {
            case "name": name = request.name
            case "domains": domains = request.domains
            default: throw DirectoryError.invalidArgument("unknown field `\(field.prefix(80))`; fields are name, domains")
            }
        }
        let actor = Self.actor(request.actor)
        let organization = try await self.db { [name, domains] store, c in
            try store.updateOrganization(request.organizationID, name: name, domains: domains, actor: actor, in: c)
        }
        var response = Rekey_Directory_V1_OrganizationResponse()
        response.organization = Self.wire(organization)
        return response
    }

    package func deleteOrganization(request: Rekey_Directory_V1_DeleteOrganizationRequest, context: ServerContext) async throws -> Rekey_Directory_V1_DeleteOrganizationResponse {
        let actor = Self.actor(request.actor)
        try await self.db { store, c in try store.deleteOrganization(request.organizationID, actor: actor, in: c) }
        return Rekey_Directory_V1_DeleteOrganizationResponse()
    }

    package func createRole(request: Rekey_Directory_V1_CreateRoleRequest, context: ServerContext) async throws -> Rekey_Directory_V1_RoleResponse {
        let actor = Self.actor(request.actor)
        let role = try await self.db { store, c in
            try store.createRole(name: request.name, permissions: request.permissions, staff: request.staff, actor: actor, in: c)
        }
        var response = Rekey_Directory_V1_RoleResponse()
        response.role = Self.wire(role)
        return response
    }

    package func listRoles(request: Rekey_Directory_V1_ListRolesRequest, context: ServerContext) async throws -> Rekey_Directory_V1_ListRolesResponse {
        var response = Rekey_Directory_V1_ListRolesResponse()
        response.roles = try await self.read { store, c in try store.roles(in: c) }.map(Self.wire)
        response.permissions = Permissions.all.map { permission in
            var wire = Rekey_Directory_V1_Permission()
            wire.name = permission.name
            wire.description = permission.description
            return wire
        }
        return response
    }

    package func checkPermission(request: Rekey_Directory_V1_CheckPermissionRequest, context: ServerContext) async throws -> Rekey_Directory_V1_CheckPermissionResponse {
        var response = Rekey_Directory_V1_CheckPermissionResponse()
        response.allowed = try await self.read { store, c in try store.hasPermission(request.userID, request.permission, in: c) }
        return response
    }

    // MARK: Passwords

    package func setPassword(request: Rekey_Directory_V1_SetPasswordRequest, context: ServerContext) async throws -> Rekey_Directory_V1_SetPasswordResponse {
        let user = try await self.db { store, c in try store.user(request.userID, in: c) }
        let problems = self.policy.problems(with: request.password, name: user.name, emails: user.emails.map(\.address))
        guard problems.isEmpty else {
            throw DirectoryError.invalidArgument(problems.joined(separator: "; "))
        }
        let hash = try await self.hashing.hash(request.password)
        let actor = Self.actor(request.actor)
        var response = Rekey_Directory_V1_SetPasswordResponse()
        response.passwordChangedAtUnixMs = try await self.db(auditing: actor, "password.set", target: request.userID) { store, c in
            try store.storePasswordHash(request.userID, hash: hash, actor: actor, revokeSessions: true, in: c)
        }
        return response
    }

    package func checkPasswordPolicy(request: Rekey_Directory_V1_CheckPasswordPolicyRequest, context: ServerContext) async throws -> Rekey_Directory_V1_CheckPasswordPolicyResponse {
        let user = try await self.db { store, c in try store.user(request.userID, in: c) }
        var response = Rekey_Directory_V1_CheckPasswordPolicyResponse()
        response.problems = self.policy.problems(with: request.password, name: user.name, emails: user.emails.map(\.address))
        return response
    }

    package func verifyPassword(request: Rekey_Directory_V1_VerifyPasswordRequest, context: ServerContext) async throws -> Rekey_Directory_V1_UserResponse {
        // Unknown addresses, disabled users and users without a password cost the same scrypt
        // work as a wrong password, and get the same answer.
        let candidate: (user: UserRecord, hash: String)?
        let reservation: DirectoryStore.SignInReservation
        do {
            (candidate, reservation) = try await self.db { store, c in
                let reservation = try store.reserveSignIn(clientAddress: request.clientAddress, email: request.email, in: c)
                return (try store.passwordCandidate(email: request.email, in: c), reservation)
            }
        } catch DirectoryError.signInLimited(let retryAfter) {
            Self.countSignIn("rate_limited")
            throw DirectoryError.signInLimited(retryAfter: retryAfter)
        }
        let verdict: PasswordHasher.Verification
        do {
            // The attempt was counted already: a refusal here still uses up one of the limit's.
            verdict = try await self.hashing.verify(request.password, against: candidate?.hash, client: request.clientAddress)
        } catch DirectoryError.signInLimited(let retryAfter) {
            Self.countSignIn("rate_limited")
            throw DirectoryError.signInLimited(retryAfter: retryAfter)
        }
        guard let candidate, verdict != .mismatch else {
            // The reservation stays: it is the failure's count.
            try await self.db { store, c in try store.forgetOldSignIns(in: c) }
            Self.countSignIn("refused")
            throw DirectoryError.unauthenticated("the email address or the password is not right")
        }
        try await self.db { store, c in try store.releaseSignIn(reservation, in: c) }
        Self.countSignIn("ok")
        if verdict == .matchNeedsRehash {
            let upgraded = try await self.hashing.hash(request.password)
            try await self.db { store, c in try store.upgradePasswordHash(candidate.user.id, from: candidate.hash, to: upgraded, in: c) }
            context.logger.info("upgraded a password hash to the current cost", metadata: ["user.id": "\(candidate.user.id)"])
        }
        return Self.response(candidate.user)
    }

    /// `rekey_directory_sign_ins_total{result}`: ok, refused (wrong address or password) or
    /// rate_limited.
    private static func countSignIn(_ result: String) {
        Counter(label: "rekey_directory_sign_ins_total", dimensions: [("result", result)]).increment()
    }

    // MARK: API keys

    package func createApiKey(request: Rekey_Directory_V1_CreateApiKeyRequest, context: ServerContext) async throws -> Rekey_Directory_V1_CreateApiKeyResponse {
        let days = try Bounded.integer(request.lifetimeDays, "lifetime_days", in: 0...3650)
        let lifetime: Duration? = days == 0 ? nil : .seconds(days * 86400)
        let actor = Self.actor(request.actor)
        let (key, record) = try await self.db(auditing: actor, "api_key.create", target: request.userID) { store, c in try store.createAPIKey(request.userID, name: request.name, lifetime: lifetime, actor: actor, in: c) }
        var response = Rekey_Directory_V1_CreateApiKeyResponse()
        response.key = key
        response.info = Self.wire(record)
        return response
    }

    package func revokeApiKey(request: Rekey_Directory_V1_RevokeApiKeyRequest, context: ServerContext) async throws -> Rekey_Directory_V1_RevokeApiKeyResponse {
        let actor = Self.actor(request.actor)
        var response = Rekey_Directory_V1_RevokeApiKeyResponse()
        response.info = Self.wire(try await self.db(auditing: actor, "api_key.revoke", target: request.keyID) { store, c in try store.revokeAPIKey(request.keyID, actor: actor, in: c) })
        return response
    }

    package func authenticateApiKey(request: Rekey_Directory_V1_AuthenticateApiKeyRequest, context: ServerContext) async throws -> Rekey_Directory_V1_AuthenticateApiKeyResponse {
        // Read beside the writer; the once-a-minute note of the key's use is the only write.
        guard let check = try await self.read({ store, c in try store.checkAPIKey(request.key, in: c) }) else {
            throw DirectoryError.unauthenticated("the API key is not valid (unknown, revoked or expired)")
        }
        if check.touchDue {
            try await self.db { store, c in try store.touchAPIKey(check.key.id, in: c) }
        }
        var response = Rekey_Directory_V1_AuthenticateApiKeyResponse()
        response.user = Self.wire(check.user)
        response.keyID = check.key.id
        response.permissions = check.permissions
        return response
    }

    // MARK: Sessions

    package func createSession(request: Rekey_Directory_V1_CreateSessionRequest, context: ServerContext) async throws -> Rekey_Directory_V1_CreateSessionResponse {
        let (token, id, expiresAt) = try await self.db { store, c in try store.createSession(request.userID, in: c) }
        var response = Rekey_Directory_V1_CreateSessionResponse()
        response.token = token
        response.sessionID = id
        response.expiresAtUnixMs = expiresAt
        return response
    }

    package func validateSession(request: Rekey_Directory_V1_ValidateSessionRequest, context: ServerContext) async throws -> Rekey_Directory_V1_ValidateSessionResponse {
        // Read beside the writer; moving the idle deadline (once a minute) is the only write.
        guard let check = try await self.read({ store, c in try store.checkSession(request.token, in: c) }) else {
            throw DirectoryError.unauthenticated("the session is not valid (unknown, expired, idle too long or revoked)")
        }
        if check.touchDue {
            try await self.db { store, c in try store.touchSession(check.id, in: c) }
        }
        var response = Rekey_Directory_V1_ValidateSessionResponse()
        response.user = Self.wire(check.user)
        response.sessionID = check.id
        response.expiresAtUnixMs = check.expiresAt
        response.permissions = check.permissions
        return response
    }

    package func revokeSessions(request: Rekey_Directory_V1_RevokeSessionsRequest, context: ServerContext) async throws -> Rekey_Directory_V1_RevokeSessionsResponse {
        let actor = Self.actor(request.actor)
        var response = Rekey_Directory_V1_RevokeSessionsResponse()
        response.revoked = UInt32(try await self.db(auditing: actor, "sessions.revoke", target: request.userID) { store, c in try store.revokeSessions(request.userID, actor: actor, in: c) })
        return response
    }

    // MARK: Conversions

    // MARK: Import and audit

    package func importUsers(request: Rekey_Directory_V1_ImportUsersRequest, context: ServerContext) async throws -> Rekey_Directory_V1_ImportUsersResponse {
        let actor = Self.actor(request.actor)
        let report = try await self.db(auditing: actor, "user.import", target: "") { store, c in
            try store.importUsers(csv: request.csv, partial: request.partial, actor: actor, in: c)
        }
        return Self.wire(report)
    }

    package func beginImport(request: Rekey_Directory_V1_BeginImportRequest, context: ServerContext) async throws -> Rekey_Directory_V1_BeginImportResponse {
        let actor = Self.actor(request.actor)
        let stage = try await self.db { store, c in try store.beginImport(key: request.importKey, partial: request.partial, actor: actor, in: c) }
        var response = Rekey_Directory_V1_BeginImportResponse()
        switch stage {
        case .staging(let id):
            response.importID = id
        case .finished(let id, let outcome):
            response.importID = id
            response.outcome = try Rekey_Directory_V1_ImportUsersResponse(serializedBytes: outcome)
        }
        return response
    }

    package func appendImport(request: Rekey_Directory_V1_AppendImportRequest, context: ServerContext) async throws -> Rekey_Directory_V1_AppendImportResponse {
        let sequence = try Bounded.integer(request.sequence, "sequence", in: 0...100_000)
        var response = Rekey_Directory_V1_AppendImportResponse()
        response.bytesStaged = UInt64(try await self.db { store, c in
            try store.appendImport(id: request.importID, sequence: sequence, csv: request.csv, in: c)
        })
        return response
    }

    package func commitImport(request: Rekey_Directory_V1_CommitImportRequest, context: ServerContext) async throws -> Rekey_Directory_V1_ImportUsersResponse {
        let outcome = try await self.db { store, c in
            try store.commitImport(id: request.importID, encode: { (try? Self.wire($0).serializedBytes()) ?? [] }, in: c)
        }
        return try Rekey_Directory_V1_ImportUsersResponse(serializedBytes: outcome)
    }

    /// Every row when there are at most ``reportRows``; otherwise the refused ones, the first
    /// ``reportRows`` of them, so that the answer fits in a frame whatever the file's size.
    static func wire(_ report: DirectoryStore.ImportReport) -> Rekey_Directory_V1_ImportUsersResponse {
        var response = Rekey_Directory_V1_ImportUsersResponse()
        response.committed = report.committed
        response.created = UInt32(report.created)
        response.refused = UInt32(report.refused)
        let shown = report.rows.count <= Self.reportRows ? report.rows[...] : report.rows.filter { $0.error != nil }.prefix(Self.reportRows)
        response.rows = shown.map { row in
            var result = Rekey_Directory_V1_ImportRowResult()
            result.line = UInt32(row.line)
            result.email = row.email
            result.userID = row.userID
            result.error = row.error ?? ""
            return result
        }
        response.rowsOmitted = UInt32(report.rows.count - shown.count)
        return response
    }

    static let reportRows = 1000

    package func listAuditRecords(request: Rekey_Directory_V1_ListAuditRecordsRequest, context: ServerContext) async throws -> Rekey_Directory_V1_ListAuditRecordsResponse {
        let pageSize = try Bounded.pageSize(request.pageSize, default: 50, max: 500)
        let (records, next) = try await self.read { store, c in
            try store.auditRecords(target: request.target, actor: request.actorUserID, pageSize: pageSize, pageToken: request.pageToken, in: c)
        }
        var response = Rekey_Directory_V1_ListAuditRecordsResponse()
        response.records = records.map { record in
            var wire = Rekey_Directory_V1_AuditRecord()
            wire.id = record.id
            wire.atUnixMs = record.at
            wire.actorUserID = record.actorUserID
            wire.actorClientAddress = record.actorClientAddress
            wire.action = record.action
            wire.target = record.target
            wire.detail = record.detail
            return wire
        }
        response.nextPageToken = next
        return response
    }

    private static func actor(_ actor: Rekey_Directory_V1_Actor?) -> ActorInfo {
        ActorInfo(userID: actor?.userID ?? "", clientAddress: actor?.clientAddress ?? "")
    }

    private static func response(_ user: UserRecord) -> Rekey_Directory_V1_UserResponse {
        var response = Rekey_Directory_V1_UserResponse()
        response.user = Self.wire(user)
        return response
    }

    static func wire(_ user: UserRecord) -> Rekey_Directory_V1_User {
        var wire = Rekey_Directory_V1_User()
        wire.id = user.id
        wire.name = user.name
        wire.role = user.role
        wire.staff = user.staff
        wire.organizationID = user.organizationID ?? ""
        wire.state = user.state == .active ? .active : .disabled
        wire.locale = user.locale
        wire.emails = user.emails.map(Self.wire)
        wire.hasPassword = user.passwordHash != nil
        wire.passwordChangedAtUnixMs = user.passwordChangedAt ?? 0
        wire.createdAtUnixMs = user.createdAt
        wire.updatedAtUnixMs = user.updatedAt
        return wire
    }

    static func wire(_ email: EmailRecord) -> Rekey_Directory_V1_EmailIdentity {
        var wire = Rekey_Directory_V1_EmailIdentity()
        wire.id = email.id
        wire.address = email.address
        wire.primary = email.isPrimary
        wire.verified = email.verified
        return wire
    }

    static func wire(_ organization: OrganizationRecord) -> Rekey_Directory_V1_Organization {
        var wire = Rekey_Directory_V1_Organization()
        wire.id = organization.id
        wire.name = organization.name
        wire.domains = organization.domains
        wire.createdAtUnixMs = organization.createdAt
        return wire
    }

    static func wire(_ role: RoleRecord) -> Rekey_Directory_V1_Role {
        var wire = Rekey_Directory_V1_Role()
        wire.name = role.name
        wire.permissions = role.permissions
        wire.staff = role.staff
        wire.builtin = role.builtin
        return wire
    }

    static func wire(_ key: APIKeyRecord) -> Rekey_Directory_V1_ApiKeyInfo {
        var wire = Rekey_Directory_V1_ApiKeyInfo()
        wire.id = key.id
        wire.userID = key.userID
        wire.name = key.name
        wire.createdAtUnixMs = key.createdAt
        wire.expiresAtUnixMs = key.expiresAt
        wire.lastUsedAtUnixMs = key.lastUsedAt ?? 0
        wire.revokedAtUnixMs = key.revokedAt ?? 0
        return wire
    }
}
