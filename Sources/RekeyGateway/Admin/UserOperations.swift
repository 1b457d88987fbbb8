import RekeyAdminModel
import RekeyDirectoryAPI
import RekeyRPC

/// Finding, reading, creating, changing and importing users.
package struct UserOperations: Sendable {
    let flows: Flows
    var directory: Rekey_Directory_V1_Directory.Client { self.flows.backends.directory }

    package enum Scope: String, Sendable {
        /// The staff directory.
        case staff
        /// Unified search: customers too.
        case all
    }

    /// Type-to-filter search over names and addresses.
    package func search(_ actor: AdminActor, text: String, scope: Scope, page: PageRequest) async throws(AdminError) -> Admin.UsersPage {
        try await adminCall {
            var search = Rekey_Directory_V1_SearchUsersRequest()
            search.query = text
            search.scope = scope == .staff ? .staff : .all
            search.pageSize = UInt32(clamping: page.size)
            search.pageToken = page.token
            let found = try await self.directory.searchUsers(search, options: actor.options)
            return Admin.UsersPage(users: found.users.map { Admin.User($0) }, nextPageToken: found.nextPageToken)
        }
    }

    package struct Filter: Sendable {
        package var role = ""
        package var organizationID = ""
        /// Nil: both.
        package var disabled: Bool?
        package var hasPassword: Bool?
        package var primaryVerified: Bool?
        /// Also count the matches over all pages.
        package var countTotal = false

        package init(
            role: String = "", organizationID: String = "", disabled: Bool? = nil, hasPassword: Bool? = nil, primaryVerified: Bool? = nil,
            countTotal: Bool = false
        ) {
            self.role = role
            self.organizationID = organizationID
            self.disabled = disabled
            self.hasPassword = hasPassword
            self.primaryVerified = primaryVerified
            self.countTotal = countTotal
        }
    }

    /// Every user, in the order they were created.
    package func list(_ actor: AdminActor, filter: Filter, page: PageRequest) async throws(AdminError) -> Admin.UsersPage {
        try await adminCall {
            var list = Rekey_Directory_V1_ListUsersRequest()
            list.pageSize = UInt32(clamping: page.size)
            list.pageToken = page.token
            list.role = filter.role
            list.organizationID = filter.organizationID
            if let disabled = filter.disabled { list.state = disabled ? .disabled : .active }
            if let hasPassword = filter.hasPassword { list.hasPassword = hasPassword ? .yes : .no }
            if let verified = filter.primaryVerified { list.primaryVerified = verified ? .yes : .no }
            list.countTotal = filter.countTotal
            let found = try await self.directory.listUsers(list, options: actor.options)
            return Admin.UsersPage(
                users: found.users.map { Admin.User($0) }, nextPageToken: found.nextPageToken,
                total: filter.countTotal ? Int(clamping: found.total) : nil,
                totalCapped: filter.countTotal ? found.totalCapped : nil
            )
        }
    }

    /// The user who has `email` among their addresses, and which address matched.
    package func lookup(_ actor: AdminActor, email: String) async throws(AdminError) -> Admin.Lookup {
        try await adminCall {
            var find = Rekey_Directory_V1_FindUserByEmailRequest()
            find.email = email
            let found = try await self.directory.findUserByEmail(find, options: actor.options)
            return Admin.Lookup(user: Admin.User(found.user ?? .init()), matched: Admin.Email(found.matched ?? .init()))
        }
    }

    package func user(_ actor: AdminActor, id: String) async throws(AdminError) -> Admin.User {
        Admin.User(try await self.record(actor, id))
    }

    /// The names of up to 50 users by id, looked up at once (for pages that list who did what);
    /// ids that name nobody are left out.
    package func names(_ actor: AdminActor, ids: some Sequence<String>) async -> [String: String] {
        let wanted = Array(Set(ids.filter { $0.hasPrefix("u_") && $0.utf8.count <= 64 }).prefix(50))
        return await withTaskGroup(of: (String, String)?.self) { group in
            for id in wanted {
                group.addTask { (try? await self.record(actor, id)).map { (id, $0.name) } }
            }
            var names: [String: String] = [:]
            for await pair in group {
                if let (id, name) = pair { names[id] = name }
            }
            return names
        }
    }

    /// The user `reference` names — an id, or any of their email addresses — fetched once; with
    /// `action`, only if the actor may take that action on them (the directory checks the ranks,
    /// and the `requiring` permission, and audits a refusal).
    func record(
        _ actor: AdminActor, _ reference: String, for action: String? = nil, requiring permission: Permission? = nil
    ) async throws(AdminError) -> Rekey_Directory_V1_User {
        try await adminCall {
            var id = reference
            if reference.contains("@") {
                var find = Rekey_Directory_V1_FindUserByEmailRequest()
                find.email = reference
                guard let found = try await self.directory.findUserByEmail(find, options: actor.options).user else {
                    throw AdminError.notFound("no user has the address \(reference)")
                }
                guard action != nil else { return found }
                id = found.id
            }
            var get = Rekey_Directory_V1_GetUserRequest()
            get.userID = id
            if let action {
                get.actor = actor.directoryActor
                get.forAction = action
                get.requiredPermission = permission?.name ?? ""
            }
            guard let user = try await self.directory.getUser(get, options: actor.options).user else {
                throw AdminError.notFound("no user has the id \(id)")
            }
            return user
        }
    }

    /// Records in the audit trail that `actor` tried `action` on the user without `permission`
    /// (the directory checks the permission itself and refuses), and throws the refusal. For
    /// forms that a renderer would not have shown the actor.
    package func refuse(_ actor: AdminActor, _ reference: String, action: String, lacking permission: Permission) async throws(AdminError) -> Never {
        _ = try await self.record(actor, reference, for: action, requiring: permission)
        // The directory let it through: its roles changed since the actor authenticated.
        throw AdminError(.permissionDenied, "permission_denied", "this needs the permission \(permission.name) (\(permission.title))")
    }

    package func create(_ actor: AdminActor, _ new: Admin.NewUser) async throws(AdminError) -> Admin.User {
        try actor.require(.manageUsers)
        return try await adminCall {
            var create = Rekey_Directory_V1_CreateUserRequest()
            create.name = new.name
            create.email = new.email
            create.role = new.role
            create.organizationID = new.organizationId ?? ""
            create.locale = new.locale ?? ""
            create.actor = actor.directoryActor
            let created = try await self.directory.createUser(create, options: actor.options)
            return Admin.User(created.user ?? .init(), warnings: created.warnings)
        }
    }

    package func update(_ actor: AdminActor, id: String, _ changes: Admin.UserChanges) async throws(AdminError) -> Admin.User {
        try actor.require(.manageUsers)
        return try await adminCall {
            var update = Rekey_Directory_V1_UpdateUserRequest()
            update.userID = id
            if let name = changes.name { update.name = name; update.fields.append("name") }
            if let role = changes.role { update.role = role; update.fields.append("role") }
            if let organization = changes.organizationId { update.organizationID = organization; update.fields.append("organization_id") }
            if let locale = changes.locale { update.locale = locale; update.fields.append("locale") }
            update.actor = actor.directoryActor
            return Admin.User(try await self.directory.updateUser(update, options: actor.options).user ?? .init())
        }
    }

    /// Disables (sign-in refused, sessions ended) or enables a user.
    package func setDisabled(_ actor: AdminActor, id: String, _ disabled: Bool) async throws(AdminError) -> Admin.User {
        try actor.require(.manageUsers)
        return try await adminCall {
            var request = Rekey_Directory_V1_SetUserStateRequest()
            request.userID = id
            request.state = disabled ? .disabled : .active
            request.actor = actor.directoryActor
            return Admin.User(try await self.directory.setUserState(request, options: actor.options).user ?? .init())
        }
    }

    /// Ends every sign-on session of the user (the rank rule applies; audited).
    package func signOutEverywhere(_ actor: AdminActor, id: String) async throws(AdminError) -> Int {
        try actor.require(.manageUsers)
        return try await adminCall {
            var revoke = Rekey_Directory_V1_RevokeSessionsRequest()
            revoke.userID = id
            revoke.actor = actor.directoryActor
            return Int(try await self.directory.revokeSessions(revoke, options: actor.options).revoked)
        }
    }

    /// The most bytes an import file may have (the directory's staged-import limit).
    package static let maxImportBytes = 8 << 20
    /// Bytes per chunk sent to the directory, well inside its frame limit.
    static let importChunk = 512 << 10

    /// A CSV import: the file goes to the directory in chunks (a staged import, so it may be
    /// larger than one RPC frame) and is committed all-or-nothing in one step. The same `key`
    /// again returns the first outcome instead of importing twice.
    package func importUsers(_ actor: AdminActor, csv: [UInt8], partial: Bool, key: String) async throws(AdminError) -> Admin.ImportReport {
        try actor.require(.manageUsers)
        return try await adminCall {
            var begin = Rekey_Directory_V1_BeginImportRequest()
            begin.actor = actor.directoryActor
            begin.partial = partial
            begin.importKey = key
            let options = Backends.options(actor.requestID, timeout: .seconds(120))
            let stage = try await self.directory.beginImport(begin, options: options)
            if let outcome = stage.outcome {
                return Admin.ImportReport(outcome)
            }
            var sequence: UInt32 = 0
            for start in stride(from: 0, to: csv.count, by: Self.importChunk) {
                var append = Rekey_Directory_V1_AppendImportRequest()
                append.importID = stage.importID
                append.sequence = sequence
                append.csv = Array(csv[start..<min(start + Self.importChunk, csv.count)])
                _ = try await self.directory.appendImport(append, options: options)
                sequence += 1
            }
            var commit = Rekey_Directory_V1_CommitImportRequest()
            commit.importID = stage.importID
            return Admin.ImportReport(try await self.directory.commitImport(commit, options: options))
        }
    }
}
