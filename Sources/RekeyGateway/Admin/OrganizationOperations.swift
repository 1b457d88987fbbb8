import RekeyAdminModel
import RekeyDirectoryAPI

/// Organizations and their email domains.
package struct OrganizationOperations: Sendable {
    let flows: Flows
    var directory: Rekey_Directory_V1_Directory.Client { self.flows.backends.directory }

    package func list(_ actor: AdminActor) async throws(AdminError) -> Admin.Organizations {
        try await adminCall {
            let list = try await self.directory.listOrganizations(.init(), options: actor.options)
            return Admin.Organizations(organizations: list.organizations.map(Admin.Organization.init))
        }
    }

    package func create(_ actor: AdminActor, _ new: Admin.NewOrganization) async throws(AdminError) -> Admin.Organization {
        try actor.require(.manageUsers)
        return try await adminCall {
            var create = Rekey_Directory_V1_CreateOrganizationRequest()
            create.name = new.name
            create.domains = new.domains ?? []
            create.actor = actor.directoryActor
            return Admin.Organization(try await self.directory.createOrganization(create, options: actor.options).organization ?? .init())
        }
    }

    package func update(_ actor: AdminActor, id: String, _ changes: Admin.OrganizationChanges) async throws(AdminError) -> Admin.Organization {
        try actor.require(.manageUsers)
        return try await adminCall {
            var update = Rekey_Directory_V1_UpdateOrganizationRequest()
            update.organizationID = id
            if let name = changes.name { update.name = name; update.fields.append("name") }
            if let domains = changes.domains { update.domains = domains; update.fields.append("domains") }
            update.actor = actor.directoryActor
            return Admin.Organization(try await self.directory.updateOrganization(update, options: actor.options).organization ?? .init())
        }
    }

    package func delete(_ actor: AdminActor, id: String) async throws(AdminError) -> Admin.Deleted {
        try actor.require(.manageUsers)
        return try await adminCall {
            var delete = Rekey_Directory_V1_DeleteOrganizationRequest()
            delete.organizationID = id
            delete.actor = actor.directoryActor
            _ = try await self.directory.deleteOrganization(delete, options: actor.options)
            return Admin.Deleted(deleted: id)
        }
    }
}
