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

        package init(role: String = "", organizationID: String = "", disabled: Bool? = nil) {
            self.role = role
            self.organizationID = organizationID
            self.disabled = disabled
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
            let found = try await self.directory.listUsers(list, options: actor.options)
            return Admin.UsersPage(users: found.users.map { Admin.User($0) }, nextPageToken: found.nextPageToken)
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

    /// The user `reference` names — an id, or any of their email addresses — fetched once; with
    /// `action`, only if the actor may take that action on them (the directory checks the ranks
    /// and audits a refusal).
    func record(_ actor: AdminActor, _ reference: String, for action: String? = nil) async throws(AdminError) -> Rekey_Directory_V1_User {
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
            }
            guard let user = try await self.directory.getUser(get, options: actor.options).user else {
                throw AdminError.notFound("no user has the id \(id)")
            }
            return user
        }
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
